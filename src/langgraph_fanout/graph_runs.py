"""What the nodes of one graph run share, and helpers of the graph factories.

LangGraph runs every node (each ``Send`` target too) in a task whose context is copied
from the graph invocation, so nothing a node creates is visible to its siblings. The run
state of one graph run (``GraphRun``: the ``SharedRun`` of budget, concurrency slots and
agent count, plus progress counters) therefore lives in a process-wide registry keyed by
a ``run_key`` that the graph's first node writes into the state and that every ``Send``
payload carries; the last node drops it. Inside a dispatch call (the graph is a
sub-agent, or runs in a node of another of our graphs) the run draws from that call's
``SharedRun`` and lends it the call's concurrency slot, so nesting never multiplies a limit.

After a crash the registry of the new process is empty: the run is rebuilt from the
results already in the checkpointed state, and its ledger is seeded with what they cost,
so a resumed run neither forgets the budget already spent nor pays for finished items.
Results live in the state as records (``graph_records``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_stream_writer

from .agents import AgentLike, SubAgent
from .call import CallPipeline, Guards, Task
from .dispatch import Dispatcher
from .errors import CallCancelled, CallError, ConfigurationError, DepthLimitExceeded
from .graph_records import DEFERRED, result_from_record
from .ledger import CostLedger
from .limits import DispatchResourceLimits, Scope, SharedRun, Slots, current_scope
from .ratelimit import RateLimiter
from .recovery import ErrorRecoveryPolicy
from .report import DispatchReport, ReportBuilder
from .results import Status, SubAgentResult

__all__ = [
    "GraphRun",
    "build_report",
    "check_limits",
    "close_run",
    "ensure_run",
    "find_run",
    "is_agent",
    "make_dispatcher",
    "message_text",
    "node_name",
    "open_run",
    "prompt_for",
    "run_call",
]


@dataclass(slots=True, eq=False)
class GraphRun:
    """The live state of one graph run in this process (see the module docstring).

    Attributes:
        key: the run key carried in the graph state.
        name: the graph's name, shown in progress events.
        shared: budget, concurrency slots and agent count (the enclosing call's when nested).
        depth: dispatch depth of this run's calls (1 at top level).
        limits: the graph's own limits (its failure-rate gate, deadline and window).
        total: planned items (``None`` when unknown, as in a tree).
        done / failed / cost_usd: finished items, failed ones and what they cost.
        stop_reason: why new calls are refused (deadline, failure rate), if they are.
    """

    key: str
    name: str
    shared: SharedRun
    depth: int
    limits: DispatchResourceLimits
    loop: asyncio.AbstractEventLoop
    window: Slots | None
    total: int | None
    refusal: CallError | None = None
    done: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    stop_reason: str | None = None
    in_flight: set[asyncio.Task[Any]] = field(default_factory=set)
    cancelled: set[asyncio.Task[Any]] = field(default_factory=set)
    lend: AbstractAsyncContextManager[None] | None = None
    timer: asyncio.TimerHandle | None = None
    touched: float = 0.0  # loop time of the last call that ended (or of the opening)

    def stop(self, reason: str, *, cancel_in_flight: bool) -> None:
        """Refuse new calls from now on; cancel the calls in flight if asked."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        if cancel_in_flight:
            for task in list(self.in_flight):
                self.cancelled.add(task)
                task.cancel()

    def count(self, result: SubAgentResult) -> None:
        """Add a finished item to the progress counters and ask the failure-rate gate."""
        self.done += 1
        self.cost_usd += result.cost_usd
        if result.status is Status.OK:
            return
        self.failed += 1
        rate = self.limits.max_failure_rate
        if (
            rate is not None
            and result.status is not Status.CANCELLED
            and self.done >= self.limits.failure_rate_min_sample
            and self.failed / self.done > rate
        ):
            observed = self.failed / self.done
            self.stop(
                f"failure rate {observed:.0%} > max_failure_rate={rate:.0%}",
                cancel_in_flight=self.limits.cancel_in_flight_on_failure_rate,
            )


_RUNS: dict[str, GraphRun] = {}


def find_run(key: str) -> GraphRun | None:
    """The run registered under ``key`` for the running event loop, if any."""
    run = _RUNS.get(key)
    if run is None or run.loop is not asyncio.get_running_loop():
        return None
    return run


IDLE_RUN_S = 3600.0
"""A registered run with no call in flight for this long was abandoned (cancelled, or its
graph raised before the last node): it is dropped. A run resumed later is rebuilt from the
records in its checkpoint, as in a new process."""


def _prune(loop: asyncio.AbstractEventLoop, *, keep: str) -> None:
    """Drop runs of loops that have ended and runs abandoned on this loop."""
    now = loop.time()
    for key, run in list(_RUNS.items()):
        if key == keep:
            continue
        closed = run.loop.is_closed()
        idle = run.loop is loop and not run.in_flight and now - run.touched > IDLE_RUN_S
        if closed or idle:
            del _RUNS[key]
            if run.timer is not None and not closed:
                run.timer.cancel()


async def open_run(
    key: str,
    *,
    name: str,
    limits: DispatchResourceLimits,
    ledger: CostLedger | None,
    rate_limiter: RateLimiter | None,
    total: int | None,
    recovered: Sequence[Mapping[str, Any]] = (),
) -> GraphRun:
    """Register the run state of ``key`` (or return the one already registered).

    Args:
        key: the run key.
        name: the graph's name for progress events.
        limits: the graph's limits (used as the shared limits at top level).
        ledger / rate_limiter: shared objects the user passed, if any.
        total: planned items.
        recovered: records already in the state (a resumed run): they seed the counters
            and, for a run rebuilt in a new process, the ledger.
    """
    existing = find_run(key)
    if existing is not None:
        return existing
    loop = asyncio.get_running_loop()
    _prune(loop, keep=key)
    scope = current_scope()
    if scope is not None and scope.loop is not None and scope.loop is not loop:
        scope = Scope(scope.run.on_another_loop(), scope.depth, None, loop)
    stale = _RUNS.get(key)  # registered under another (finished) event loop
    if scope is not None:
        shared, depth = scope.run, scope.depth + 1
    else:
        # A stale run's ledger already holds what was spent; a new process's does not.
        kept = stale.shared.ledger if stale is not None and ledger is None else ledger
        shared = SharedRun.create(limits, ledger=kept, limiter=rate_limiter)
        depth = 1
        if stale is None and recovered:
            _seed(shared, recovered)
    run = GraphRun(
        key=key,
        name=name,
        shared=shared,
        depth=depth,
        limits=limits,
        loop=loop,
        window=Slots(limits.max_concurrent) if limits.max_concurrent else None,
        total=total,
    )
    max_depth = shared.limits.max_dispatch_depth
    if max_depth is not None and depth > max_depth:
        run.refusal = DepthLimitExceeded(depth=depth, limit=max_depth)
    for record in recovered:
        if record["status"] != DEFERRED:
            run.count(result_from_record(record))
    # Registered before the first await: a sibling node opening the same run concurrently
    # finds this one instead of building a second.
    run.touched = loop.time()
    _RUNS[key] = run
    if limits.max_total_duration_s is not None:
        run.timer = loop.call_later(
            limits.max_total_duration_s,
            lambda: run.stop(
                f"deadline of {limits.max_total_duration_s:g} s passed", cancel_in_flight=True
            ),
        )
    if scope is not None and scope.lease is not None:
        # The enclosing call waits for this whole run: its slot goes to our calls.
        run.lend = scope.lease.lend()
        await run.lend.__aenter__()
    return run


async def close_run(key: str, *, failed: BaseException | None = None) -> None:
    """Drop the run state of ``key`` and give back a lent slot (no-op if unknown)."""
    run = find_run(key)
    if run is None:
        return
    del _RUNS[key]
    if run.timer is not None:
        run.timer.cancel()
    if run.lend is not None:
        lend, run.lend = run.lend, None
        if failed is None:
            await lend.__aexit__(None, None, None)
        else:
            await lend.__aexit__(type(failed), failed, failed.__traceback__)


def _seed(shared: SharedRun, recovered: Sequence[Mapping[str, Any]]) -> None:
    """Charge a rebuilt ledger with what the recovered results cost, per agent."""
    by_agent: dict[str, float] = {}
    for record in recovered:
        cost = float(record.get("cost_usd") or 0.0)
        if cost:
            agent = str(record.get("agent_used") or record["agent"])
            by_agent[agent] = by_agent.get(agent, 0.0) + cost
        shared.agents_started += len(record.get("attempts") or ())
    ledger = shared.ledger
    for agent, cost in by_agent.items():
        # Already spent, so it is charged even when it no longer fits the cap (then as
        # overshoot, which is what it was).
        estimate = cost if ledger.can_fit(cost) else 0.0
        ledger.reserve(agent=agent, estimate_usd=estimate).commit(cost)


async def run_call(
    run: GraphRun,
    task: Task,
    *,
    config: RunnableConfig | None,
    guards: Guards,
    progress: bool = True,
) -> SubAgentResult:
    """One sub-agent call of a graph node through the call pipeline; never raises for
    expected failures (``CancelledError`` that the run did not cause still propagates).

    Args:
        run: the graph run.
        task: the call.
        config: the node's config (callbacks, tags, metadata reach the sub-agent).
        guards: the graph's guards.
        progress: count it and write an ``item_done`` custom stream event.
    """
    if run.refusal is not None:
        result = _refused(task, run.refusal)
    elif run.stop_reason is not None:
        result = _refused(task, CallCancelled(reason=run.stop_reason, started=False))
    else:
        window = run.window
        if window is not None:
            await window.acquire()
        try:
            if run.stop_reason is not None:
                result = _refused(task, CallCancelled(reason=run.stop_reason, started=False))
            else:
                timeout = run.limits.max_agent_duration_s
                if timeout is None:
                    timeout = run.shared.limits.max_agent_duration_s
                pipeline = CallPipeline(
                    run=run.shared, depth=run.depth, config=config, guards=guards, timeout_s=timeout
                )
                result = await _in_flight(run, pipeline, task)
        finally:
            if window is not None:
                window.release()
    if progress:
        run.count(result)
        get_stream_writer()(
            {
                "event": "item_done",
                "graph": run.name,
                "index": result.index,
                "status": result.status.value,
                "done": run.done,
                "total": run.total,
                "cost_usd_so_far": run.cost_usd,
            }
        )
    return result


async def _in_flight(run: GraphRun, pipeline: CallPipeline, task: Task) -> SubAgentResult:
    current = asyncio.current_task()
    if current is None:  # pragma: no cover - nodes always run in a task
        return await pipeline(task)
    run.in_flight.add(current)
    try:
        return await pipeline(task)
    except asyncio.CancelledError:
        # Only a cancellation this run made (deadline, failure rate) becomes a result.
        if current not in run.cancelled or current.uncancel() > 0:
            raise
        return _refused(task, CallCancelled(reason=run.stop_reason or "stopped", started=True))
    finally:
        run.in_flight.discard(current)
        run.cancelled.discard(current)
        run.touched = run.loop.time()


def _refused(task: Task, error: CallError) -> SubAgentResult:
    return SubAgentResult.from_error(
        index=task.index, agent=task.agent.name, error=error, sample=task.sample
    )


def build_report(
    run: GraphRun, results: Iterable[SubAgentResult], *, wall_time_s: float
) -> DispatchReport:
    """The report of a graph run's results, with its ledger's totals."""
    builder = ReportBuilder()
    for result in results:
        builder.add(result)
    ledger = run.shared.ledger
    return builder.build(
        wall_time_s=wall_time_s,
        stop_reason=run.stop_reason,
        budget_usd=ledger.limit_usd,
        total_spent_usd=ledger.spent_usd,
        refused_usd=ledger.refused_usd,
        overshoot_usd=ledger.overshoot_usd,
    )


_GUARD_OPTIONS = frozenset(
    {
        "cache",
        "cache_mode",
        "screening",
        "prices",
        "ledger",
        "rate_limiter",
        "breakers",
        "sleep",
        "rng",
    }
)


# -- helpers of the graph factories ------------------------------------------------------


def make_dispatcher(
    *,
    limits: DispatchResourceLimits | None,
    policy: ErrorRecoveryPolicy | None,
    agents: Mapping[str, AgentLike] | None,
    guards: Mapping[str, Any],
) -> Dispatcher:
    """The ``Dispatcher`` whose guards, limits and agent registry a graph uses."""
    unknown = sorted(set(guards) - _GUARD_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {unknown}; graphs take {sorted(_GUARD_OPTIONS)}"
        )
    return Dispatcher(limits=limits, policy=policy, agents=agents, **guards)


def is_agent(obj: Any) -> bool:
    """An agent (called through the pipeline) rather than a local function."""
    return isinstance(obj, SubAgent | Runnable)


def node_name(text: str) -> str:
    """A LangGraph node name made of ``text`` (``:`` and ``|`` are reserved)."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in text)


def message_text(value: Any) -> str:
    """A value as prompt text: a message's text, a string, or JSON."""
    if isinstance(value, BaseMessage):
        return value.text
    if isinstance(value, str):
        return value
    try:
        # Messages nested in a join ({agent: AIMessage}) contribute their text, not a repr.
        return json.dumps(value, default=_text_of, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _text_of(value: Any) -> str:
    return value.text if isinstance(value, BaseMessage) else str(value)


def prompt_for(agent: SubAgent, value: Any) -> Any:
    """The prompt a value makes for ``agent`` when it flows between steps of a graph: a
    message becomes its text, and a chat model gets anything else but text or messages as
    JSON text; other agents get the value as it is."""
    if isinstance(value, BaseMessage):
        return value.text
    if agent.kind != "chat_model" or isinstance(value, str):
        return value
    if isinstance(value, Sequence) and value and all(isinstance(m, BaseMessage) for m in value):
        return value
    return message_text(value)


async def ensure_run(
    key: str,
    *,
    name: str,
    dispatcher: Dispatcher,
    total: int | None,
    recovered: Sequence[Mapping[str, Any]],
) -> GraphRun:
    """The registered run of ``key``, or one rebuilt from the records in the state."""
    return find_run(key) or await open_run(
        key,
        name=name,
        limits=dispatcher.limits,
        ledger=dispatcher.ledger,
        rate_limiter=dispatcher.rate_limiter,
        total=total,
        recovered=recovered,
    )


def check_limits(limits: DispatchResourceLimits | None, *, graph: str | None = None) -> None:
    """Reject what is not a ``DispatchResourceLimits``, and ``min_success_count`` where a
    graph (named by ``graph``) reports a status instead of counting successes."""
    if limits is not None and not isinstance(limits, DispatchResourceLimits):
        raise ConfigurationError(
            f"limits must be a DispatchResourceLimits, got {type(limits).__name__}"
        )
    if graph is not None and limits is not None and limits.min_success_count is not None:
        raise ConfigurationError(
            f"min_success_count does not apply to a {graph} graph: its output has "
            "status='error' when it fails"
        )
