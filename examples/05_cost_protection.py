"""Cost protection: a fan-out that would cost $10 is stopped at its $0.05 budget.

Shows `DispatchResourceLimits(max_total_cost_usd=0.05)` on 1000 calls of $0.01 each. Every
call reserves its worst case (prompt tokens + `max_tokens` output, priced) before it starts
and settles the real cost after, so the budget holds with 10 calls in flight: 5 calls run,
995 are refused with `BudgetExceeded`, and the report says what the refused ones would
have cost. Offline: the simulated model is priced so that a call costs exactly $0.01.

Real model: replace `SimulatedChatModel(...)` with
`ChatOpenAI(model="gpt-4o-mini", max_tokens=100, max_retries=0)` (its price comes from the
genai-prices table, so drop `prices=`; the numbers then follow the real price).

Run: python examples/05_cost_protection.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph_fanout import BudgetExceeded, DispatchResourceLimits, Price, dispatch_agents
from langgraph_fanout.testing import SimulatedChatModel

BUDGET_USD = 0.05
# $100 per million output tokens and 100 output tokens per call: $0.01 a call, and the
# worst case the guard reserves (all 100 max_tokens used) equals the real cost.
PRICES = {"simulated-cent": Price(input_per_mtok=0.0, output_per_mtok=100.0)}


async def main() -> dict[str, Any]:
    model = SimulatedChatModel(
        model_name="simulated-cent", max_tokens=100, usage_override=(20, 100), latency_s=0.02
    )
    result = await dispatch_agents(
        "Summarize ticket #{n}",
        [{"n": n} for n in range(1000)],
        agent=model,
        prices=PRICES,
        limits=DispatchResourceLimits(max_total_cost_usd=BUDGET_USD, max_concurrent=10),
    )
    report = result.report
    would_have_cost = report.total_spent_usd + report.refused_usd
    refused = sum(isinstance(r.error, BudgetExceeded) for r in result)
    calls = len(result) - refused  # a refused input never reached the model
    print(f"Protected! Would have cost ${would_have_cost:.2f}, capped at ${BUDGET_USD:.2f}")
    print(
        f"Spent ${report.total_spent_usd:.4f} on {calls} calls; {refused} calls refused "
        f"before they started; {report.summary()}"
    )
    return {
        "report": report,
        "would_have_cost_usd": would_have_cost,
        "spent_usd": report.total_spent_usd,
        "model_calls": calls,
        "refused": refused,
        "model": model,
    }


if __name__ == "__main__":
    asyncio.run(main())
