"""Simulated latency distributions: each draws seconds from the per-call RNG it is given.

Example:
    >>> SimulatedChatModel(latency=lognormal_latency(0.8))  # API-like latency around 0.8 s
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from langgraph_fanout.errors import ConfigurationError

LatencyModel: TypeAlias = Callable[[random.Random], float]
"""A latency distribution: draws seconds from the per-call RNG it is given."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _UniformLatency:
    low: float
    high: float

    def __call__(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True, slots=True, kw_only=True)
class _LognormalLatency:
    median: float
    sigma: float

    def __call__(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median), self.sigma)


@dataclass(frozen=True, slots=True, kw_only=True)
class _StragglerLatency:
    base: float
    slow: float
    p_slow: float

    def __call__(self, rng: random.Random) -> float:
        return self.slow if rng.random() < self.p_slow else self.base


def uniform_latency(low: float, high: float) -> LatencyModel:
    """Latency drawn uniformly from ``[low, high]`` seconds.

    Example:
        >>> SimulatedChatModel(latency=uniform_latency(0.1, 0.5))
    """
    if not 0 <= low <= high:
        raise ConfigurationError(f"uniform_latency needs 0 <= low <= high, got {low}, {high}")
    return _UniformLatency(low=low, high=high)


def lognormal_latency(median: float, sigma: float = 0.5) -> LatencyModel:
    """Log-normal latency around ``median`` seconds (the usual shape of API latency).

    Args:
        median: the median latency in seconds (> 0).
        sigma: the spread of ``log(latency)``; 0 means always ``median``.
    """
    if median <= 0 or sigma < 0:
        raise ConfigurationError(f"lognormal_latency needs median > 0, sigma >= 0; got {median}")
    return _LognormalLatency(median=median, sigma=sigma)


def heavy_tail_latency(base: float, slow: float, p_slow: float) -> LatencyModel:
    """Mostly ``base`` seconds, but a straggler taking ``slow`` seconds with probability ``p_slow``.

    Example:
        >>> heavy_tail_latency(0.2, 5.0, p_slow=0.05)  # 1 call in 20 is a straggler
    """
    if base < 0 or slow < 0 or not 0 <= p_slow <= 1:
        raise ConfigurationError("heavy_tail_latency needs base, slow >= 0 and 0 <= p_slow <= 1")
    return _StragglerLatency(base=base, slow=slow, p_slow=p_slow)
