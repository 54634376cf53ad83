"""Batch processing: classify 20 receipts in parallel, timed against the same calls in sequence.

Shows `dispatch_agents` over 20 inputs with `max_concurrent=10`: one result per receipt in
input order, the report (time, cost, tokens), and the speedup measured against running
the same 20 calls one at a time. Offline: the model is simulated (40 ms per call).

Real model: replace `SimulatedChatModel(...)` with `ChatOpenAI(model="gpt-4o-mini", max_retries=0)`
(`from langchain_openai import ChatOpenAI`; `max_retries=0` because our policy owns retries).

Run: python examples/01_batch_processing.py
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from langgraph_fanout import DispatchResourceLimits, DispatchResult, Price, dispatch_agents
from langgraph_fanout.testing import SimulatedChatModel

RECEIPTS = [
    "Lunch at Luigi's trattoria, 2 pasta, 1 water", "Train ticket Paris to Lyon, 2nd class",
    "Printer paper, 5 reams, and toner", "Taxi from airport to hotel", "Team dinner, sushi bar",
    "Stapler, pens and sticky notes", "Flight LH 1234 Munich to Berlin",
    "Coffee and croissant, station cafe", "Hotel night, Ibis Lyon centre",
    "Desk lamp and monitor stand",
] * 2  # fmt: skip
PROMPT = "Classify this receipt as food, travel or office. Answer with one word.\n{text}"
# Made-up prices for the simulator (USD per million input/output tokens).
PRICES = {"simulated-small": Price(input_per_mtok=0.15, output_per_mtok=0.60)}
WORDS = {
    "food": ("lunch", "dinner", "coffee", "sushi"),
    "travel": ("train", "taxi", "flight", "hotel"),
}


def keyword_label(prompt: str, _rng: Any) -> str:
    """The simulator's answer: a keyword rule standing in for a real model's judgement."""
    found = [label for label, words in WORDS.items() if any(w in prompt.lower() for w in words)]
    return found[0] if found else "office"


async def classify(model: Any, max_concurrent: int) -> DispatchResult:
    return await dispatch_agents(
        PROMPT,
        [{"text": receipt} for receipt in RECEIPTS],
        agent=model,
        prices=PRICES,
        limits=DispatchResourceLimits(max_concurrent=max_concurrent),
    )


async def main() -> dict[str, Any]:
    model = SimulatedChatModel(answer=keyword_label, latency_s=0.04)
    parallel = await classify(model, max_concurrent=10)
    sequential = await classify(model, max_concurrent=1)  # the same 20 calls, one at a time
    labels = Counter(r.output.text for r in parallel if r.ok)
    report = parallel.report
    speedup = sequential.report.wall_time_s / report.wall_time_s
    print(
        f"Processed {report.inputs} receipts in {report.wall_time_s:.2f}s "
        f"({report.wall_time_s / report.inputs * 1000:.0f} ms per receipt), {dict(labels)}"
    )
    print(f"Sequential: {sequential.report.wall_time_s:.2f}s -> {speedup:.1f}x speedup")
    print(f"Cost ${report.spent_usd:.6f} ({report.input_tokens} + {report.output_tokens} tokens)")
    return {"report": report, "labels": dict(labels), "speedup": speedup,
            "sequential": sequential.report, "model": model}  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
