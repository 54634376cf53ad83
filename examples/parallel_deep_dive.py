"""The deep dive: when, how and why to run sub-agents in parallel, measured in this run.

Sections as in the seed's walk-through, each a live dispatch on simulated models:
WHEN (batch processing, multi-model consensus, parallel search, when not to), HOW
(semaphore control with the measured batching, quota protection, idempotency cache,
screening and rate limits) and WHY (speedup against a sequential run of the same calls,
ensemble accuracy, fail-safe). Every number printed is measured in the run.
`langgraph-fanout demo` and `make demo` run the same.

Real model: the deep dive is a tour of the guards on simulated models; to try a real one,
run `langgraph-fanout run --model openai:gpt-4o-mini ...` or any numbered example with
`ChatOpenAI(model="gpt-4o-mini", max_retries=0)` in place of `SimulatedChatModel(...)`.

Run: python examples/parallel_deep_dive.py [--latency 0.04] [--json]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from langgraph_fanout.cli import main as fanout


def main(argv: Sequence[str] | None = None) -> int:
    return fanout(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
