"""Engine overhead against the floors it competes with, measured in one run; prints JSON.

Cases:
  zero_latency: 10,000 zero-latency async calls at concurrency 100. Per-call overhead of
      this engine (whole pipeline on), a raw ``asyncio.gather`` + ``Semaphore`` floor,
      ``Runnable.abatch(max_concurrency=100)`` and a LangGraph ``Send`` fan-out.
  fixed_50ms: 200 calls of 50 ms at concurrency 50 (ideal 0.2 s): wall time / ideal.
  stream_1m: 1,000,000 inputs streamed through the engine in a fresh process: peak RSS growth.

Usage: python benchmarks/overhead.py [--quick]
Medians of repeated runs; ratios are against the floor measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import statistics
import subprocess
import sys
import time
from typing import Annotated, Any, TypedDict

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from langgraph_fanout import Dispatcher, DispatchResourceLimits


async def _noop(x: Any) -> Any:
    return x


async def floor_gather(n: int, conc: int, fn: Any = _noop) -> None:
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> Any:
        async with sem:
            return await fn(i)

    await asyncio.gather(*(one(i) for i in range(n)))


async def engine(n: int, conc: int, fn: Any = _noop) -> None:
    d = Dispatcher(fn, limits=DispatchResourceLimits(max_concurrent=conc))
    result = await d.run(None, range(n))
    assert result.report.succeeded == n


async def abatch(n: int, conc: int, fn: Any = _noop) -> None:
    r = RunnableLambda(fn)
    await r.abatch(list(range(n)), config={"max_concurrency": conc})


class _S(TypedDict):
    items: list[int]
    out: Annotated[list[int], operator.add]


def _send_graph(fn: Any) -> Any:
    async def work(state: dict[str, Any]) -> dict[str, Any]:
        return {"out": [await fn(state["x"])]}

    g = StateGraph(_S)
    g.add_node("work", work)
    g.add_conditional_edges(START, lambda s: [Send("work", {"x": i}) for i in s["items"]])
    g.add_edge("work", END)
    return g.compile()


async def send(n: int, conc: int, fn: Any = _noop) -> None:
    graph = _send_graph(fn)
    out = await graph.ainvoke({"items": list(range(n)), "out": []}, {"max_concurrency": conc})
    assert len(out["out"]) == n


def _time(fn: Any, *args: Any, repeat: int, cpu: bool = False) -> float:
    """Median wall (or, with ``cpu``, process CPU) seconds of ``repeat`` runs."""
    clock = time.process_time if cpu else time.perf_counter
    times = []
    for _ in range(repeat):
        t0 = clock()
        asyncio.run(fn(*args))
        times.append(clock() - t0)
    return statistics.median(times)


def zero_latency(n: int, repeat: int) -> dict[str, Any]:
    conc = 100
    runs = {
        "floor_gather_semaphore": _time(floor_gather, n, conc, repeat=repeat),
        "engine": _time(engine, n, conc, repeat=repeat),
        "runnable_abatch": _time(abatch, n, conc, repeat=repeat),
        "langgraph_send": _time(send, n, conc, repeat=max(1, repeat // 2)),
    }
    per_call_us = {k: v / n * 1e6 for k, v in runs.items()}
    floor = per_call_us["floor_gather_semaphore"]
    eng = per_call_us["engine"]
    # CPU time is less disturbed than wall time by other jobs on a shared machine.
    cpu_floor = _time(floor_gather, n, conc, repeat=repeat, cpu=True) / n * 1e6
    cpu_engine = _time(engine, n, conc, repeat=repeat, cpu=True) / n * 1e6
    return {
        "calls": n,
        "concurrency": conc,
        "per_call_us": {k: round(v, 2) for k, v in per_call_us.items()},
        "cpu_per_call_us": {"floor": round(cpu_floor, 2), "engine": round(cpu_engine, 2)},
        "engine_vs_floor_cpu": round(cpu_engine / cpu_floor, 2),
        "engine_vs_floor": round(eng / floor, 2),
        "abatch_vs_engine": round(per_call_us["runnable_abatch"] / eng, 2),
        "send_vs_engine": round(per_call_us["langgraph_send"] / eng, 2),
        "targets": {"engine_vs_floor<=": 2.0, "abatch_vs_engine>=": 3.0, "send_vs_engine>=": 4.0},
    }


async def _sleep50(x: Any) -> Any:
    await asyncio.sleep(0.05)
    return x


def fixed_50ms(repeat: int) -> dict[str, Any]:
    n, conc, ideal = 200, 50, 0.2
    eng = _time(engine, n, conc, _sleep50, repeat=repeat)
    floor = _time(floor_gather, n, conc, _sleep50, repeat=repeat)
    return {
        "calls": n,
        "concurrency": conc,
        "ideal_s": ideal,
        "engine_s": round(eng, 4),
        "floor_s": round(floor, 4),
        "engine_vs_ideal": round(eng / ideal, 3),
        "target_engine_vs_ideal<=": 1.05,
    }


_STREAM_CHILD = r"""
import asyncio, json, resource, sys
from contextlib import aclosing
from langgraph_fanout import Dispatcher, DispatchResourceLimits

async def noop(x):
    return x

async def main(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    d = Dispatcher(noop, limits=DispatchResourceLimits(max_concurrent=100))
    count = 0
    async with aclosing(d.stream(None, iter(range(n)))) as s:
        async for r in s:
            count += r.ok
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"items": n, "ok": count, "rss_growth_mb": round((after - before) / 1024, 1)}))

asyncio.run(main(int(sys.argv[1])))
"""


def stream_1m(n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _STREAM_CHILD, str(n)], capture_output=True, text=True, check=True
    )
    data: dict[str, Any] = json.loads(out.stdout)
    data["wall_s"] = round(time.perf_counter() - t0, 1)
    data["target_rss_growth_mb<"] = 100
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    n, repeat, big = (2_000, 3, 50_000) if args.quick else (10_000, 5, 1_000_000)
    report = {
        "zero_latency": zero_latency(n, repeat),
        "fixed_50ms": fixed_50ms(repeat),
        "stream": stream_1m(big),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
