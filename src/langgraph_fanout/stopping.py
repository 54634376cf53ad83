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

from .results import SubAgentResult

__all__ = [
    "DispatchProgress",
    "StopCondition",
    "stop_after_failures",
    "stop_after_successes",
    "stop_never",
    "stop_on_first_failure",
    "stop_when",
]


@dataclass(slots=True, kw_only=True)
class DispatchProgress:
    """The live state a stop condition looks at (read it, do not change it).

    Attributes:
        total: number of inputs, or ``None`` when the inputs are an iterator of unknown size.
        started: calls started so far.
        succeeded / failed: finished inputs by outcome (cancelled and skipped count as failed).
        finished: results in completion order.
    """

    total: int | None
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    finished: list[SubAgentResult]

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def remaining(self) -> int | None:
        """Inputs not finished yet (in flight or not started), if the total is known."""
        return None if self.total is None else self.total - self.done


class StopCondition:
    """Base class: a callable ``(progress) -> reason | None``; combine with ``|`` and ``&``."""

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
        self.predicate = predicate
        self.reason = reason

    def __call__(self, progress: DispatchProgress) -> str | None:
        return self.reason if self.predicate(progress) else None

    def __repr__(self) -> str:
        return f"stop_when({self.reason!r})"


class stop_after_successes(StopCondition):
    """Stop once ``k`` inputs have succeeded (``k=1`` is "first success")."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"stop_after_successes needs k >= 1, got {k}")
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
        if k < 1:
            raise ValueError(f"stop_after_failures needs k >= 1, got {k}")
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
