"""Fan-in: three collectors search two topics in parallel, then one writer combines them.

Shows `create_fan_in_graph([web, news, papers], aggregator=writer)`: every collector is
called on every source (3 x 2 = 6 calls at once), then the writer, a bigger simulated
model, is called once with the 6 collected outputs in its prompt. The report prices every
call, the writer's included, from `SIMULATED_MODEL_PRICES` (made-up per-token prices).

Real model: replace `SimulatedChatModel(...)` with `ChatOpenAI(model="gpt-4o-mini", max_retries=0)`
for the collectors and `ChatOpenAI(model="gpt-4o", max_retries=0)` for the writer (drop
`prices=`: real models are priced from the genai-prices table).

Run: python examples/10_fan_in.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph_fanout import Price, SubAgent, create_fan_in_graph
from langgraph_fanout.testing import SIMULATED_MODEL_PRICES, SimulatedChatModel

PRICES = {
    model: Price(input_per_mtok=i, output_per_mtok=o)
    for model, (i, o) in SIMULATED_MODEL_PRICES.items()
}
TOPICS = ["solid-state batteries", "sodium-ion batteries"]
ASK = "Find three recent facts about "
TEMPLATE = ASK + "{topic}."


def collector(name: str) -> SubAgent:
    def found(prompt: str, _rng: Any) -> str:
        return f"3 facts on {prompt.removeprefix(ASK).rstrip('.')} from {name}"

    return SubAgent.of(SimulatedChatModel(answer=found, latency_s=0.04), name=name)


def brief(prompt: str, _rng: Any) -> str:
    """The simulated writer's answer: what it found in its prompt."""
    notes = sum(line.startswith("[") for line in prompt.splitlines())
    return f"Brief from {notes} notes on {' and '.join(t for t in TOPICS if t in prompt)}."


async def main() -> dict[str, Any]:
    collectors = [collector(name) for name in ("web", "news", "papers")]
    model = SimulatedChatModel(model="simulated-large", answer=brief, record_prompts=True)
    writer = SubAgent.of(model, name="writer")
    graph = create_fan_in_graph(
        collectors, aggregator=writer, template=TEMPLATE, prices=PRICES
    ).compile()

    out = await graph.ainvoke({"sources": [{"topic": topic} for topic in TOPICS]})

    report, answer = out["report"], out["aggregate"].text
    collected = [r for r in out["results"] if r["status"] == "ok"]
    by_agent = report["cost_by_agent"]
    collectors_usd = sum(usd for name, usd in by_agent.items() if name != "writer")
    print(f"Collected {len(collected)} outputs ({len(collectors)} collectors x {len(TOPICS)} "
          f"topics) in parallel; the writer answered: {answer!r}")  # fmt: skip
    print(
        f"Cost ${report['spent_usd']:.6f} for {report['calls_started']} calls: collectors "
        f"${collectors_usd:.6f}, writer ${by_agent['writer']:.6f} ({report['input_tokens']} + "
        f"{report['output_tokens']} tokens, {report['wall_time_s']:.2f}s)"
    )
    return {"answer": answer, "report": report, "collected": collected,
            "writer_prompt": model.prompts[0], "writer": model,
            "collectors_usd": collectors_usd}  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
