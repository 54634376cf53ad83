"""Per-call CPU instructions (valgrind callgrind) of the engine and the graphs; prints JSON.

Wall time on a shared 2-core machine moves by 10-20% between runs; instruction counts do
not (the same binary, inputs and environment give the same count whatever else runs).
Each case runs twice in a fresh process under callgrind, with N and 3N calls after a
warm-up; the difference divided by 2N is the cost of one call, start-up and imports
excluded. Cases (at most 100 in flight; the cases of benchmarks/overhead.py):
  floor / bare / guarded:  a zero-latency async callable under ``gather`` + ``Semaphore``,
                  the bare engine, and the engine with every guard on;
  guarded_without_{cache,redaction,budget}: every guard on but that one (its cost is
                  the difference);
  chat_floor / chat_bare / chat_guarded: the same with a minimal chat model that
                  reports usage (the floor is the model's own ``ainvoke``);
  plain_send / fan_out_graph: a minimal LangGraph ``Send`` fan-out and
                  ``create_fan_out_graph`` (benchmarks/graph_overhead.py).

Usage: python benchmarks/instructions.py [--calls N] [--graph-items M]
Needs ``valgrind`` (Debian: apt-get install valgrind). Ratios: engine / floor and
fan_out_graph / plain_send, from the same run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

CHILD = """
import asyncio, sys
sys.path.insert(0, {here!r})
n, case = int(sys.argv[1]), sys.argv[2]
if case not in ("plain_send", "fan_out_graph"):
    import functools
    import overhead
    agent = overhead.TinyChat() if case.startswith("chat_") else overhead._noop
    name = case.removeprefix("chat_")
    if name.startswith("guarded_without_"):
        without = frozenset([name.removeprefix("guarded_without_")])
        fn = functools.partial(overhead.guarded, without=without)
    else:
        fn = {{"floor": overhead.floor, "bare": overhead.bare, "guarded": overhead.guarded}}[name]
    asyncio.run(fn(200, 100, agent))
    asyncio.run(fn(n, 100, agent))
else:
    import graph_overhead as g
    run = g.case_plain_send(n, False) if case == "plain_send" else g.case_fan_out_graph(n, False)
    asyncio.run(run(0))
    asyncio.run(run(1))
"""


def instructions(case: str, n: int) -> int:
    """Instructions of a fresh process that warms up, then makes ``n`` calls of ``case``."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            CHILD.format(here=str(HERE)),
            str(n),
            case,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:  # pragma: no cover - valgrind changed its output
        raise RuntimeError(done.stderr[-2000:])
    return int(found.group(1))


def per_call(case: str, n: int) -> float:
    return (instructions(case, 3 * n) - instructions(case, n)) / (2 * n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--graph-items", type=int, default=200)
    parser.add_argument(
        "--cases", default=None, help="comma-separated subset (each case takes a minute or two)"
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print(json.dumps({"error": "valgrind not found (apt-get install valgrind)"}))
        sys.exit(1)
    cases = [
        "floor",
        "bare",
        "guarded",
        "guarded_without_cache",
        "guarded_without_redaction",
        "guarded_without_budget",
        "chat_floor",
        "chat_bare",
        "chat_guarded",
    ]
    cases += ["plain_send", "fan_out_graph"]
    if args.cases:
        cases = [c for c in cases if c in args.cases.split(",")]
    graphs = {"plain_send", "fan_out_graph"}
    counts = {c: per_call(c, args.graph_items if c in graphs else args.calls) for c in cases}

    def ratio(a: str, b: str) -> float | None:
        return round(counts[a] / counts[b], 3) if a in counts and b in counts else None

    print(
        json.dumps(
            {
                "benchmark": "instructions",
                "instructions_per_call": {k: round(v) for k, v in counts.items()},
                "bare_vs_floor": ratio("bare", "floor"),
                "guarded_vs_floor": ratio("guarded", "floor"),
                "guard_costs": {
                    g: round(counts["guarded"] - counts[f"guarded_without_{g}"])
                    for g in ("cache", "redaction", "budget")
                    if "guarded" in counts and f"guarded_without_{g}" in counts
                },
                "chat_guarded_vs_chat_floor": ratio("chat_guarded", "chat_floor"),
                "fan_out_graph_vs_plain_send": ratio("fan_out_graph", "plain_send"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
