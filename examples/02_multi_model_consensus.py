"""Multi-model consensus: five different models vote on one classification.

Shows heterogeneous tasks (one `Task` per model) run by `Dispatcher.run_tasks` with
`majority_vote()` as the aggregate: first every voter answers, then the same vote with
early decision, which stops as soon as the remaining voters cannot change the winner and
cancels their calls. Offline: five simulated models with their own seeds and latencies.

Real model: replace `SimulatedChatModel(...)` in `VOTERS` with e.g.
`ChatOpenAI(model="gpt-4o-mini", max_retries=0)` and `ChatAnthropic(model="claude-3-5-haiku-latest",
max_retries=0)` (`max_retries=0` because our policy owns retries).

Run: python examples/02_multi_model_consensus.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph_fanout import Dispatcher, SubAgent, Task, Vote, majority_vote
from langgraph_fanout.testing import SimulatedChatModel

QUESTION = (
    "Classify this product into one category (electronics, office, kitchen). "
    "Answer with one word.\nProduct: USB-C charging cable, 2 m, braided"
)
# Each simulated voter answers "electronics" more often than not, but not always.
CHOICES = ["electronics", "Electronics.", "electronics", "office"]
VOTERS = [
    SimulatedChatModel(model_name=name, choices=CHOICES, seed=seed, latency_s=0.02 * (seed + 1))
    for seed, name in enumerate(["sim-alpha", "sim-beta", "sim-gamma", "sim-delta", "sim-omega"])
]


async def vote(early: str | None) -> tuple[Vote, Any]:
    # One question: its voters share it (question=0), so they are one vote.
    tasks = [
        Task(index=i, agent=SubAgent.of(m), prompt=QUESTION, question=0)
        for i, m in enumerate(VOTERS)
    ]
    result = await Dispatcher(aggregate=majority_vote(early=early)).run_tasks(tasks)
    return result.aggregate[0], result.report


async def main() -> dict[str, Any]:
    full, full_report = await vote(early=None)
    print(f"{full.voters} models completed in {full_report.wall_time_s:.2f}s")
    print(
        f"Majority vote: {full.winner_key} ({full.support}/{full.valid_votes} votes), "
        f"counts {full.counts}"
    )
    early, early_report = await vote(early="exact")
    print(
        f"With early decision: {early.winner_key} after {early.valid_votes} votes in "
        f"{early_report.wall_time_s:.2f}s; {early_report.cancelled} calls cancelled "
        f"({early_report.stop_reason})"
    )
    return {"vote": full, "report": full_report, "early_vote": early, "early_report": early_report}


if __name__ == "__main__":
    asyncio.run(main())
