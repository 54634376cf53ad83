"""The exception tree of langgraph-fanout.

Split by what the caller can do about it::

    FanoutError                      base of everything raised or recorded here
    ├── ConfigurationError           bad arguments to our API (a ValueError): fix the code
    │   └── InvalidInputError        bad templates/arguments, names the item indices
    ├── DispatchFailed               all-or-nothing dispatch failed; carries every result
    ├── SyncInAsyncError             a sync twin was called inside a running event loop
    ├── KeyNotFound                  an output has no value under an aggregator's key
    ├── VoteTie                      a vote tied and ``tie_break="raise"``
    └── CallError                    a call produced no output (kept in its result)
        ├── AgentError               the agent raised; ``.cause_type``, ``.retryable``
        ├── CallTimeout              an attempt ran past ``max_agent_duration_s`` (a TimeoutError)
        ├── RetriesExhausted         every attempt and fallback failed; ``.last_error``
        ├── CircuitOpen              the agent's breaker is open and there is no fallback
        ├── CallSkipped              the recovery policy said SKIP
        ├── RefusedError             refused before the call started (nothing was spent)
        │   ├── BudgetExceeded       the worst-case estimate does not fit the cost budget
        │   ├── UnpricedModel        no price is known and ``allow_unpriced`` is off
        │   ├── AgentLimitExceeded   ``max_total_agents`` calls were already made
        │   ├── DepthLimitExceeded   ``max_dispatch_depth`` reached
        │   ├── InjectionDetected    screening rejected an argument
        │   ├── InvalidItem          one streamed item does not fit the template
        │   └── CacheKeyError        an argument could not be serialised for the cache key
        └── CallCancelled            cancelled by the dispatch (deadline, failure rate, stop)
            └── VoterNotNeeded       a voter its question's vote no longer needed (never called)

    FanoutWarning (a UserWarning)    a guard could not be applied as asked
    ├── UnpricedModelWarning         a model with no known price ran at zero cost
    ├── UnestimatedCostWarning       an agent of unknown worst case ran under a budget
    ├── NestedLimitsWarning          a nested dispatch set a run-wide limit (not applied)
    ├── ClientRetriesWarning         a chat model retries on its own (retries multiply)
    ├── TokenEstimateWarning         no tiktoken encoding: token counts are estimated
    └── CacheBackendWarning          the cache backend failed; the call went on uncached

Every error keeps its numbers as attributes, builds its message from them, and survives
pickling (results cross process boundaries in checkpoints and worker pools).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any


def usd(amount: float) -> str:
    """Money as shown to people and agents: 4 decimals, more for small amounts, so a
    nonzero amount is never shown as zero (``$0.0500``, ``$0.000041``, ``$0``).

    Example:
        >>> usd(0.05), usd(0.000041), usd(0.0), usd(12.5)
        ('$0.0500', '$0.000041', '$0', '$12.5000')
    """
    if amount == 0:
        return "$0"
    if not math.isfinite(amount):
        return f"${amount}"
    magnitude = abs(amount)
    decimals = max(4, 1 - math.floor(math.log10(magnitude)))
    return f"${amount:.{decimals}f}"


def _rebuild(cls: type[FanoutError], kwargs: dict[str, Any]) -> FanoutError:
    return cls(**kwargs)


class FanoutError(Exception):
    """Base class of every error of this package.

    Subclasses take keyword-only arguments, keep them as attributes and build the message
    from them; ``__reduce__`` replays those arguments, so errors pickle faithfully.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message)
        self._kwargs = kwargs
        self._message = message

    @property
    def message(self) -> str:
        return self._message

    def __reduce__(self) -> tuple[Any, ...]:
        if type(self).__init__ is FanoutError.__init__:
            return (type(self), (self._message,), None)
        return (_rebuild, (type(self), self._kwargs), None)

    @property
    def kind(self) -> str:
        """A short stable name for reports: ``budget_exceeded``, ``timeout``, ..."""
        return _KIND.get(type(self), type(self).__name__)


