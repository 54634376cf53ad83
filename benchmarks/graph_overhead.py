"""Fan-out graph overhead per item against the engine and a plain ``Send`` graph; prints JSON.

Every case calls a zero-latency async agent once per item, N=1,000 items, at most 100 in
flight, so what is measured is the machinery around a call:
  plain_send:      a minimal LangGraph ``Send`` fan-out calling the agent directly, no
                   guards (the baseline), ``max_concurrency=100``.
  engine:          ``Dispatcher.run`` (whole call pipeline, ``max_concurrent=100``).
  fan_out_graph:   ``create_fan_out_graph`` (the same pipeline in ``Send`` nodes, records in
                   state, progress events, ``max_concurrent=100``).
The two graph cases are run again with an ``InMemorySaver`` checkpointer, where LangGraph
saves each finished item's writes.

Usage: python benchmarks/graph_overhead.py [--items N] [--repeat R] [--quick]
Medians of R runs; ratios are against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import platform
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from langgraph_fanout import Dispatcher, DispatchResourceLimits, create_fan_out_graph

CONCURRENCY = 100


async def agent(x: Any) -> Any:
    return x


class _SendState(TypedDict, total=False):
    items: list[int]
    out: Annotated[list[int], operator.add]


def plain_send_graph() -> StateGraph[Any, Any, Any, Any]:
    async def work(state: Any) -> dict[str, Any]:
        return {"out": [await agent(state["x"])]}

    graph = StateGraph(_SendState)
    graph.add_node("work", work)
    graph.add_conditional_edges(START, lambda s: [Send("work", {"x": i}) for i in s["items"]])
    graph.add_edge("work", END)
    return graph


def _config(thread: int) -> RunnableConfig:
    return {"max_concurrency": CONCURRENCY, "configurable": {"thread_id": f"t{thread}"}}


def case_plain_send(n: int, checkpointer: bool) -> Callable[[int], Coroutine[Any, Any, None]]:
    graph = plain_send_graph().compile(checkpointer=InMemorySaver() if checkpointer else None)

    async def run(i: int) -> None:
        out = await graph.ainvoke({"items": list(range(n))}, _config(i))
        assert len(out["out"]) == n

    return run


def case_engine(n: int) -> Callable[[int], Coroutine[Any, Any, None]]:
    dispatcher = Dispatcher(agent, limits=DispatchResourceLimits(max_concurrent=CONCURRENCY))

    async def run(_: int) -> None:
        result = await dispatcher.run(None, range(n))
        assert result.report.succeeded == n

    return run


def case_fan_out_graph(n: int, checkpointer: bool) -> Callable[[int], Coroutine[Any, Any, None]]:
    graph = create_fan_out_graph(
        agent, limits=DispatchResourceLimits(max_concurrent=CONCURRENCY)
    ).compile(checkpointer=InMemorySaver() if checkpointer else None)

    async def run(i: int) -> None:
        out = await graph.ainvoke({"items": list(range(n))}, _config(i))
        assert out["report"]["succeeded"] == n

    return run


def _median_s(run: Callable[[int], Coroutine[Any, Any, None]], repeat: int) -> float:
    asyncio.run(run(-1))  # warm-up: imports, compiled schemas, price tables
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        asyncio.run(run(i))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(n: int, repeat: int) -> dict[str, Any]:
    seconds = {
        "plain_send": _median_s(case_plain_send(n, False), repeat),
        "engine": _median_s(case_engine(n), repeat),
        "fan_out_graph": _median_s(case_fan_out_graph(n, False), repeat),
        "plain_send_checkpointed": _median_s(case_plain_send(n, True), repeat),
        "fan_out_graph_checkpointed": _median_s(case_fan_out_graph(n, True), repeat),
    }
    per_item = {k: v / n * 1e6 for k, v in seconds.items()}

    def ratio(a: str, b: str) -> float:
        return round(per_item[a] / per_item[b], 2)

    return {
        "items": n,
        "concurrency": CONCURRENCY,
        "repeat": repeat,
        "median_s": {k: round(v, 4) for k, v in seconds.items()},
        "per_item_us": {k: round(v, 1) for k, v in per_item.items()},
        "ratios": {
            "fan_out_graph_vs_plain_send": round(
                per_item["fan_out_graph"] / per_item["plain_send"], 2
            ),
            "fan_out_graph_vs_engine": round(per_item["fan_out_graph"] / per_item["engine"], 2),
            "engine_vs_plain_send": round(per_item["engine"] / per_item["plain_send"], 2),
            "checkpointed_fan_out_graph_vs_checkpointed_plain_send": round(
                per_item["fan_out_graph_checkpointed"] / per_item["plain_send_checkpointed"], 2
            ),
        },
        "graph_overhead_per_item_us": {
            "vs_plain_send": round(per_item["fan_out_graph"] - per_item["plain_send"], 1),
            "vs_engine": round(per_item["fan_out_graph"] - per_item["engine"], 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    args = parser.parse_args()
    repeat = 3 if args.quick else args.repeat
    report = {
        "benchmark": "graph_overhead",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "fan_out": measure(args.items, repeat),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
