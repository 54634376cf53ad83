"""What one sub-agent call produced: ``SubAgentResult`` and the ``Attempt`` records behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from langgraph_fanout.errors import CallCancelled, CallError, CallSkipped


class Status(StrEnum):
    """How an input ended. Every input of a dispatch ends in exactly one of these."""

    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


# Attempt and SubAgentResult are built once per call on the engine's hot path; a frozen
# dataclass costs three times as much to construct (benchmarks/overhead.py), so they are
# plain slotted dataclasses. Treat them as read-only values.


@dataclass(slots=True, kw_only=True)
class Attempt:
    """One attempt of one agent inside a call (retries and fallbacks each add one).

    Attributes:
        agent: name of the agent that was tried.
        number: 1-based attempt number within the whole call.
        error: the error's ``kind`` (``"timeout"``, ``"agent_error"``...) or ``None`` on success.
        wait_before_s: backoff slept before this attempt started.
        duration_s: time the attempt ran.
        backpressure: the provider asked to slow down (429, 503, 529, a Retry-After).
        opened_breaker: this attempt's failure opened the agent's circuit breaker.
    """

    agent: str
    number: int
    error: str | None = None
    wait_before_s: float = 0.0
    duration_s: float = 0.0
    backpressure: bool = False
    opened_breaker: bool = False


@dataclass(slots=True, kw_only=True)
class SubAgentResult:
    """The result of one input: an output, or a typed error, plus what it cost.

    Attributes:
        index: position of the input in the dispatch.
        agent: name of the agent the input was addressed to.
        status: ``ok``, ``error``, ``cancelled`` or ``skipped``.
        output: the agent's output (``None`` unless ``status`` is ``ok``).
        error: the typed error (``None`` when ``ok``).
        duration_s: time spent calling (rate-limit waits excluded).
        attempts: every attempt made, in order.
        agent_used: the agent that produced the output (differs from ``agent`` after a fallback).
        cost_usd: committed cost of every attempt of this input.
        estimated_cost_usd: worst-case estimate that was reserved for the last attempt.
        input_tokens / output_tokens: real usage summed over attempts.
        cache_hit: served from the idempotency cache (or shared with an identical call in flight).
        rate_wait_s: time spent waiting for rate limiters and a provider's Retry-After.
        budget_wait_s: time spent waiting for calls in flight to free budget.
        sample: sample index (distinct voters of one vote have distinct samples).
        question: the question this result is a voter of (its input's argument set, shared
            by that input's samples); ``None``: its own (``index``). See ``question_of``.
        flags: screening flags (prompt-injection markers found in the arguments, redactions).
        breakers_opened: circuit breakers this input's failures opened.
        hedges / hedge_won: duplicates started for this slow call, and whether one won.
    """

    index: int
    agent: str
    status: Status
    output: Any = None
    error: CallError | None = None
    duration_s: float = 0.0
    attempts: tuple[Attempt, ...] = ()
    agent_used: str | None = None
    cost_usd: float = 0.0
    estimated_cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_hit: bool = False
    rate_wait_s: float = 0.0
    budget_wait_s: float = 0.0
    sample: int = 0
    question: int | None = None
    flags: tuple[str, ...] = field(default=())
    breakers_opened: int = 0
    hedges: int = 0
    hedge_won: bool = False

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def question_of(self) -> int:
        """The question this result votes on: ``question``, or its own ``index``."""
        return self.index if self.question is None else self.question

    @property
    def success(self) -> bool:
        """Alias of ``ok`` (the seed's name)."""
        return self.status is Status.OK

    @property
    def fallback_used(self) -> bool:
        return self.agent_used is not None and self.agent_used != self.agent

    @property
    def error_kind(self) -> str | None:
        return None if self.error is None else self.error.kind

    @staticmethod
    def status_of(error: CallError) -> Status:
        """The status an input ends with when ``error`` ended it."""
        if isinstance(error, CallCancelled):
            return Status.CANCELLED
        if isinstance(error, CallSkipped):
            return Status.SKIPPED
        return Status.ERROR

    @classmethod
    def from_error(
        cls,
        *,
        index: int,
        agent: str,
        error: CallError,
        sample: int = 0,
        question: int | None = None,
        cache_hit: bool = False,
        cost_usd: float = 0.0,
        estimated_cost_usd: float = 0.0,
    ) -> SubAgentResult:
        """Build the result of an input that ended with ``error``."""
        return cls(
            index=index,
            agent=agent,
            status=cls.status_of(error),
            error=error,
            sample=sample,
            question=question,
            cache_hit=cache_hit,
            cost_usd=cost_usd,
            estimated_cost_usd=estimated_cost_usd,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (the output is kept as is)."""
        return {
            "index": self.index,
            "agent": self.agent,
            "status": self.status.value,
            "output": self.output,
            "error": None if self.error is None else str(self.error),
            "error_kind": self.error_kind,
            "duration_s": self.duration_s,
            "attempts": len(self.attempts),
            "agent_used": self.agent_used,
            "cost_usd": self.cost_usd,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_hit": self.cache_hit,
            "sample": self.sample,
            "question": self.question,
            "flags": list(self.flags),
        }
