"""The run registry of the graphs, and helpers of the graph factories.

LangGraph runs every node (each ``Send`` target too) in a task whose context is copied
from the graph invocation, so nothing a node creates is visible to its siblings. The
``RunController`` of one graph run therefore lives in a process-wide registry keyed by a
``run_key`` that the graph's first node writes into the state and that every ``Send``
payload carries; the last node closes it. That registry is all the graphs add to the run
controller: scope, window, deadline, gates, cancellation and the report are its.

After a crash the registry of the new process is empty: the run is rebuilt from the
results already in the checkpointed state, and its ledger is seeded with what they cost,
so a resumed run neither forgets the budget already spent nor pays for finished items.
Results live in the state as records (``graphs/records.py``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.errors import GraphBubbleUp

from langgraph_fanout.core.checks import check_text
from langgraph_fanout.core.results import SubAgentResult
from langgraph_fanout.core.stopping import StopCondition
from langgraph_fanout.core.text import as_text
from langgraph_fanout.engine.agents import AgentLike, SubAgent
from langgraph_fanout.engine.call import Task
from langgraph_fanout.engine.dispatch import Dispatcher
from langgraph_fanout.engine.options import GuardOptions, Guards
from langgraph_fanout.engine.run import RunController
from langgraph_fanout.engine.spec import DispatchMode
from langgraph_fanout.errors import ConfigurationError
from langgraph_fanout.graphs.records import DEFERRED, result_from_record
from langgraph_fanout.guards.ledger import CostLedger
from langgraph_fanout.guards.limits import DispatchResourceLimits, SharedRun

_RUNS: dict[str, RunController] = {}


def find_run(key: str) -> RunController | None:
    """The run registered under ``key`` for the running event loop, if any."""
    run = _RUNS.get(key)
    if run is None or run.loop is not asyncio.get_running_loop():
        return None
    return run


IDLE_RUN_S = 3600.0
"""The fallback for a run no node saw end (the graph was cancelled between two nodes, or
paused and never resumed): a registered run with no call in flight for this long is
dropped. A run resumed later is rebuilt from the records in its checkpoint."""

_ACTIVE: dict[str, int] = {}
"""Call nodes of each run now running (a failure closes the run when the last one leaves)."""

_ENDED: OrderedDict[str, CostLedger] = OrderedDict()
"""The ledgers of the latest runs closed by a failure, oldest first: a node LangGraph
retries, or a graph resumed on its checkpointer, continues that ledger (what was spent and
cut off stays counted) instead of re-charging the records to a new one."""

_MAX_ENDED = 64


def _prune(loop: asyncio.AbstractEventLoop, *, keep: str) -> None:
    """Drop runs of loops that have ended and runs abandoned on this loop."""
    now = loop.time()
    for key, run in list(_RUNS.items()):
        if key == keep:
            continue
        closed = run.loop.is_closed()
        idle = run.loop is loop and not run.in_flight and now - run.touched > IDLE_RUN_S
        if closed or idle:
            _RUNS.pop(key, None)
            if not closed:
                run.abandon()


async def ensure_run(
    key: str,
    *,
    name: str,
    dispatcher: Dispatcher,
    total: int | None,
    recovered: Sequence[Mapping[str, Any]] = (),
) -> RunController:
    """The run registered under ``key``, or a new one opened (and registered) for it.

    Args:
        key: the run key.
        name: the graph's name for progress events.
        dispatcher: the graph's configuration.
        total: planned items.
        recovered: records already in the state (a resumed run): they count toward the
            gates and, for a run rebuilt in a new process, are charged to the ledger.
    """
    existing = find_run(key)
    if existing is not None:
        return existing
    loop = asyncio.get_running_loop()
    _prune(loop, keep=key)
    stale = _RUNS.get(key)  # registered under another (finished) event loop
    ended = _ENDED.pop(key, None)  # closed by a failure, now retried or resumed
    run = RunController(dispatcher.spec, total=total, name=name)
    results = [result_from_record(r) for r in recovered if r["status"] != DEFERRED]
    # A stale or ended top-level run's ledger already holds what was spent; a new
    # process's does not.
    kept = stale.shared.ledger if stale is not None and not stale.nested else ended
    run.prepare(recovered=results, ledger=kept)
    if stale is None and ended is None and recovered and not run.nested:
        _seed(run.shared, recovered)
    # Registered, fully prepared, before the first await: a sibling node opening the same
    # run concurrently finds this one instead of building a second.
    _RUNS[key] = run
    try:
        await run.start()
    except BaseException:
        _RUNS.pop(key, None)
        raise
    return run


async def close_run(key: str, *, failed: BaseException | None = None) -> None:
    """Close and drop the run of ``key`` (no-op if unknown)."""
    _ENDED.pop(key, None)
    run = find_run(key)
    if run is None:
        return
    _RUNS.pop(key, None)
    await run.aclose(failed)


@asynccontextmanager
async def call_node(key: str) -> AsyncIterator[None]:
    """Around a node that makes calls of the run of ``key``: when the last such node of the
    run fails or is cancelled, the run is closed at once (LangGraph's cancellation and a
    node's error reach us here, and nothing may reach the node that closes the run).

    Its ledger is kept among the latest ended runs (``_ENDED``): LangGraph may retry the
    node (a ``RetryPolicy``, a node timeout) or the graph may be resumed, and they continue
    the same spend. While a sibling of the same step still runs, the run stays open. An
    interrupt (``GraphBubbleUp``) pauses the graph: the run stays registered for the resume.
    """
    _ACTIVE[key] = _ACTIVE.get(key, 0) + 1
    failed: BaseException | None = None
    try:
        yield
    except GraphBubbleUp:
        raise
    except BaseException as exc:
        failed = exc
        raise
    finally:
        left = _ACTIVE[key] - 1
        if left:
            _ACTIVE[key] = left
        else:
            del _ACTIVE[key]
            if failed is not None:
                await _end(key, failed)


async def _end(key: str, failed: BaseException) -> None:
    run = _RUNS.pop(key, None)
    if run is None:
        return
    if not run.nested:
        _ENDED[key] = run.shared.ledger
        while len(_ENDED) > _MAX_ENDED:
            _ENDED.popitem(last=False)
    await run.aclose(failed)


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
    run: RunController,
    task: Task,
    *,
    config: RunnableConfig | None,
    progress: bool = True,
) -> SubAgentResult:
    """One sub-agent call of a graph node through the run; never raises for expected
    failures. With ``progress`` it counts as an input of the run and writes an
    ``item_done`` custom stream event.
    """
    result = await run.call(task, config=config, count=progress)
    if progress:
        get_stream_writer()(
            {
                "event": "item_done",
                "graph": run.name,
                "index": result.index,
                "status": result.status.value,
                "done": run.progress.done,
                "total": run.progress.total,
                "cost_usd_so_far": run.cost_usd,
            }
        )
    return result


# -- helpers of the graph factories ------------------------------------------------------


def make_dispatcher(
    *,
    limits: DispatchResourceLimits | None,
    agents: Mapping[str, AgentLike] | None,
    guards: Guards | None,
    options: GuardOptions,
    mode: DispatchMode | str = DispatchMode.PARTIAL,
    stop: StopCondition | None = None,
    aggregate: Any = None,
    name: str,
) -> Dispatcher:
    """The ``Dispatcher`` whose run spec, guards and agent registry a graph uses."""
    check_text("the graph's name", name)
    return Dispatcher(
        limits=limits,
        agents=agents,
        mode=mode,
        stop=stop,
        aggregate=aggregate,
        guards=guards,
        **options,
    )


def is_agent(obj: Any) -> bool:
    """An agent (called through the pipeline) rather than a local function."""
    return isinstance(obj, SubAgent | Runnable)


def node_name(text: str) -> str:
    """A LangGraph node name made of ``text`` (``:`` and ``|`` are reserved)."""
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in text)


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
    return as_text(value)


def check_limits(limits: DispatchResourceLimits | None, *, graph: str) -> None:
    """Reject ``min_success_count`` where a graph (named by ``graph``) reports a status
    instead of counting successes."""
    if isinstance(limits, DispatchResourceLimits) and limits.min_success_count is not None:
        raise ConfigurationError(
            f"min_success_count does not apply to a {graph} graph: its output has "
            "status='error' when it fails"
        )
