"""How much of a budget can be used: waiting admission against refusing at once; JSON.

Every call reserves its worst case before it starts. Real calls cost far less (here a tenth
of the worst case, with seeded noise): a ledger that refuses a call as soon as the
reservations *in flight* leave no room turns work away while most of the budget is unspent.
``CostLedger.admit`` waits for them to settle instead and refuses only what can never fit.

Both runs go through ``dispatch_agents`` with the same model, inputs and cap; the baseline
is the same ledger whose admission refuses at once (``reserve``), measured in the same run.
Time is virtual (the test suite's event loop that jumps to its next timer).

Figure: the share of the cap really spent when the first call is refused (the refusal's
own ``spent_usd``: spend only grows, so the smallest one is the first), at concurrency 1,
10 and 50; goal >= 0.9 at every concurrency. Seeded figures are medians over N seeds.

Usage: python benchmarks/budget_use.py [--seeds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import fakeclock
from langgraph_fanout import (
    BudgetExceeded,
    CostLedger,
    DispatchResourceLimits,
    Price,
    dispatch_agents,
)
from langgraph_fanout.testing import SimulatedChatModel, uniform_latency

PRICE = Price(input_per_mtok=0.0, output_per_mtok=1_000.0)  # $0.001 per output token
MAX_TOKENS = 100  # the worst case: $0.10 a call
CAP = 2.0  # 20 worst cases; the real cost of ~200 calls
CONCURRENCY = (1, 10, 50)
GOAL = 0.9


class RefuseAtOnce(CostLedger):
    """The baseline: a call that does not fit now is refused, whatever is in flight."""

    async def admit(
        self,
        *,
        agent: str,
        estimate_usd: float,
        unknown_cost: bool = False,
        inside: Sequence[Any] = (),
        timeout_s: float | None = None,
    ) -> Any:
        return self.reserve(agent=agent, estimate_usd=estimate_usd, unknown_cost=unknown_cost)


def run(concurrency: int, *, waiting: bool, seed: int) -> dict[str, float]:
    # Real output 5-15 tokens (a tenth of the worst case on average), latency 0.1-0.5 s,
    # both drawn from the model's per-call generator of this seed.
    model = SimulatedChatModel(
        model_name="bench-priced",
        max_tokens=MAX_TOKENS,
        answer=lambda _, rng: "x" * 4 * rng.randint(4, 14),  # + the reply's own tokens
        latency=uniform_latency(0.1, 0.5),
        seed=seed,
    )
    ledger = CostLedger(limit_usd=CAP) if waiting else RefuseAtOnce(limit_usd=CAP)

    async def dispatch() -> Any:
        return await dispatch_agents(
            "Question {n}",
            [{"n": i} for i in range(400)],  # more than the cap can pay for
            agent=model,
            prices={"bench-priced": PRICE},
            ledger=ledger,
            limits=DispatchResourceLimits(max_concurrent=concurrency),
        )

    result = fakeclock.run(dispatch())
    refusals = [r.error for r in result if isinstance(r.error, BudgetExceeded)]
    first = min(e.spent_usd for e in refusals) if refusals else result.report.total_spent_usd
    return {
        "share_used_at_first_refusal": first / CAP,
        "share_used_at_end": result.report.total_spent_usd / CAP,
        "succeeded": result.report.succeeded,
        "budget_wait_s": result.report.budget_wait_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "budget_use",
        "seeds": args.seeds,
        "cap_usd": CAP,
        "worst_case_over_real": 10,
        "goal_share_at_first_refusal": GOAL,
        "concurrency": {},
    }
    for concurrency in CONCURRENCY:
        waits = [run(concurrency, waiting=True, seed=s) for s in range(args.seeds)]
        at_once = [run(concurrency, waiting=False, seed=s) for s in range(args.seeds)]

        def median(runs: list[dict[str, float]], key: str) -> float:
            return round(statistics.median(r[key] for r in runs), 4)

        report["concurrency"][str(concurrency)] = {
            "waiting": {k: median(waits, k) for k in waits[0]},
            "refuse_at_once": {k: median(at_once, k) for k in at_once[0]},
            "waiting_min_share_at_first_refusal": round(
                min(r["share_used_at_first_refusal"] for r in waits), 4
            ),
        }
    report["meets_goal"] = all(
        c["waiting_min_share_at_first_refusal"] >= GOAL for c in report["concurrency"].values()
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
