"""Stop conditions for a dispatch, composable like tenacity's (``a | b``, ``a & b``).

The engine asks its stop condition after every finished input. A condition returns ``None``
to go on, or a short reason; the engine then starts nothing more, cancels what is in flight
and ends every remaining input as ``cancelled`` with that reason.

Example:
    >>> stop = stop_after_successes(3) | stop_after_failures(2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from langgraph_fanout.core.checks import MAX_COUNT, check_number, check_text, shown
from langgraph_fanout.core.results import Status, SubAgentResult
from langgraph_fanout.errors import ConfigurationError


@dataclass(slots=True, kw_only=True)
class DispatchProgress:
    """The live state a stop condition looks at (read it, do not change it).

    Attributes:
        total: number of inputs, or ``None`` when the inputs are an iterator of unknown size.
        started: calls started so far.
        succeeded / failed: finished inputs by outcome (cancelled and skipped count as failed).
        not_needed: voters a settled vote did not need (neither succeeded nor failed).
        finished: results in completion order (kept when a stop condition reads them).
        last: the result that finished last.
    """

    total: int | None
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    not_needed: int = 0
    finished: list[SubAgentResult]
    last: SubAgentResult | None = None

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.not_needed

    @property
    def remaining(self) -> int | None:
        """Inputs not finished yet (in flight or not started), if the total is known."""
        return None if self.total is None else self.total - self.done


class StopCondition:
    """Base class: a callable ``(progress) -> reason | None``; combine with ``|`` and ``&``.

    ``cancels_in_flight`` says whether a stop also cancels the calls in flight (every
    condition does, but the failure-rate gate may be told to let them end).
    """

    cancels_in_flight: bool = True

    def __call__(self, progress: DispatchProgress) -> str | None:
        raise NotImplementedError

    def __or__(self, other: StopCondition) -> StopCondition:
        return _Any((self, other))

    def __and__(self, other: StopCondition) -> StopCondition:
        return _All((self, other))


class _Any(StopCondition):
    def __init__(self, parts: Sequence[StopCondition]) -> None:
        self.parts = tuple(parts)

    def __call__(self, progress: DispatchProgress) -> str | None:
        for part in self.parts:
            reason = part(progress)
            if reason is not None:
                return reason
        return None

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.parts))


class _All(StopCondition):
    def __init__(self, parts: Sequence[StopCondition]) -> None:
        self.parts = tuple(parts)

    def __call__(self, progress: DispatchProgress) -> str | None:
        reasons = [part(progress) for part in self.parts]
        if any(r is None for r in reasons):
            return None
        return " and ".join(r for r in reasons if r is not None)

    def __repr__(self) -> str:
        return " & ".join(map(repr, self.parts))


class stop_when(StopCondition):
    """Stop when ``predicate(progress)`` is true, giving ``reason``."""

    def __init__(self, predicate: Callable[[DispatchProgress], bool], reason: str) -> None:
        if not callable(predicate):
            raise ConfigurationError(
                f"stop_when predicate must be a function of the progress, got {shown(predicate)}"
            )
        check_text("stop_when reason", reason)
        self.predicate = predicate
        self.reason = reason

    def __call__(self, progress: DispatchProgress) -> str | None:
        return self.reason if self.predicate(progress) else None

    def __repr__(self) -> str:
        return f"stop_when({self.reason!r})"


class stop_after_successes(StopCondition):
    """Stop once ``k`` inputs have succeeded (``k=1`` is "first success")."""

    def __init__(self, k: int) -> None:
        check_number("stop_after_successes k", k, at_least=1, at_most=MAX_COUNT, integer=True)
        self.k = k

    def __call__(self, progress: DispatchProgress) -> str | None:
        if progress.succeeded >= self.k:
            return f"{self.k} success(es) reached"
        return None

    def __repr__(self) -> str:
        return f"stop_after_successes({self.k})"


class stop_after_failures(StopCondition):
    """Stop once ``k`` inputs have failed."""

    def __init__(self, k: int) -> None:
        check_number("stop_after_failures k", k, at_least=1, at_most=MAX_COUNT, integer=True)
        self.k = k

    def __call__(self, progress: DispatchProgress) -> str | None:
        if progress.failed >= self.k:
            return f"{self.k} failure(s) reached"
        return None

    def __repr__(self) -> str:
        return f"stop_after_failures({self.k})"


def stop_on_first_failure() -> StopCondition:
    """Stop at the first failed input."""
    return stop_after_failures(1)


class _Never(StopCondition):
    def __call__(self, progress: DispatchProgress) -> str | None:
        return None

    def __repr__(self) -> str:
        return "stop_never"


stop_never: StopCondition = _Never()


# -- the run's own gates (built by the run controller from the limits and the mode) --------


class stop_on_any_failure(StopCondition):
    """All-or-nothing: stop at the first failed input, naming it."""

    def __call__(self, progress: DispatchProgress) -> str | None:
        last = progress.last
        if last is not None and last.status is not Status.OK:
            return f"input {last.index} failed ({last.error_kind})"
        return None

    def __repr__(self) -> str:
        return "stop_on_any_failure()"


class stop_on_failure_rate(StopCondition):
    """Stop once more than ``rate`` of the finished inputs failed, counting from
    ``min_sample`` finished inputs on (``max_failure_rate``)."""

    def __init__(self, rate: float, *, min_sample: int, cancel_in_flight: bool = True) -> None:
        self.rate = rate
        self.min_sample = min_sample
        self.cancels_in_flight = cancel_in_flight

    def __call__(self, progress: DispatchProgress) -> str | None:
        done = progress.succeeded + progress.failed
        if done < self.min_sample:
            return None
        observed = progress.failed / done
        if observed > self.rate:
            return f"failure rate {observed:.0%} > max_failure_rate={self.rate:.0%}"
        return None

    def __repr__(self) -> str:
        return f"stop_on_failure_rate({self.rate!r}, min_sample={self.min_sample})"


class stop_when_unreachable(StopCondition):
    """Stop once ``need`` successes can no longer be reached (``min_success_count``)."""

    def __init__(self, need: int) -> None:
        self.need = need

    def __call__(self, progress: DispatchProgress) -> str | None:
        remaining = progress.remaining
        if remaining is not None and progress.succeeded + remaining < self.need:
            return f"min_success_count={self.need} can no longer be reached"
        return None

    def __repr__(self) -> str:
        return f"stop_when_unreachable({self.need})"
