"""Parallel search: ask a model how relevant each of 10 documents is, all at once, and rank.

Shows one call per document with `dispatch_agents`, JSON answers read by
`rank_by_metric("score")` (best first) and `best_result("score")`, and the measured
speedup over searching the documents one at a time. Offline: the simulated model scores
a document by the query words it contains (60 ms per call).

Real model: replace `SimulatedChatModel(...)` with `ChatOpenAI(model="gpt-4o-mini", max_retries=0)`
(`max_retries=0` because our policy owns retries).

Run: python examples/03_parallel_search.py
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from langgraph_fanout import DispatchResourceLimits, best_result, dispatch_agents, rank_by_metric
from langgraph_fanout.testing import SimulatedChatModel

QUERY = "refund policy for damaged items"
DOCUMENTS = {
    "doc-01": "Shipping times: orders leave the warehouse within two days.",
    "doc-02": "Refund policy: damaged items are refunded in full within 30 days.",
    "doc-03": "Our office is closed on public holidays.",
    "doc-04": "Items damaged in transit: report them within 48 hours with photos.",
    "doc-05": "Gift cards cannot be exchanged for cash.",
    "doc-06": "Refund requests are handled by the support team.",
    "doc-07": "Careers: we are hiring engineers.",
    "doc-08": "The policy for returns of unopened items is 14 days.",
    "doc-09": "Warranty: electronics have a two-year warranty.",
    "doc-10": "Press kit and logos are available on request.",
}
PROMPT = (
    "Query: {query}\nDocument {doc_id}: {text}\nHow relevant is the document to the query? "
    'Reply with JSON only: {{"doc": "<id>", "score": <0-10>}}'
)


def word_overlap(prompt: str, _rng: Any) -> str:
    """The simulator's answer: a score from shared words, standing in for a model's judgement."""
    query_line, doc_line = prompt.lower().split("\n")[:2]
    query = set(re.findall(r"\w+", query_line)) - {"query", "for"}
    doc_id, _, text = doc_line.removeprefix("document ").partition(": ")
    hits = len(query & set(re.findall(r"\w+", text)))
    return json.dumps({"doc": doc_id, "score": min(10, 3 * hits)})


async def search(model: Any, max_concurrent: int) -> Any:
    arguments = [{"query": QUERY, "doc_id": d, "text": t} for d, t in DOCUMENTS.items()]
    limits = DispatchResourceLimits(max_concurrent=max_concurrent)
    return await dispatch_agents(
        PROMPT, arguments, agent=model, aggregate=rank_by_metric("score"), limits=limits
    )


async def main() -> dict[str, Any]:
    model = SimulatedChatModel(answer=word_overlap, latency_s=0.06)
    result = await search(model, max_concurrent=10)
    sequential = await search(model, max_concurrent=1)
    ranked = [(json.loads(item.output.text)["doc"], item.score) for item in result.aggregate]
    best = best_result("score")(result.results)
    speedup = sequential.report.wall_time_s / result.report.wall_time_s
    print(
        f"{len(result)} documents searched in {result.report.wall_time_s:.2f}s "
        f"(one at a time: {sequential.report.wall_time_s:.2f}s, {speedup:.1f}x)"
    )
    print(f"Top 3 for {QUERY!r}: {ranked[:3]}")
    print(f"best_result: {best.output.text if best else None}")
    return {"report": result.report, "ranked": ranked, "best": best, "speedup": speedup}


if __name__ == "__main__":
    asyncio.run(main())
