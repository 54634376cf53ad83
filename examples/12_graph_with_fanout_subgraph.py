"""Your own LangGraph graph with a fan-out inside: plan -> research in parallel -> summarize.

Shows a user's `StateGraph` whose middle node is `create_fan_out_graph(...).compile()`:
`plan` writes `items`, the subgraph answers them in parallel and writes `results`,
`aggregate` and `report` into the parent's state, `summarize` reads them. Streaming with
`stream_mode="custom"` gives one `item_done` event per finished call (done/total, cost so
far); `subgraphs=True` is what lets a subgraph's custom events reach the parent's stream.

Real model: replace `SimulatedChatModel(...)` with `ChatOpenAI(model="gpt-4o-mini", max_retries=0)`
(and drop `prices=`).

Run: python examples/12_graph_with_fanout_subgraph.py
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from langgraph_fanout import Price, collect_all, create_fan_out_graph
from langgraph_fanout.testing import SimulatedChatModel

PRICES = {"simulated-small": Price(input_per_mtok=0.15, output_per_mtok=0.60)}
ASPECTS = ["market size", "competitors", "regulation", "pricing"]


class Research(TypedDict, total=False):
    topic: str
    items: list[dict[str, str]]  # written by `plan`, read by the fan-out
    results: list[dict[str, Any]]  # the fan-out's output keys
    aggregate: Any
    report: dict[str, Any]
    summary: str


def plan(state: Research) -> dict[str, Any]:
    return {"items": [{"topic": state["topic"], "aspect": aspect} for aspect in ASPECTS]}


def summarize(state: Research) -> dict[str, Any]:
    report, notes = state["report"], [message.text for message in state["aggregate"]]
    head = f"{report['succeeded']}/{report['inputs']} aspects for ${report['spent_usd']:.6f}"
    return {"summary": f"{head}: " + "; ".join(notes)}


async def main() -> dict[str, Any]:
    model = SimulatedChatModel(
        answer=lambda prompt, _rng: f"notes on {prompt.split(': ')[-1]}", latency_s=0.03
    )
    research = create_fan_out_graph(
        model, template="Research {topic}: {aspect}", aggregate=collect_all(), prices=PRICES,
        name="research",
    ).compile()  # fmt: skip
    graph = StateGraph(Research).add_sequence([plan, ("research", research), summarize])
    graph.add_edge(START, "plan")
    graph.add_edge("summarize", END)
    events: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    async for namespace, mode, chunk in graph.compile().astream(
        {"topic": "e-bikes"}, stream_mode=["custom", "values"], subgraphs=True
    ):
        if mode == "custom":
            events.append(chunk)
            print(
                f"  [{chunk['graph']}] {chunk['done']}/{chunk['total']} done: item "
                f"{chunk['index']} {chunk['status']}, ${chunk['cost_usd_so_far']:.6f} so far"
            )
        elif not namespace:  # the parent's own state, not the subgraph's
            final = chunk
    print(f"{len(events)} progress events; summary: {final['summary']}")
    return {"events": events, "progress_events": len(events), "summary": final["summary"],
            "report": final["report"], "model": model}  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
