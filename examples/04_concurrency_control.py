"""Concurrency control: 10 tasks with at most 3 in flight, and the batching that results.

Shows `DispatchResourceLimits(max_concurrent=3)`: the engine lends three slots and starts
the next call the moment one frees (no polling). A callback passed through `config=`
sees each model call start and end: grouping the start times shows the waves (3, 3, 3, 1),
and counting calls between start and end shows that no more than 3 ran at once.
Offline: the simulated model takes 50 ms per call.

Real model: replace `SimulatedChatModel(...)` with `ChatOpenAI(model="gpt-4o-mini", max_retries=0)`
(`max_retries=0` because our policy owns retries).

Run: python examples/04_concurrency_control.py
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler

from langgraph_fanout import DispatchResourceLimits, dispatch_agents
from langgraph_fanout.testing import SimulatedChatModel


class CallWatcher(BaseCallbackHandler):
    """Sees every chat model call start and end (works with any LangChain chat model)."""

    run_inline = True  # called in the event loop, at the moment it happens

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.in_flight = self.peak = 0

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.starts.append(time.perf_counter())
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self.in_flight -= 1

    on_llm_error = on_llm_end


def waves(starts: list[float], gap_s: float) -> list[int]:
    """Batch sizes: a batch starts with the first call more than gap_s after the last batch's."""
    sizes: list[int] = []
    first = -float("inf")
    for t in sorted(starts):
        if t - first > gap_s:
            sizes.append(0)
            first = t
        sizes[-1] += 1
    return sizes


async def main() -> dict[str, Any]:
    model = SimulatedChatModel(latency_s=0.05)
    watcher = CallWatcher()
    result = await dispatch_agents(
        "Task {n}: say done",
        [{"n": n} for n in range(10)],
        agent=model,
        limits=DispatchResourceLimits(max_concurrent=3),
        config={"callbacks": [watcher]},
    )
    # Calls of one batch start together; the next batch starts about one latency later.
    batches = waves(watcher.starts, gap_s=result.report.latency_p50_s / 2)
    print(f"10 tasks with max_concurrent=3 completed in {result.report.wall_time_s:.2f}s")
    print("Batching: " + " -> ".join(f"[{n}]" for n in batches))
    print(f"Peak calls in flight: {watcher.peak}; average {result.report.parallelism:.1f}")
    return {"report": result.report, "batches": batches, "peak": watcher.peak, "model": model}


if __name__ == "__main__":
    asyncio.run(main())
