"""Idempotency: run the same dispatch twice; the second run is served from the cache.

Shows `cache=IdempotencyCache(ttl_s=3600)`: each call is keyed by the agent, the rendered
prompt and the sample index, so the second run of the same 10 inputs makes no model call,
costs nothing and returns the same outputs. Identical calls in flight at the same time
share one call too. Time and cost of both runs are measured. Offline: 80 ms per call.

Real model: replace `SimulatedChatModel(...)` with `ChatOpenAI(model="gpt-4o-mini", max_retries=0)`
(`max_retries=0` because our policy owns retries; drop `prices=`, the table knows it).
To share the cache between processes, back it with LangGraph's
`SqliteCache(path="cache.db")`: `IdempotencyCache(SqliteCache(path="cache.db"))`.

Run: python examples/06_idempotency.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph_fanout import IdempotencyCache, Price, dispatch_agents
from langgraph_fanout.testing import SimulatedChatModel

PRICES = {"simulated-small": Price(input_per_mtok=0.15, output_per_mtok=0.60)}  # made up
QUESTIONS = [{"q": f"What is {n} squared?"} for n in range(10)]


def square(prompt: str, _rng: Any) -> str:
    """The simulator's answer (a real model would compute it, more slowly)."""
    n = int("".join(c for c in prompt if c.isdigit()))
    return str(n * n)


async def main() -> dict[str, Any]:
    model = SimulatedChatModel(answer=square, latency_s=0.08)
    cache = IdempotencyCache(ttl_s=3600)
    runs = []
    for _ in range(2):
        runs.append(
            await dispatch_agents("Answer: {q}", QUESTIONS, agent=model, cache=cache, prices=PRICES)
        )
    first, second = (run.report for run in runs)
    speedup = first.wall_time_s / max(second.wall_time_s, 1e-9)
    calls = first.calls_started + second.calls_started  # cache hits make no call
    print(
        f"Run 1: {first.wall_time_s * 1000:.0f}ms, ${first.spent_usd:.6f}, "
        f"{first.calls_started} model calls"
    )
    print(
        f"Run 2: {second.wall_time_s * 1000:.1f}ms ({speedup:.0f}x faster), "
        f"${second.spent_usd:.6f}, {second.cache_hits} cache hits, model called "
        f"{calls} times in total"
    )
    same = [r.output.text for r in runs[0]] == [r.output.text for r in runs[1]]
    return {
        "first": first,
        "second": second,
        "speedup": speedup,
        "model_calls": calls,
        "same_outputs": same,
        "model": model,
    }


if __name__ == "__main__":
    asyncio.run(main())
