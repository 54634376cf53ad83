"""Per-call cost and memory as the number of items grows, every guard on; prints JSON.

Each size runs in a fresh process that does nothing else: a zero-latency async callable
and a minimal chat model with usage (the agents of benchmarks/overhead.py) stream N items
through the engine with every guard on (argument screening, output redaction, a budget
with a known price, the default breaker and the report). The idempotency cache is off
here: a cache holds every distinct answer by design, so its memory is its size, not the
engine's. Reported per size: CPU microseconds per call (after a warm-up) and the growth of
the process's peak RSS (VmHWM) over the run; the ratio of each size's per-call cost to the
smallest size's is the flatness figure (goal: within 1.2x).

Usage: python benchmarks/scaling.py [--sizes 1000,10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

CHILD = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[3])
from contextlib import aclosing
import overhead
from overhead import peak_rss_mb as hwm_mb

async def stream(dispatcher, n):
    ok = 0
    items = ({"n": i} for i in range(n))
    async with aclosing(dispatcher.stream(overhead.TEXT, items)) as results:
        async for r in results:
            ok += r.ok
    return ok

n, kind = int(sys.argv[1]), sys.argv[2]
agent = overhead.TinyChat() if kind == "chat_model" else overhead._noop
make = lambda: overhead._guarded_dispatcher(100, agent, frozenset({"cache"}))
asyncio.run(stream(make(), 2000))  # warm up: encodings, imports, caches of our own
before = hwm_mb()
cpu = time.process_time()
ok = asyncio.run(stream(make(), n))
cpu = time.process_time() - cpu
growth = hwm_mb() - before
print(json.dumps({"ok": ok, "cpu_us_per_call": cpu / n * 1e6, "peak_rss_growth_mb": growth}))
"""


def one(n: int, kind: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), kind, str(HERE)],
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, Any] = json.loads(out.stdout)
    assert data["ok"] == n, data
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    report: dict[str, Any] = {"benchmark": "scaling", "cache": "off (see the docstring)"}
    for kind in ("callable", "chat_model"):
        rows = {n: one(n, kind) for n in sizes}
        first = rows[sizes[0]]["cpu_us_per_call"]
        report[kind] = {
            str(n): {
                "cpu_us_per_call": round(r["cpu_us_per_call"], 1),
                "vs_smallest": round(r["cpu_us_per_call"] / first, 2),
                "peak_rss_growth_mb": round(r["peak_rss_growth_mb"], 1),
            }
            for n, r in rows.items()
        }
    report["goals"] = {"vs_smallest<=": 1.2, "peak_rss_growth_mb<": 100}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
