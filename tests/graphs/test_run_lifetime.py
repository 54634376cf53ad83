"""A graph run's state does not outlive its use: runs that were cancelled or raised stay
registered (a retry of the node or a resume of the graph still shares their budget, cut-off
spend and deadline) until they have been idle for ``IDLE_RUN_S``, then the next run drops
them; a long-lived process's memory stays flat (simulated day)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

import fakeclock
from langgraph_fanout import (
    BreakerRegistry,
    DispatchResourceLimits,
    IdempotencyCache,
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
    yield
    graph_runs._RUNS.clear()


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


def test_200_cancelled_fan_out_runs_are_dropped_after_an_idle_hour() -> None:
    # Cancelled with 0 to 3 calls answered and 1 to 4 in flight, at varied loop steps.
    async def scenario() -> tuple[int, int]:
        for i in range(200):
            agent = Hang(free=i % 4)
            graph = create_fan_out_graph(
                agent, limits=DispatchResourceLimits(max_concurrent=1 + i % 4)
            ).compile()
            await _cancel_when_hanging(
                graph.ainvoke({"items": ["a", "b", "c", "d"]}), agent, extra_steps=i % 7
            )
        left = len(graph_runs._RUNS)
        assert all(not run.in_flight for run in graph_runs._RUNS.values())
        await asyncio.sleep(graph_runs.IDLE_RUN_S + 1)
        await create_fan_out_graph(lambda p: p).compile().ainvoke({"items": ["x"]})
        return left, len(graph_runs._RUNS)

    left, after = fakeclock.run(scenario())
    assert 0 < left <= 200  # kept for a retry or a resume, with nothing in flight...
    assert after == 0  # ...and dropped by the first run opened after an idle hour


def test_cancelled_pipeline_and_tree_runs_are_dropped_after_an_idle_hour() -> None:
    async def echo(prompt: Any) -> Any:
        return prompt

    def split(task: Any) -> Any:
        return None if len(task) >= 3 else [task + "a", task + "b"]

    def combine(task: Any, parts: list[Any]) -> Any:
        return "".join(parts)

    async def scenario() -> int:
        for i in range(60):
            first, branch = Hang(free=i % 2), Hang()
            stages: list[Any] = [first, parallel(echo, branch), echo]
            pipeline = create_pipeline_graph(stages).compile()
            await _cancel_when_hanging(pipeline.ainvoke({"input": "x"}), first, branch)
        for i in range(30):
            leaf = Hang(free=i % 4)
            tree = create_tree_graph(leaf, split=split, combine=combine).compile()
            await _cancel_when_hanging(tree.ainvoke({"task": "t"}), leaf, extra_steps=i % 5)
        await asyncio.sleep(graph_runs.IDLE_RUN_S + 1)
        await create_fan_out_graph(echo).compile().ainvoke({"items": ["x"]})
        return len(graph_runs._RUNS)

    assert fakeclock.run(scenario()) == 0


def test_a_simulated_day_keeps_memory_flat() -> None:
    """24 simulated hours of a long-lived process: every hour, finished, cancelled and
    timed-out graph runs and cached dispatches with a 30-minute TTL. Nothing accumulates:
    at most the last hour's run states, at most the cache's live entries, and traced
    memory the same at the end of the day as after the first hours."""
    hours = 24
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
    # At most the last hour's cancelled runs (4 an hour) are still kept for a resume.
    assert all(runs <= 8 for runs, _, _ in samples), [runs for runs, _, _ in samples]
    # An hour writes 80 entries, of which the last 30 minutes' survive (and the cap holds).
    assert all(entries <= 500 for _, entries, _ in samples)
    assert samples[-1][1] <= samples[2][1]
    # Flat: the second half of the day adds at most 24 KiB over the first (allocator and
    # interpreter caches settle: ~7 KiB measured). A leak of one tenacity controller per
    # dispatch added ~60 KiB over those 12 hours; of one run state per graph run, more.
    memory = [mem for _, _, mem in samples]
    assert max(memory[12:]) - max(memory[:12]) <= 24 * 1024, memory