class ConfigurationError(FanoutError, ValueError):
    """An argument to this package is invalid; the message says what to change."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._kwargs = {"message": message}


_WHOLE = {-1: "template", -2: "arguments"}


class InvalidInputError(ConfigurationError):
    """Templates or argument sets failed validation before any call was made.

    Attributes:
        problems: ``(index, reason)`` pairs; index ``-1`` means the template itself, ``-2``
            the arguments as a whole (not an iterable of inputs).
    """

    def __init__(self, *, problems: Sequence[tuple[int, str]]) -> None:
        self.problems = tuple((int(i), str(r)) for i, r in problems)
        shown = "; ".join(
            f"{_WHOLE.get(i, 'template')}: {r}" if i < 0 else f"item {i}: {r}"
            for i, r in self.problems[:5]
        )
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        FanoutError.__init__(
            self,
            f"invalid input, nothing was called: {shown}{more}",
            problems=self.problems,
        )

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(sorted({i for i, _ in self.problems if i >= 0}))


class SyncInAsyncError(FanoutError, RuntimeError):
    """A sync twin was called from inside a running event loop."""

    def __init__(self, *, sync_name: str, async_name: str) -> None:
        self.sync_name = sync_name
        self.async_name = async_name
        super().__init__(
            f"{sync_name}() cannot run inside a running event loop; use `await {async_name}(...)`",
            sync_name=sync_name,
            async_name=async_name,
        )


class DispatchFailed(FanoutError):
    """An all-or-nothing dispatch had a failure; ``results`` holds every input's result."""

    def __init__(self, *, reason: str, results: Sequence[Any] = ()) -> None:
        self.reason = reason
        self.results = tuple(results)
        ok = sum(1 for r in self.results if getattr(r, "ok", False))
        super().__init__(
            f"dispatch failed ({reason}); {ok} of {len(self.results)} inputs succeeded",
            reason=reason,
            results=self.results,
        )


class CallError(FanoutError):
    """One sub-agent call ended without an output. Recorded in its result, not raised."""


