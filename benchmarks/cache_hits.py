"""Throughput of the idempotency cache's hit path and of cache-key computation; prints JSON.

Hit path: ``IdempotencyCache.run`` on a stored key with LangGraph's ``InMemoryCache``,
against two baselines measured in the same run: a plain ``dict`` lookup and the backend's
own ``aget`` (which deserialises the stored record each time). Each figure is the median of
``--repeats`` runs of ``--n`` operations.

Run: ``.venv/bin/python benchmarks/cache_hits.py [--n 20000] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.cache.memory import InMemoryCache

from langgraph_fanout.guards.cache import CacheEntry, IdempotencyCache, cache_key

AGENT = {"name": "critic", "model": "gpt-4o", "temperature": 0.7, "max_tokens": 512, "seed": 1}
CONVERSATION = [
    SystemMessage("You are a terse reviewer."),
    HumanMessage("Review this function for bugs:\n" + "def f(x):\n    return x + 1\n" * 20),
    AIMessage("", tool_calls=[{"name": "run_tests", "args": {"path": "tests/"}, "id": "c1"}]),
    ToolMessage("12 passed", tool_call_id="c1"),
]
ARGS = {
    "document": {"title": "Q3 report", "sections": [f"section {i}" * 10 for i in range(20)]},
    "criteria": ["accuracy", "tone", "length"],
    "threshold": 0.8,
}


def median_rate(n: int, repeats: int, run_once: Callable[[], float]) -> dict[str, float]:
    """Median operations per second (and microseconds per operation) over ``repeats`` runs."""
    seconds = statistics.median(run_once() for _ in range(repeats))
    return {"per_s": round(n / seconds), "us_per_op": round(seconds / n * 1e6, 3)}


def timed_async(n: int, op: Callable[[], Awaitable[Any]]) -> Callable[[], float]:
    async def loop() -> float:
        start = time.perf_counter()
        for _ in range(n):
            await op()
        return time.perf_counter() - start

    return lambda: asyncio.run(loop())


def timed_sync(n: int, op: Callable[[], Any]) -> Callable[[], float]:
    def loop() -> float:
        start = time.perf_counter()
        for _ in range(n):
            op()
        return time.perf_counter() - start

    return loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="operations per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs; the median is reported")
    args = parser.parse_args()
    n, repeats = args.n, args.repeats

    key = cache_key(agent=AGENT, prompt=CONVERSATION)
    entry = CacheEntry(output=AIMessage("Looks fine."), agent_used="critic", cost_usd=0.003)
    backend: InMemoryCache[Any] = InMemoryCache()
    cache = IdempotencyCache(backend)
    asyncio.run(cache.set(key, entry))
    plain = {key: entry}

    async def must_not_compute() -> CacheEntry:
        raise AssertionError("the benchmark key must be a hit")

    async def dict_lookup() -> CacheEntry | None:
        return plain.get(key)

    full_key = ((cache.namespace,), key)

    hits = {
        "dict_lookup": median_rate(n, repeats, timed_async(n, dict_lookup)),
        "backend_aget": median_rate(n, repeats, timed_async(n, lambda: backend.aget([full_key]))),
        "idempotency_run_hit": median_rate(
            n, repeats, timed_async(n, lambda: cache.run(key, must_not_compute))
        ),
    }
    keys = {
        "str_prompt": median_rate(
            n, repeats, timed_sync(n, lambda: cache_key(agent=AGENT, prompt="Rate this answer."))
        ),
        "four_messages": median_rate(
            n, repeats, timed_sync(n, lambda: cache_key(agent=AGENT, prompt=CONVERSATION))
        ),
        "nested_args": median_rate(
            n, repeats, timed_sync(n, lambda: cache_key(agent=AGENT, prompt=ARGS, sample=3))
        ),
    }
    print(
        json.dumps(
            {
                "benchmark": "cache_hits",
                "n": n,
                "repeats": repeats,
                "statistic": "median",
                "hit_path": hits,
                "run_vs_dict_slowdown": round(
                    hits["dict_lookup"]["per_s"] / hits["idempotency_run_hit"]["per_s"], 1
                ),
                "cache_key": keys,
                "python": platform.python_version(),
                "langgraph": version("langgraph"),
                "langchain_core": version("langchain-core"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
