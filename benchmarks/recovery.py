"""Recovery under real provider behaviour: the default policy against retries only; JSON.

Both runs of each case go through ``dispatch_agents`` with the same agent and inputs; the
baseline is the same policy with the breaker off (``breaker=None``), measured in the same
run. Time is virtual (the test suite's event loop that jumps to its next timer), so a 20 s
outage costs milliseconds and the wall times below are the run's own clock, repeatable.

Cases:
  sweep:  2,000 inputs at concurrency 20, 50 ms per call; every k-th request answers 429
          with ``retry-after: 1`` (0.5%, 1%, 2%, 5% of requests), which pauses every call to
          the endpoint for that second. Goal: 100% success, every input within the
          policy's most attempts (1 + max_retries + backpressure_retries).
  outage: 6,000 inputs at concurrency 20, 200 ms per call (about 60 s of work); between
          20 s and 40 s every request fails at once with a connection reset. Goal: at most
          10% of the baseline's requests to the dead agent, within 1.2x its wall time.

Usage: python benchmarks/recovery.py [--seeds N]
Figures that depend on the jitter's seed are medians over N seeds (min and max beside).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import fakeclock
from langgraph_fanout import (
    BreakerRegistry,
    DispatchResourceLimits,
    ErrorRecoveryPolicy,
    dispatch_agents,
)
from langgraph_fanout.testing import rate_limit_error

RATES = (0.005, 0.01, 0.02, 0.05)


def _policy(breaker: bool) -> ErrorRecoveryPolicy:
    return ErrorRecoveryPolicy() if breaker else ErrorRecoveryPolicy(breaker=None)


def _run(agent: Any, n: int, *, breaker: bool, seed: int) -> tuple[Any, float]:
    """``n`` inputs through ``dispatch_agents`` at concurrency 20 on virtual time: the
    result and the wall time of the run's own clock."""

    async def run() -> tuple[Any, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await dispatch_agents(
            None,
            range(n),
            agent=agent,
            limits=DispatchResourceLimits(max_concurrent=20),
            policy=_policy(breaker),
            breakers=BreakerRegistry(clock=loop.time),
            rng=random.Random(seed),
        )
        return result, loop.time() - started

    return fakeclock.run(run())


def sweep(rate: float, *, breaker: bool, seed: int) -> dict[str, Any]:
    period = round(1 / rate)
    requests = 0

    async def provider(item: int) -> str:
        nonlocal requests
        requests += 1
        n = requests
        await asyncio.sleep(0.05)
        if n % period == 0:
            raise rate_limit_error(retry_after_s=1.0)
        return "ok"

    result, wall = _run(provider, 2000, breaker=breaker, seed=seed)
    return {
        "success_rate": result.report.success_rate,
        "wall_s": wall,
        "requests": requests,
        "most_attempts_of_an_input": max(len(r.attempts) for r in result),
        "breaker_openings": result.report.breaker_openings,
    }


def outage(*, breaker: bool, seed: int) -> dict[str, Any]:
    to_dead = 0

    async def provider(item: int) -> str:
        nonlocal to_dead
        now = asyncio.get_running_loop().time()
        if 20.0 <= now < 40.0:
            to_dead += 1
            await asyncio.sleep(0.01)
            raise ConnectionResetError("connection reset by peer")
        await asyncio.sleep(0.2)
        return "ok"

    result, wall = _run(provider, 6000, breaker=breaker, seed=seed)
    return {
        "success_rate": result.report.success_rate,
        "wall_s": wall,
        "requests_to_dead_agent": to_dead,
        "breaker_openings": result.report.breaker_openings,
    }


def _summary(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [r[key] for r in runs]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    seeds = range(args.seeds)
    report: dict[str, Any] = {"benchmark": "recovery", "seeds": args.seeds, "sweep": {}}
    for rate in RATES:
        default = [sweep(rate, breaker=True, seed=s) for s in seeds]
        baseline = [sweep(rate, breaker=False, seed=s) for s in seeds]
        report["sweep"][f"{rate:.1%}"] = {
            "goals": {"default_success_rate.min": 1.0},
            "default_success_rate": _summary(default, "success_rate"),
            "retries_only_success_rate": _summary(baseline, "success_rate"),
            "default_breaker_openings": _summary(default, "breaker_openings"),
            "default_requests": _summary(default, "requests"),
            "default_most_attempts_of_an_input": _summary(default, "most_attempts_of_an_input"),
            "default_wall_s": _summary(default, "wall_s"),
            "default_vs_retries_only_wall": statistics.median(
                d["wall_s"] / b["wall_s"] for d, b in zip(default, baseline, strict=True)
            ),
        }
    default = [outage(breaker=True, seed=s) for s in seeds]
    baseline = [outage(breaker=False, seed=s) for s in seeds]
    share = [
        d["requests_to_dead_agent"] / b["requests_to_dead_agent"]
        for d, b in zip(default, baseline, strict=True)
    ]
    wall = [d["wall_s"] / b["wall_s"] for d, b in zip(default, baseline, strict=True)]
    report["outage"] = {
        "default": {k: _summary(default, k) for k in default[0]},
        "retries_only": {k: _summary(baseline, k) for k in baseline[0]},
        "requests_to_dead_agent_share": statistics.median(share),
        "wall_ratio": statistics.median(wall),
        "goals": {"requests_to_dead_agent_share<=": 0.10, "wall_ratio<=": 1.2},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
