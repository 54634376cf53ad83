"""A graph run's state lives as long as the run: cancelled or failed runs are unregistered
at once, their ledger kept among the latest ended runs so that a node LangGraph retries or
a graph resumed on its checkpointer is charged once; a long-lived process's memory stays
flat (simulated day)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import RetryPolicy

import fakeclock
from langgraph_fanout import (
    BreakerRegistry,
    CostLedger,
    DispatchResourceLimits,
    IdempotencyCache,
    SubAgent,
    create_fan_out_graph,
    create_pipeline_graph,
    create_tree_graph,
    dispatch_agents,
    parallel,
)
from langgraph_fanout.graphs import runs as graph_runs
from langgraph_fanout.guards.cache import BoundedMemoryCache


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    graph_runs._RUNS.clear()
    graph_runs._ENDED.clear()
    yield
    graph_runs._RUNS.clear()
    graph_runs._ENDED.clear()


class Hang:
    """An agent that answers its first ``free`` calls and never answers the others."""

    def __init__(self, free: int = 0) -> None:
        self.free = free
        self.started = 0
        self.hanging = asyncio.Event()

    async def __call__(self, prompt: Any) -> Any:
        self.started += 1
        if self.started > self.free:
            self.hanging.set()
            await asyncio.Event().wait()
        return prompt


async def _cancel_when_hanging(coro: Any, *hangs: Hang, extra_steps: int = 0) -> None:
    """Run ``coro`` until one of ``hangs`` blocks (the graph is inside one of its nodes, and
    no call of that step can end), then a few more loop iterations, then cancel it."""
    task = asyncio.ensure_future(coro)
    waiters = [asyncio.ensure_future(h.hanging.wait()) for h in hangs]
    await asyncio.wait([task, *waiters], return_when=asyncio.FIRST_COMPLETED)
    for w in waiters:
        w.cancel()
    for _ in range(extra_steps):
        await asyncio.sleep(0)
    assert not task.done(), "the graph ended before it could be cancelled"
    task.cancel()
    await asyncio.gather(task, *waiters, return_exceptions=True)


async def test_200_cancelled_fan_out_runs_leave_no_state() -> None:
    # Cancelled with 0 to 3 calls answered and 1 to 4 in flight, at varied loop steps.
    for i in range(200):
        agent = Hang(free=i % 4)
        graph = create_fan_out_graph(
            agent, limits=DispatchResourceLimits(max_concurrent=1 + i % 4)
        ).compile()
        await _cancel_when_hanging(
            graph.ainvoke({"items": ["a", "b", "c", "d"]}), agent, extra_steps=i % 7
        )
        assert graph_runs._RUNS == {}, f"run {i} left its state registered"


async def test_cancelled_pipeline_and_tree_runs_leave_no_state() -> None:
    async def echo(prompt: Any) -> Any:
        return prompt

    for i in range(60):
        first, branch = Hang(free=i % 2), Hang()
        stages: list[Any] = [first, parallel(echo, branch), echo]
        pipeline = create_pipeline_graph(stages).compile()
        await _cancel_when_hanging(pipeline.ainvoke({"input": "x"}), first, branch)
        assert graph_runs._RUNS == {}, f"pipeline run {i} left its state registered"

    def split(task: Any) -> Any:
        return None if len(task) >= 3 else [task + "a", task + "b"]

    def combine(task: Any, parts: list[Any]) -> Any:
        return "".join(parts)

    for i in range(30):
        leaf = Hang(free=i % 4)
        tree = create_tree_graph(leaf, split=split, combine=combine).compile()
        await _cancel_when_hanging(tree.ainvoke({"task": "t"}), leaf, extra_steps=i % 5)
        assert graph_runs._RUNS == {}, f"tree run {i} left its state registered"


async def test_a_graph_that_raises_unregisters_its_run_at_once() -> None:
    async def echo(prompt: Any) -> Any:
        return prompt

    def broken(results: Any) -> Any:
        raise RuntimeError("combine is broken")

    pipeline = create_pipeline_graph([echo, parallel(echo, echo, combine=broken), echo])
    with pytest.raises(RuntimeError, match="combine is broken"):
        await pipeline.compile().ainvoke({"input": "x"})
    assert graph_runs._RUNS == {}


async def test_an_outer_timeout_unregisters_the_run() -> None:
    graph = create_fan_out_graph(Hang()).compile()
    for _ in range(20):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await graph.ainvoke({"items": list(range(10))})
    assert graph_runs._RUNS == {}


class Flaky:
    """An agent whose first call for ``hangs`` never answers (a node timeout cuts it);
    every later call answers at once."""

    def __init__(self, hangs: str) -> None:
        self.hangs, self.calls = hangs, Counter[str]()

    async def __call__(self, prompt: Any) -> Any:
        self.calls[prompt] += 1
        if prompt == self.hangs and self.calls[prompt] == 1:
            await asyncio.Event().wait()
        return prompt


RETRY = RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False)


def test_a_node_retried_after_a_timeout_continues_the_same_ledger() -> None:
    # b's first call is cut off by the node timeout ($1 billed: its input, the rest
    # uncertain at $1 a call) and retried by LangGraph: a, b, b again, c are $4 in all.
    async def scenario() -> tuple[float, float, int]:
        ledger = CostLedger(limit_usd=100.0)
        agent = SubAgent.of(Flaky("b"), name="a", cost_per_call_usd=1.0)
        # LangGraph's node timeout is real time (a fake clock would also time out the
        # nodes that wait on a thread); 0.5 s is far above what any node here takes.
        graph = (
            create_fan_out_graph(agent, ledger=ledger)
            .set_node_defaults(timeout=0.5, retry_policy=RETRY)
            .compile()
        )
        out = await graph.ainvoke({"items": ["a", "b", "c"]})
        assert [r["status"] for r in out["results"]] == ["ok", "ok", "ok"]
        return out["report"]["total_spent_usd"], ledger.snapshot().spent_usd, len(graph_runs._RUNS)

    reported, spent, left = asyncio.run(scenario())
    assert (reported, spent, left) == (4.0, 4.0, 0)


def test_a_cancelled_graph_resumed_on_its_checkpointer_is_charged_once() -> None:
    hang = {"c", "d"}

    async def agent(prompt: Any) -> Any:
        if prompt in hang:
            await asyncio.Event().wait()
        return prompt

    async def scenario(ledger: CostLedger | None) -> tuple[int, float]:
        sub = SubAgent.of(agent, name="a", cost_per_call_usd=1.0)
        limits = DispatchResourceLimits(max_total_cost_usd=100.0)
        graph = create_fan_out_graph(
            sub, **({"ledger": ledger} if ledger is not None else {"limits": limits})
        ).compile(checkpointer=InMemorySaver())
        config: RunnableConfig = {"configurable": {"thread_id": "t"}}
        task = asyncio.ensure_future(graph.ainvoke({"items": ["a", "b", "c", "d"]}, config))
        await asyncio.sleep(1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        left = len(graph_runs._RUNS)
        hang.clear()
        out = await graph.ainvoke(None, config)
        assert [r["status"] for r in out["results"]] == ["ok"] * 4
        hang.update({"c", "d"})
        return left, out["report"]["total_spent_usd"]

    # a, b answered ($2), c and d cut off ($1 each billed), then c and d again ($2): $6.
    ledger = CostLedger(limit_usd=100.0)
    assert fakeclock.run(scenario(ledger)) == (0, 6.0)
    assert ledger.snapshot().spent_usd == 6.0
    assert fakeclock.run(scenario(None)) == (0, 6.0)


def test_a_retried_pipeline_branch_stays_within_the_cap() -> None:
    calls = Counter[str]()

    def agent(name: str, delay: float) -> SubAgent:
        async def call(prompt: Any) -> Any:
            calls[name] += 1
            if name == "b" and calls[name] == 1:
                await asyncio.Event().wait()  # cut off by the node timeout
            await asyncio.sleep(delay)
            return name

        return SubAgent.of(call, name=name, cost_per_call_usd=1.0)

    async def scenario() -> dict[str, Any]:
        graph = (
            create_pipeline_graph(
                [parallel(agent("b", 0), agent("c", 0.35))],
                limits=DispatchResourceLimits(max_total_cost_usd=2.0),
            )
            .set_node_defaults(timeout=0.4, retry_policy=RETRY)
            .compile()
        )
        return await graph.ainvoke({"input": "x"})

    out = fakeclock.run(scenario())
    # b's cut-off call ($1) and c ($1) use the $2: b's retry is refused, never sent.
    assert out["report"]["total_spent_usd"] == 2.0
    assert calls == {"b": 1, "c": 1}


def test_a_simulated_day_keeps_memory_flat(monkeypatch: pytest.MonkeyPatch) -> None:
    """24 simulated hours of a long-lived process: every hour, finished, cancelled and
    timed-out graph runs and cached dispatches with a 30-minute TTL. Nothing accumulates:
    no run state, at most the cache's live entries, and traced
    memory the same at the end of the day as after the first hours."""
    hours = 24
    # The ledgers of the latest ended runs are kept (64 by default, a bounded record):
    # 4 here, so that record is full within the first hour and the curve shows the rest.
    monkeypatch.setattr(graph_runs, "_MAX_ENDED", 4)
    backend = BoundedMemoryCache(max_entries=500, timer=lambda: asyncio.get_running_loop().time())
    cache = IdempotencyCache(backend, ttl_s=1800)

    async def echo(prompt: Any) -> Any:
        await asyncio.sleep(0.5)
        return f"answer to {prompt}" * 20

    fan = create_fan_out_graph(echo).compile()

    async def hour(h: int) -> None:
        start = asyncio.get_running_loop().time()
        for minute in range(0, 60, 15):
            items = [f"h{h}m{minute}i{i}" for i in range(20)]
            await fan.ainvoke({"items": items})
            agent = Hang(free=minute % 4)
            # Its own breakers: the process-wide registry keeps a dead agent's breaker
            # until its next prune (every 64 new keys), which would saw the curve.
            hanging = create_fan_out_graph(agent, breakers=BreakerRegistry()).compile()
            await _cancel_when_hanging(hanging.ainvoke({"items": items[:5]}), agent)
            await dispatch_agents(None, items, agent=echo, cache=cache)
            await asyncio.sleep(900)
        await asyncio.sleep(max(0.0, start + 3600 - asyncio.get_running_loop().time()))

    async def day() -> list[tuple[int, int, int]]:
        samples = []
        for h in range(hours):
            await hour(h)
            gc.collect()
            memory = tracemalloc.get_traced_memory()[0]
            samples.append((len(graph_runs._RUNS), len(backend), memory))
        return samples

    tracemalloc.start()
    try:
        samples = fakeclock.run(day())
    finally:
        tracemalloc.stop()
    assert all(runs == 0 for runs, _, _ in samples), [runs for runs, _, _ in samples]
    assert len(graph_runs._ENDED) <= graph_runs._MAX_ENDED
    # An hour writes 80 entries, of which the last 30 minutes' survive (and the cap holds).
    assert all(entries <= 500 for _, entries, _ in samples)
    assert samples[-1][1] <= samples[2][1]
    # Flat: the second half of the day adds at most 24 KiB over the first (allocator and
    # interpreter caches settle: ~7 KiB measured). A leak of one tenacity controller per
    # dispatch added ~60 KiB over those 12 hours; of one run state per graph run, more.
    memory = [mem for _, _, mem in samples]
    assert max(memory[12:]) - max(memory[:12]) <= 24 * 1024, memory