class AgentError(CallError):
    """The sub-agent raised. ``cause_type`` names the original exception type.

    ``retryable`` is the classification of the recovery policy (transient or not) and
    ``retry_after_s`` the wait the provider asked for, when it said one.
    """

    def __init__(
        self,
        *,
        agent: str,
        cause_type: str,
        detail: str,
        retryable: bool = False,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.agent = agent
        self.cause_type = cause_type
        self.detail = detail
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        status = f" (HTTP {status_code})" if status_code is not None else ""
        super().__init__(
            f"agent {agent!r} raised {cause_type}{status}: {detail}",
            agent=agent,
            cause_type=cause_type,
            detail=detail,
            retryable=retryable,
            status_code=status_code,
            retry_after_s=retry_after_s,
        )


class CallTimeout(CallError, TimeoutError):
    """An attempt ran longer than its per-call timeout."""

    def __init__(self, *, agent: str, timeout_s: float) -> None:
        self.agent = agent
        self.timeout_s = timeout_s
        super().__init__(
            f"call to {agent!r} timed out after {timeout_s:g} s",
            agent=agent,
            timeout_s=timeout_s,
        )


class RetriesExhausted(CallError):
    """All attempts (retries and fallbacks) failed; ``last_error`` is the final one."""

    def __init__(self, *, agent: str, attempts: int, last_error: CallError) -> None:
        self.agent = agent
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(
            f"call to {agent!r} failed after {attempts} attempt(s): {last_error}",
            agent=agent,
            attempts=attempts,
            last_error=last_error,
        )


class CircuitOpen(CallError):
    """The agent's circuit breaker is open; the call was not made."""

    def __init__(self, *, agent: str, failures: int, retry_in_s: float) -> None:
        self.agent = agent
        self.failures = failures
        self.retry_in_s = retry_in_s
        super().__init__(
            f"circuit open for {agent!r} after {failures} failure(s); "
            f"next probe in {retry_in_s:.3g} s",
            agent=agent,
            failures=failures,
            retry_in_s=retry_in_s,
        )


class CallSkipped(CallError):
    """The recovery policy skipped this input after ``cause`` failed it."""

    def __init__(self, *, agent: str, cause: str) -> None:
        self.agent = agent
        self.cause = cause
        super().__init__(f"call to {agent!r} skipped: {cause}", agent=agent, cause=cause)


class CallCancelled(CallError):
    """The dispatch cancelled this input, or never started it; ``reason`` says why."""

    def __init__(self, *, reason: str, started: bool = False) -> None:
        self.reason = reason
        self.started = started
        state = "cancelled in flight" if started else "not started"
        super().__init__(f"{state}: {reason}", reason=reason, started=started)


class VoterNotNeeded(CallCancelled):
    """A voter that was never called because its question's vote was already settled.

    ``decided_by`` says how: ``"exact"`` (the leader can no longer be overtaken),
    ``"adaptive"`` (the stopping rule's confidence was reached) or ``"budget"`` (the next
    wave of voters did not fit the budget; the vote ended with its current leader).
    """

    def __init__(self, *, question: int, decided_by: str, reason: str) -> None:
        self.question = question
        self.decided_by = decided_by
        self.reason = reason
        self.started = False
        FanoutError.__init__(
            self,
            f"not started: {reason}",
            question=question,
            decided_by=decided_by,
            reason=reason,
        )


class RefusedError(CallError):
    """A guard refused the call before it started; nothing was spent on it."""


class BudgetExceeded(RefusedError):
    """The call's worst-case cost does not fit what is left of the budget.

    ``waited_s`` is how long it waited for calls in flight to settle before the refusal
    (0 when it could never fit); ``uncertain_usd`` is output of calls cut off in flight that
    the provider may have billed (counted against the cap).
    """

    def __init__(
        self,
        *,
        agent: str,
        spent_usd: float,
        reserved_usd: float,
        estimate_usd: float,
        limit_usd: float,
        unknown_cost: bool = False,
        uncertain_usd: float = 0.0,
        waited_s: float = 0.0,
    ) -> None:
        self.agent = agent
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.estimate_usd = estimate_usd
        self.limit_usd = limit_usd
        self.unknown_cost = unknown_cost
        self.uncertain_usd = uncertain_usd
        self.waited_s = waited_s
        held = f"{usd(spent_usd)} spent + "
        if uncertain_usd:
            held += f"{usd(uncertain_usd)} uncertain + "
        held += f"{usd(reserved_usd)} reserved"
        if unknown_cost:
            message = (
                f"cost budget used up before call to {agent!r} (its cost is known only after "
                f"it runs): {held} of {usd(limit_usd)}"
            )
        else:
            message = (
                f"cost budget exceeded before call to {agent!r}: {held} + "
                f"{usd(estimate_usd)} estimate > {usd(limit_usd)}"
            )
        if waited_s:
            message += f" (after waiting {waited_s:.3g} s for calls in flight to settle)"
        super().__init__(
            message,
            agent=agent,
            spent_usd=spent_usd,
            reserved_usd=reserved_usd,
            estimate_usd=estimate_usd,
            limit_usd=limit_usd,
            unknown_cost=unknown_cost,
            uncertain_usd=uncertain_usd,
            waited_s=waited_s,
        )

    @property
    def remaining_usd(self) -> float:
        used = self.spent_usd + self.uncertain_usd + self.reserved_usd
        return max(0.0, self.limit_usd - used)


class UnpricedModel(RefusedError):
    """No price is known for the model and ``allow_unpriced`` is off."""

    def __init__(self, *, agent: str, model: str | None) -> None:
        self.agent = agent
        self.model = model
        if model is None:
            message = (
                f"agent {agent!r} is a function whose spend cannot be counted under a budget: "
                f"give it a price per call (SubAgent.of(fn, cost_per_call_usd=...)), or take "
                f"a config argument and pass it to the models it calls (their usage is then "
                f"billed), or set DispatchResourceLimits(allow_unpriced=True) to run it at $0"
            )
        else:
            message = (
                f"no price known for model {model!r} of agent {agent!r}: pass "
                f"prices={{{model!r}: Price(input_per_mtok=..., output_per_mtok=...)}} (or an "
                f"(input, output) pair in USD per million tokens) to the dispatch, graph or "
                f"tool, or SubAgent.of(agent, price=...), or set "
                f"DispatchResourceLimits(allow_unpriced=True) to count it at $0"
            )
        super().__init__(message, agent=agent, model=model)


class AgentLimitExceeded(RefusedError):
    """``max_total_agents`` calls were already started."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        super().__init__(f"max_total_agents={limit} calls already started", limit=limit)


class DepthLimitExceeded(RefusedError):
    """A nested dispatch would go deeper than ``max_dispatch_depth``."""

    def __init__(self, *, depth: int, limit: int) -> None:
        self.depth = depth
        self.limit = limit
        super().__init__(
            f"dispatch depth {depth} exceeds max_dispatch_depth={limit}", depth=depth, limit=limit
        )


class InjectionDetected(RefusedError):
    """Screening found prompt-injection markers in an argument and the policy is reject."""

    def __init__(self, *, field: str, markers: Sequence[str]) -> None:
        self.field = field
        self.markers = tuple(markers)
        super().__init__(
            f"argument {field!r} rejected: prompt-injection markers {list(self.markers)}",
            field=field,
            markers=self.markers,
        )


class CacheKeyError(RefusedError):
    """An argument could not be serialised into the idempotency key."""

    def __init__(self, *, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"cannot build cache key: {detail} (pass JSON-like arguments or cache=False)",
            detail=detail,
        )


class InvalidItem(RefusedError):
    """One item of a lazily streamed dispatch cannot be rendered; the others go on."""

    def __init__(self, *, index: int, reason: str) -> None:
        self.index = index
        self.reason = reason
        super().__init__(f"item {index}: {reason}", index=index, reason=reason)


class KeyNotFound(FanoutError, LookupError):
    """An output has no value under the key an aggregator reads.

    Aggregators never raise it: they count such an output as an abstention. ``extract``
    raises it when no ``default`` is given.

    Attributes:
        key: the dotted path, or the name of the key function.
        output_type: type name of the output that lacked it.
        available: top-level keys of the output, when it is a mapping.
    """

    def __init__(self, *, key: str, output_type: str, available: Sequence[str] = ()) -> None:
        self.key = key
        self.output_type = output_type
        self.available = tuple(available)
        shown = f" (it has {', '.join(map(repr, self.available[:8]))})" if self.available else ""
        super().__init__(
            f"key {key!r} not found in {output_type} output{shown}",
            key=key,
            output_type=output_type,
            available=self.available,
        )


class VoteTie(FanoutError):
    """A vote with ``tie_break="raise"`` ended with two or more answers on top.

    Attributes:
        tied: the normalised answers that tied, in lexical order.
        weight: the vote weight each of them has.
    """

    def __init__(self, *, tied: Sequence[Hashable], weight: float) -> None:
        self.tied = tuple(tied)
        self.weight = weight
        super().__init__(
            f"vote tied between {', '.join(map(repr, self.tied))} at {weight:g} vote(s) each; "
            "pass tie_break='first' or 'lexical' to settle ties",
            tied=self.tied,
            weight=weight,
        )


_KIND: dict[type[FanoutError], str] = {
    AgentError: "agent_error",
    CallTimeout: "timeout",
    RetriesExhausted: "retries_exhausted",
    CircuitOpen: "circuit_open",
    CallSkipped: "skipped",
    CallCancelled: "cancelled",
    VoterNotNeeded: "voter_not_needed",
    BudgetExceeded: "budget_exceeded",
    UnpricedModel: "unpriced_model",
    AgentLimitExceeded: "agent_limit",
    DepthLimitExceeded: "depth_limit",
    InjectionDetected: "injection",
    CacheKeyError: "cache_key",
    InvalidItem: "invalid_item",
    KeyNotFound: "key_not_found",
    VoteTie: "vote_tie",
}


def _call_errors(cls: type[CallError]) -> list[type[CallError]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _call_errors(sub))]


def error_class(kind: str) -> type[CallError] | None:
    """The ``CallError`` class of a stable ``kind`` (as a checkpoint record names it), or
    of the class name that 0.1.0 records wrote; ``None`` when there is none."""
    for cls in _call_errors(CallError):
        if kind == _KIND.get(cls) or kind == cls.__name__:
            return cls
    return None


# --------------------------------------------------------------------------- warnings


class FanoutWarning(UserWarning):
    """Base of every warning of this package: a guard could not be applied as asked."""


class CacheBackendWarning(FanoutWarning):
    """The backend could not read or write an entry; the call went on without the cache."""


class ClientRetriesWarning(FanoutWarning):
    """A chat model retries on its own (e.g. ``ChatOpenAI`` retries twice by default), so
    retries multiply and backoff is not ours: build it with ``max_retries=0``."""


class NestedLimitsWarning(FanoutWarning):
    """A nested dispatch set a limit that only the top-level run applies (the budget,
    agent count, depth, rates): the enclosing run's apply; the message names the fields."""


class OutputLimitWarning(FanoutWarning):
    """A model returned more output tokens than its declared max (a server ignoring
    ``max_tokens``): the excess is charged, and the run reserves the larger size from then on."""


class TokenEstimateWarning(FanoutWarning):
    """No tiktoken encoding could be loaded; token counts are a character-based estimate."""


class UnestimatedCostWarning(FanoutWarning):
    """An agent with no declared model ran under a budget: no worst case could be reserved."""


class UnpricedModelWarning(FanoutWarning):
    """A model with no known price ran and was counted at zero cost (budget not enforced)."""
