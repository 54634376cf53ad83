"""Budget guard throughput: estimate + reserve + commit per call, against tiktoken alone; JSON.

Cases (each over the same prompts of ~200 o200k tokens, model ``gpt-4o``):
  tiktoken_encode: ``len(enc.encode(prompt))``, the floor any exact estimate pays.
  ledger_only: ``reserve`` + ``commit`` on a shared ``CostLedger`` (no counting).
  guard_distinct_prompts: ``CostEstimator.worst_case`` + ``reserve`` + ``commit``, every prompt
      different (the token-count cache never hits): the honest per-call figure.
  guard_repeated_prompt: the same with one prompt repeated (a fan-out of one template
      over a shared system prompt hits the count cache).
  admit_distinct_prompts: the pipeline's path: ``worst_case`` + ``await ledger.admit`` (the
      waiting admission, under a cap) + ``commit``, inside one event loop. The target
      applies to this one.

Usage: python benchmarks/cost_ledger.py [--calls N] [--runs R]
Each figure is the median of R runs (wall clock, and CPU time of this process); ratios are
against tiktoken_encode from the same run. The guard cannot beat the exact count it makes:
on distinct prompts it runs at ~0.9x tiktoken's own speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import tiktoken

from langgraph_fanout import CostLedger, Price, SubAgent
from langgraph_fanout.engine.estimate import CostEstimator
from langgraph_fanout.guards.tokens import TokenCounter, ensure_offline_encodings

TARGET_CALLS_PER_S = 20_000
SENTENCE = "Summarise the quarterly report for region {i} and list three risks, briefly. "


def make_prompts(n: int, enc: tiktoken.Encoding) -> list[str]:
    prompts = []
    for i in range(n):
        text = ""
        while len(enc.encode_ordinary(text)) < 195:
            text += SENTENCE.format(i=i)
        prompts.append(text)
    return prompts


def rate(fn: Callable[[], int], runs: int) -> tuple[float, float]:
    """Median calls per wall-clock second and per CPU second of ``fn`` (returns its calls).

    CPU time is reported too because on a shared machine wall time also counts the time
    other processes held the core.
    """
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        calls = fn()
        wall.append(calls / (time.perf_counter() - start))
        cpu.append(calls / (time.process_time() - start_cpu))
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    ensure_offline_encodings()
    enc = tiktoken.get_encoding("o200k_base")
    prompts = make_prompts(args.calls, enc)
    price = Price(input_per_mtok=2.5, output_per_mtok=10.0)
    agent = SubAgent.of(len, name="bench", model="gpt-4o", price=price, max_output_tokens=256)

    def estimator(counter: TokenCounter) -> CostEstimator:
        return CostEstimator(default_max_output_tokens=256, counter=counter)

    def encode_only() -> int:
        for p in prompts:
            len(enc.encode(p))
        return len(prompts)

    def ledger_only() -> int:
        ledger = CostLedger(limit_usd=None)
        for _ in prompts:
            ledger.reserve(agent="bench", estimate_usd=0.003).commit(0.002)
        return len(prompts)

    def guard(batch: list[str]) -> Callable[[], int]:
        def run() -> int:
            counter = TokenCounter()  # fresh per run: no counts cached from an earlier run
            ledger = CostLedger(limit_usd=None)
            for p in batch:
                est = estimator(counter).worst_case(agent, p)
                ledger.reserve(agent="bench", estimate_usd=est.usd).commit(est.usd / 2)
            return len(batch)

        return run

    def admit(batch: list[str]) -> Callable[[], int]:
        async def calls() -> None:
            counter = TokenCounter()
            ledger = CostLedger(limit_usd=1e9)  # a cap, so admission checks it every call
            for p in batch:
                est = estimator(counter).worst_case(agent, p)
                reservation = await ledger.admit(agent="bench", estimate_usd=est.usd)
                reservation.commit(est.usd / 2)

        def run() -> int:
            asyncio.run(calls())
            return len(batch)

        return run

    guard(prompts[:10])()  # warm up: load the encoding once outside the timings
    load_before = os.getloadavg()[0]
    measured = {
        "tiktoken_encode": rate(encode_only, args.runs),
        "ledger_only": rate(ledger_only, args.runs),
        "guard_distinct_prompts": rate(guard(prompts), args.runs),
        "guard_repeated_prompt": rate(guard([prompts[0]] * args.calls), args.runs),
        "admit_distinct_prompts": rate(admit(prompts), args.runs),
    }
    results = {k: wall for k, (wall, _) in measured.items()}
    floor = results["tiktoken_encode"]
    tokens = statistics.mean(len(enc.encode(p)) for p in prompts[:100])
    print(
        json.dumps(
            {
                "benchmark": "cost_ledger",
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "calls_per_run": args.calls,
                "runs": args.runs,
                "prompt_tokens_mean": round(tokens, 1),
                "cpus": os.cpu_count(),
                "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "calls_per_s": {k: round(v) for k, v in results.items()},
                "calls_per_cpu_s": {k: round(cpu) for k, (_, cpu) in measured.items()},
                "ratio_to_tiktoken_encode": {k: round(v / floor, 3) for k, v in results.items()},
                "target_calls_per_s": TARGET_CALLS_PER_S,
                "meets_target_wall": results["admit_distinct_prompts"] >= TARGET_CALLS_PER_S,
                "meets_target_cpu": measured["admit_distinct_prompts"][1] >= TARGET_CALLS_PER_S,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
