"""Pipeline with parallel branches: validate, three enrichers at once, then aggregate.

Shows `create_pipeline_graph([validate, parallel(geo, company, news, combine=...),
aggregate])` on a company record, every stage a simulated chat model. The `company`
enricher's provider fails (a scripted HTTP 500, retries off): its branch becomes a typed
`AgentError` in the results, its siblings are not cancelled, and the pipeline finishes
with the other two enrichments (a branch point fails only if every branch fails).

Real model: in `stage()`, replace `SimulatedChatModel(...)` with
`ChatOpenAI(model="gpt-4o-mini", max_retries=0)` (our policy owns retries) and drop the
scripted `failures=`.

Run: python examples/09_pipeline_branches.py
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from langgraph_fanout import (
    BreakerRegistry,
    ErrorRecoveryPolicy,
    Price,
    SubAgent,
    SubAgentResult,
    create_pipeline_graph,
    parallel,
    result_from_record,
)
from langgraph_fanout.testing import SimulatedChatModel, server_error

PRICES = {"simulated-small": Price(input_per_mtok=0.15, output_per_mtok=0.60)}
NO_RETRIES = ErrorRecoveryPolicy(max_retries=0)  # the scripted 500 is final


def stage(name: str, answer: Any, **failures: Any) -> SubAgent:
    """A pipeline stage: a simulated chat model whose answer is `answer(prompt)`."""
    model = SimulatedChatModel(answer=lambda p, _rng: answer(p), latency_s=0.03, **failures)
    return SubAgent.of(model, name=name)


def merge(results: Sequence[SubAgentResult]) -> dict[str, str]:
    """The branches that succeeded, as text; the failed one stays in the pipeline's results."""
    return {r.agent: r.output.text for r in results if r.ok}


async def main() -> dict[str, Any]:
    validate = stage("validate", lambda raw: json.dumps({"name": raw.strip().title()}))
    geo = stage("geo", lambda record: "Berlin, DE")
    company = stage("company", lambda record: "450 employees", failures=[server_error()])
    news = stage("news", lambda record: "2 press releases this month")
    aggregate = stage("aggregate", lambda found: f"Profile from {', '.join(json.loads(found))}")
    graph = create_pipeline_graph(
        [validate, parallel(geo, company, news, combine=merge), aggregate],
        policy=NO_RETRIES, prices=PRICES, breakers=BreakerRegistry(),
    ).compile()  # fmt: skip

    out = await graph.ainvoke({"input": "  acme gmbh "})

    results = [result_from_record(r) for r in out["results"]]
    print(f"Pipeline {out['status']}: {out['output'].text!r}")
    for record, result in zip(out["results"], results, strict=True):
        where = f"{record['stage']}" + ("" if record["branch"] is None else f".{record['branch']}")
        error = "" if result.ok else f" {type(result.error).__name__}: {result.error}"
        print(f"  stage {where:<4}{result.agent:<10}{result.status.value}{error.split(' - ')[0]}")
    report = out["report"]
    print(
        f"{report['calls_started']} calls, {report['succeeded']} ok, failed: "
        f"{report['failures_by_kind']}; ${report['spent_usd']:.6f} in {report['wall_time_s']:.2f}s"
    )
    return {"status": out["status"], "output": out["output"].text, "records": out["results"],
            "results": results, "report": report, "company": company.target}  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
