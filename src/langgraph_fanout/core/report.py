"""``DispatchReport``: what a dispatch did, measured, never estimated after the fact."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from ddsketch import DDSketch

from langgraph_fanout.core.results import Attempt, Status, SubAgentResult
from langgraph_fanout.errors import CallCancelled, VoterNotNeeded, usd


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchReport:
    """Counts, time, cost and tokens of one dispatch.

    Attributes:
        inputs: inputs of the dispatch; ``succeeded + failed + cancelled + skipped == inputs``.
        calls_started: agent invocations made (retries and fallbacks included, cache hits not).
        failures_by_kind: error kind -> inputs that ended with it (cancelled/skipped included).
        success_rate: ``succeeded / inputs`` (1.0 for an empty dispatch).
        wall_time_s: time from start to the last result.
        busy_time_s: sum of every input's call time.
        parallelism: ``busy_time_s / wall_time_s``, the average number of calls in flight.
        latency_p50_s / latency_p95_s / latency_p99_s / latency_max_s: call time of inputs
            that ran; the percentiles within 1% of the exact ones (``LatencySketch``), the
            maximum exact.
        stop_reason: why the dispatch stopped early, if it did.
        estimated_usd: worst-case estimates of this dispatch's last attempts (refused ones
            included).
        spent_usd: cost committed for this dispatch's own calls, from real usage.
        total_spent_usd / refused_usd / overshoot_usd / budget_usd: the budget ledger of the
            whole run (nested dispatches and anything else sharing the ledger):
            everything spent, the worst case of calls it refused ("would have cost"),
            and real cost above reservations.
        cost_by_agent: agent -> committed cost.
        cache_hits: inputs served by the idempotency cache (or shared with a call in flight).
        retries / fallbacks / breaker_openings: recovery counts.
        recovery_by_agent: agent -> ``attempts``, ``retries`` (attempts after a failure of
            the same agent), ``backpressure`` (attempts the provider answered with 429, 503,
            529 or a Retry-After), ``breaker_openings`` and ``circuit_open`` (attempts
            refused by an open breaker, which made no call).
        rate_wait_s: total time inputs waited on rate limiters and Retry-After pauses (not
            part of call latency).
        budget_wait_s: total time inputs waited for calls in flight to free budget (holding
            no concurrency slot; not part of call latency).
        uncertain_usd: output of calls cut off in flight that the provider may have billed
            (counted against the cap beside ``total_spent_usd``).
        hedges_launched / hedges_won: duplicates started for slow calls, and how many won.
        abandoned_threads: threads of this process still running a sync agent's call that
            was given up (a deadline, a cancellation) when the report was made: a Python
            thread cannot be killed, so it finishes in the background and its result is
            dropped (``SyncWorkers``; the pool is bounded).
        calls_saved: inputs a stop condition ended before they were called (e.g. voters
            no longer needed once the vote was decided). cost_saved_usd: those calls
            priced at the mean cost of this dispatch's successful calls (an estimate).
        voters_not_needed: of those, the voters a settled vote did not need
            (``VoterNotNeeded``); they count as neither succeeded nor failed.
    """

    inputs: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0
    calls_started: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    success_rate: float = 1.0
    wall_time_s: float = 0.0
    busy_time_s: float = 0.0
    parallelism: float = 0.0
    latency_p50_s: float = 0.0
    latency_p95_s: float = 0.0
    latency_p99_s: float = 0.0
    latency_max_s: float = 0.0
    stop_reason: str | None = None
    estimated_usd: float = 0.0
    spent_usd: float = 0.0
    total_spent_usd: float = 0.0
    refused_usd: float = 0.0
    overshoot_usd: float = 0.0
    uncertain_usd: float = 0.0
    budget_usd: float | None = None
    cost_by_agent: dict[str, float] = field(default_factory=dict)
    recovery_by_agent: dict[str, dict[str, int]] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_hits: int = 0
    retries: int = 0
    fallbacks: int = 0
    breaker_openings: int = 0
    rate_wait_s: float = 0.0
    budget_wait_s: float = 0.0
    hedges_launched: int = 0
    hedges_won: int = 0
    calls_saved: int = 0
    cost_saved_usd: float = 0.0
    voters_not_needed: int = 0
    abandoned_threads: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)

    def summary(self) -> str:
        """One line for logs and tool messages."""
        parts = [f"{self.succeeded}/{self.inputs} ok"]
        for kind, n in sorted(self.failures_by_kind.items()):
            parts.append(f"{n} {kind}")
        parts.append(f"{self.wall_time_s:.2f}s")
        parts.append(usd(self.spent_usd))
        if self.budget_usd is not None:
            parts[-1] += f" of {usd(self.budget_usd)}"
        if self.uncertain_usd:
            parts.append(f"{usd(self.uncertain_usd)} uncertain (cut off in flight)")
        if self.refused_usd:
            parts.append(f"refused {usd(self.refused_usd)}")
        if self.cache_hits:
            parts.append(f"{self.cache_hits} cached")
        if self.abandoned_threads:
            parts.append(f"{self.abandoned_threads} sync-agent threads abandoned")
        if self.stop_reason:
            parts.append(f"stopped: {self.stop_reason}")
        return ", ".join(parts)


# Attempt error kinds of attempts refused before the agent was called.
_NOT_CALLED = frozenset(
    {"circuit_open", "budget_exceeded", "unpriced_model", "agent_limit", "depth_limit"}
)


_RECOVERY_KEYS = ("attempts", "retries", "backpressure", "breaker_openings", "circuit_open")


LATENCY_RELATIVE_ERROR = 0.01
"""Latency percentiles of a report are within 1% of the exact ones (DDSketch's guarantee)."""


class LatencySketch:
    """Latency percentiles in constant memory: a DDSketch (DataDog's ``ddsketch``) whose
    quantiles are within ``LATENCY_RELATIVE_ERROR`` of the exact ones, however many values;
    the maximum is kept exactly.

    Example:
        >>> sketch = LatencySketch()
        >>> for v in (0.1, 0.2, 0.3, 0.4):
        ...     sketch.add(v)
        >>> round(sketch.quantile(0.5), 2), sketch.max, sketch.count
        (0.2, 0.4, 4)
    """

    __slots__ = ("_sketch", "count", "max")

    def __init__(self) -> None:
        self._sketch = DDSketch(relative_accuracy=LATENCY_RELATIVE_ERROR)
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self._sketch.add(max(0.0, seconds))
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0.0 when empty), never above the exact maximum."""
        if not self.count:
            return 0.0
        value = self._sketch.get_quantile_value(q)
        return 0.0 if value is None else min(max(0.0, value), self.max)


class ReportBuilder:
    """Adds results one at a time, in memory that does not grow with their number."""

    def __init__(self) -> None:
        self._status: Counter[Status] = Counter()
        self._kinds: Counter[str] = Counter()
        self._latencies = LatencySketch()
        self._busy = 0.0
        self._calls = 0
        self._estimated = 0.0
        self._spent = 0.0
        self._by_agent: defaultdict[str, float] = defaultdict(float)
        self._tokens_in = 0
        self._tokens_out = 0
        self._cache_hits = 0
        self._retries = 0
        self._fallbacks = 0
        self._rate_wait = 0.0
        self._budget_wait = 0.0
        self._breakers = 0
        self._hedges = 0
        self._hedges_won = 0
        self._saved = 0
        self._not_needed = 0
        self._recovery: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def add(self, result: SubAgentResult) -> None:
        self._status[result.status] += 1
        error = result.error
        if error is not None:
            self._kinds[error.kind] += 1
            if isinstance(error, CallCancelled) and not error.started:
                self._saved += 1
                if isinstance(error, VoterNotNeeded):
                    self._not_needed += 1
        attempts = result.attempts
        if attempts:
            self._latencies.add(result.duration_s)
            self._busy += result.duration_s
            n = len(attempts)
            self._calls += n
            if n > 1:
                self._retries += n - 1
            if n > 1 or attempts[0].error is not None:
                # An attempt refused before it started (breaker, budget...) made no call.
                self._calls -= sum(1 for a in attempts if a.error in _NOT_CALLED)
                self._add_recovery(attempts)
            else:
                self._recovery[attempts[0].agent]["attempts"] += 1
        if result.fallback_used:
            self._fallbacks += 1
        if result.cost_usd or result.estimated_cost_usd:
            self._estimated += result.estimated_cost_usd
            self._spent += result.cost_usd
            self._by_agent[result.agent_used or result.agent] += result.cost_usd
        if result.input_tokens or result.output_tokens:
            self._tokens_in += result.input_tokens
            self._tokens_out += result.output_tokens
        if result.cache_hit:
            self._cache_hits += 1
        if result.rate_wait_s:
            self._rate_wait += result.rate_wait_s
        if result.budget_wait_s:
            self._budget_wait += result.budget_wait_s
        if result.breakers_opened:
            self._breakers += result.breakers_opened
        if result.hedges:
            self._hedges += result.hedges
            self._calls += result.hedges
            self._hedges_won += result.hedge_won

    def _add_recovery(self, attempts: tuple[Attempt, ...]) -> None:
        previous: Attempt | None = None
        for a in attempts:
            counts = self._recovery[a.agent]
            counts["attempts"] += 1
            if previous is not None and previous.agent == a.agent and previous.error:
                counts["retries"] += 1
            counts["backpressure"] += a.backpressure
            counts["breaker_openings"] += a.opened_breaker
            counts["circuit_open"] += a.error == "circuit_open"
            previous = a

    def build(self, *, wall_time_s: float, **extra: Any) -> DispatchReport:
        n = sum(self._status.values())
        ok = self._status[Status.OK]
        lat = self._latencies
        return DispatchReport(
            inputs=n,
            succeeded=ok,
            failed=self._status[Status.ERROR],
            cancelled=self._status[Status.CANCELLED],
            skipped=self._status[Status.SKIPPED],
            calls_started=self._calls,
            failures_by_kind=dict(self._kinds),
            success_rate=ok / n if n else 1.0,
            wall_time_s=wall_time_s,
            busy_time_s=self._busy,
            parallelism=self._busy / wall_time_s if wall_time_s > 0 else 0.0,
            latency_p50_s=lat.quantile(0.50),
            latency_p95_s=lat.quantile(0.95),
            latency_p99_s=lat.quantile(0.99),
            latency_max_s=lat.max,
            estimated_usd=self._estimated,
            spent_usd=extra.pop("spent_usd", self._spent),
            cost_by_agent=dict(self._by_agent),
            recovery_by_agent={
                agent: {k: counts[k] for k in _RECOVERY_KEYS}
                for agent, counts in sorted(self._recovery.items())
            },
            input_tokens=self._tokens_in,
            output_tokens=self._tokens_out,
            cache_hits=self._cache_hits,
            retries=self._retries,
            fallbacks=self._fallbacks,
            rate_wait_s=self._rate_wait,
            budget_wait_s=self._budget_wait,
            breaker_openings=self._breakers,
            hedges_launched=self._hedges,
            hedges_won=self._hedges_won,
            calls_saved=self._saved,
            voters_not_needed=self._not_needed,
            cost_saved_usd=self._saved * (self._spent / ok) if ok else 0.0,
            **extra,
        )
