"""Tree recursion: quicksort of 1,000 numbers as a tree of parallel sub-tasks.

Shows `create_tree_graph` on the seed's quicksort orchestration: `split` partitions a list
around its median pivot (two equal halves), the halves are sorted in parallel, `combine`
concatenates them. With `max_depth=3` the tree has 2**3 = 8 leaves; only the leaves are
sub-agent calls, each through the call pipeline (budget, concurrency cap, retries).
Sorting is not an LLM task, so the leaf is a plain async function that sorts, after a
50 ms wait standing in for a remote worker; split and combine are local functions.

Real model: pass a chat model as the leaf, e.g. `ChatOpenAI(model="gpt-4o-mini", max_retries=0)`
in place of `sort_leaf`, with a split and combine that work on its text (the tree, its
limits and its report stay as they are).

Run: python examples/08_tree_recursion.py
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

from langgraph_fanout import create_tree_graph

MAX_DEPTH = 3
LEAF_LATENCY_S = 0.05


def partition(numbers: list[int]) -> list[list[int]] | None:
    """Split around the median pivot; `None` leaves a list too short to split whole."""
    if len(numbers) < 2:
        return None
    pivot = statistics.median_high(numbers)
    return [[x for x in numbers if x < pivot], [x for x in numbers if x >= pivot]]


def concatenate(_task: list[int], parts: list[list[int]]) -> list[int]:
    return [x for part in parts for x in part]


async def main() -> dict[str, Any]:
    leaf_sizes: list[int] = []

    async def sort_leaf(numbers: list[int]) -> list[int]:
        leaf_sizes.append(len(numbers))
        await asyncio.sleep(LEAF_LATENCY_S)  # a remote worker's round trip
        return sorted(numbers)

    numbers = random.Random(7).sample(range(100_000), 1000)
    graph = create_tree_graph(
        sort_leaf, split=partition, combine=concatenate, max_depth=MAX_DEPTH
    ).compile()
    started = time.perf_counter()
    out = await graph.ainvoke({"task": numbers})
    wall_time_s = time.perf_counter() - started
    is_sorted = out["status"] == "ok" and out["result"] == sorted(numbers)
    leaf_calls = out["report"]["calls_started"]
    one_by_one_s = leaf_calls * LEAF_LATENCY_S
    print(
        f"Sorted {len(numbers)} numbers: {is_sorted}; depth {out['depth_reached']} reached, "
        f"{leaf_calls} leaf calls of {leaf_sizes} numbers"
    )
    print(
        f"Wall time {wall_time_s:.2f}s for {leaf_calls} leaves of {LEAF_LATENCY_S:.2f}s each "
        f"({one_by_one_s:.2f}s one after another): {one_by_one_s / wall_time_s:.1f}x faster"
    )
    return {"sorted": is_sorted, "leaf_calls": leaf_calls, "leaves": out["leaves"],
            "depth_reached": out["depth_reached"], "wall_time_s": wall_time_s,
            "leaf_sizes": leaf_sizes, "report": out["report"]}  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
