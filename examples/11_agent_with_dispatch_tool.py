"""An agent you already have, given a dispatch tool: fan-outs under one budget per run.

Shows `create_dispatch_tool({"classifier": ...}, limits=...)` in `langchain.agents.create_agent`.
The agent's model is scripted: it calls the tool on two products, calls it again on two
more, then answers. The $0.012 budget belongs to the tool's run: the first call spends
part of it, the second is refused before any sub-agent starts (what is left cannot cover
one call's worst case), and the refusal is a tool message the model reads and answers
from, not an exception that ends the run.

Real model: replace the two `SimulatedChatModel(...)` lines: the agent's with
`ChatOpenAI(model="gpt-4o", max_retries=0)` (its turns are then its own, not scripted) and the
sub-agents' with `ChatOpenAI(model="gpt-4o-mini", max_tokens=50, max_retries=0)`; drop `prices=`.

Run: python examples/11_agent_with_dispatch_tool.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage

from langgraph_fanout import DispatchResourceLimits, Price, create_dispatch_tool
from langgraph_fanout.testing import SimulatedChatModel

# Made-up prices; each sub-agent call reports 30 + 40 tokens: $0.0043 a call.
BUDGET_USD = 0.012
PRICES = {"simulated-small": Price(input_per_mtok=10.0, output_per_mtok=100.0)}
CATEGORIES = {"shoes": "apparel", "laptop": "electronics", "lamp": "furniture", "desk": "furniture"}
BATCHES = [["shoes", "laptop"], ["lamp", "desk"]]
FINAL = "Shoes: apparel, laptop: electronics. Lamp and desk are unclassified: budget spent."


def dispatch(n: int, items: list[str]) -> AIMessage:
    """One scripted agent turn: call the tool on `items`."""
    args = {"instruction": "Classify as apparel, electronics or furniture: {item}", "items": items}
    return AIMessage("", tool_calls=[{"name": "dispatch_agents", "args": args, "id": f"call-{n}"}])


async def main() -> dict[str, Any]:
    worker = SimulatedChatModel(answer=lambda prompt, _rng: CATEGORIES[prompt.split(": ")[-1]],
                                max_tokens=50, usage_override=(30, 40), latency_s=0.02)  # fmt: skip
    tool = create_dispatch_tool(
        {"classifier": worker},
        limits=DispatchResourceLimits(max_total_cost_usd=BUDGET_USD),
        prices=PRICES,
    )
    model = SimulatedChatModel(responses=[*(dispatch(n, b) for n, b in enumerate(BATCHES)), FINAL])
    agent = create_agent(model, tools=[tool])

    state = await agent.ainvoke({"messages": [("user", "Classify my four products.")]})

    tool_messages = [m.content for m in state["messages"] if isinstance(m, ToolMessage)]
    final = state["messages"][-1].content
    for n, content in enumerate(tool_messages, start=1):
        print(f"Tool call {n}: {content}")
    print(f"Agent: {final}")
    print(
        f"Sub-agent calls: {worker.calls}; spent ${tool.ledger.spent_usd:.4f} of ${BUDGET_USD:.4f}"
    )
    return {"tool_messages": tool_messages, "final": final, "spent_usd": tool.ledger.spent_usd,
            "worker_calls": worker.calls, "state": state}  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
