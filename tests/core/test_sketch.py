"""Latency percentiles in constant memory (``LatencySketch``, a DDSketch underneath)."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable

import pytest

from langgraph_fanout.core.report import LATENCY_RELATIVE_ERROR, LatencySketch, ReportBuilder
from langgraph_fanout.core.results import Attempt, Status, SubAgentResult


def _uniform(rng: random.Random) -> float:
    return rng.uniform(0.001, 2.0)


def _lognormal(rng: random.Random) -> float:
    return rng.lognormvariate(math.log(0.8), 0.7)


def _bimodal(rng: random.Random) -> float:
    # Fast cache-like answers and slow calls: the percentiles sit on either mode.
    return rng.gauss(0.02, 0.002) if rng.random() < 0.9 else rng.gauss(8.0, 1.0)


def _heavy_tail(rng: random.Random) -> float:
    return 0.05 * rng.paretovariate(1.1)


def _zeros_and_spikes(rng: random.Random) -> float:
    return 0.0 if rng.random() < 0.7 else rng.choice([1e-6, 30.0])


DISTRIBUTIONS: dict[str, Callable[[random.Random], float]] = {
    "uniform": _uniform,
    "lognormal": _lognormal,
    "bimodal": _bimodal,
    "heavy_tail": _heavy_tail,
    "zeros_and_spikes": _zeros_and_spikes,
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("n", [7, 1_000, 50_000])
def test_percentiles_are_within_the_stated_relative_error(name: str, n: int) -> None:
    rng = random.Random(f"{name}/{n}")
    values = [max(0.0, DISTRIBUTIONS[name](rng)) for _ in range(n)]
    sketch = LatencySketch()
    for v in values:
        sketch.add(v)
    ordered = sorted(values)
    assert sketch.count == n and sketch.max == ordered[-1]
    for q in (0.5, 0.95, 0.99):
        rank = q * (n - 1)
        low, high = ordered[math.floor(rank)], ordered[math.ceil(rank)]
        got = sketch.quantile(q)
        tolerance = LATENCY_RELATIVE_ERROR + 1e-9
        assert low * (1 - tolerance) <= got <= high * (1 + tolerance), (q, low, got, high)


def test_an_empty_sketch_reads_zero_and_a_constant_reads_itself() -> None:
    assert LatencySketch().quantile(0.95) == 0.0
    sketch = LatencySketch()
    for _ in range(1000):
        sketch.add(0.25)
    assert sketch.quantile(0.5) == pytest.approx(0.25, rel=LATENCY_RELATIVE_ERROR)
    assert sketch.quantile(0.99) <= sketch.max == 0.25


def _result(i: int, seconds: float) -> SubAgentResult:
    return SubAgentResult(
        index=i,
        agent="a",
        status=Status.OK,
        output="x",
        duration_s=seconds,
        attempts=(Attempt(agent="a", number=1, error=None, wait_before_s=0.0, duration_s=seconds),),
    )


def test_a_report_of_100k_results_holds_as_much_latency_state_as_one_of_1k() -> None:
    rng = random.Random(3)
    sizes = {}
    for n in (1_000, 100_000):
        builder = ReportBuilder()
        for i in range(n):
            builder.add(_result(i, rng.lognormvariate(math.log(0.5), 0.8)))
        sizes[n] = len(pickle.dumps(builder))
        report = builder.build(wall_time_s=1.0)
        assert report.inputs == n and report.latency_p50_s > 0
    # The state is bounded by the range of latencies, not their number (an array of 100k
    # floats alone would be 800 kB).
    assert sizes[100_000] < 2 * sizes[1_000] < 40_000
