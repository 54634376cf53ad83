"""The benchmarks still run: each script's cases on tiny sizes (their figures are not
checked here; tests never assert timings)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


CASES = [(c, a) for a in ("callable", "chat_model") for c in ("floor", "bare", "guarded", "abatch")]


@pytest.mark.parametrize(("case", "agent"), [*CASES, ("send", "callable")])
def test_overhead_cases_run(case: str, agent: str) -> None:
    import overhead

    target = overhead.TinyChat() if agent == "chat_model" else overhead._noop
    asyncio.run(getattr(overhead, case)(20, 5, target))


def test_guarded_without_each_guard_runs() -> None:
    import overhead

    for guard in ("cache", "redaction", "budget"):
        asyncio.run(overhead.guarded(10, 5, overhead._noop, frozenset({guard})))


def test_hedging_and_budget_use_cases_run() -> None:
    import budget_use
    import hedging

    row = hedging._run(200, 0, 0.05, hedging.HedgePolicy())
    assert row["extra_calls"] <= 0.05
    used = budget_use.run(10, waiting=True, seed=0)
    assert used["share_used_at_first_refusal"] > 0.9
