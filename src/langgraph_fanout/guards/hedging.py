"""Hedged calls: when a call runs long, start a duplicate and keep whichever finishes first.

Tail latency of LLM APIs is heavy: a few calls take many times the median. A hedge
(Dean & Barroso, "The Tail at Scale") starts a second copy of a call that has run longer
than a threshold; the first copy to succeed wins and the other is cancelled. Each copy
reserves its own budget, and hedges are capped to a share of the calls so the extra cost
stays bounded.

Example:
    >>> policy = HedgePolicy(percentile=0.95, max_extra_ratio=0.05)
    >>> # dispatch_agents(..., hedge=policy)
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from langgraph_fanout.core.checks import MAX_SECONDS, check_number
from langgraph_fanout.errors import ConfigurationError


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgePolicy:
    """When to hedge a call.

    Args:
        after_s: hedge a call still running after this many seconds; ``None`` to use the
            observed latency ``percentile`` instead.
        percentile: with ``after_s=None``, hedge after this quantile of the latencies
            observed so far in the dispatch (0.95: the slowest 5% get a hedge).
        min_ratio_to_median: with ``after_s=None``, never hedge before this multiple of
            the median latency. A call only a little slower than most finishes before a
            hedge would: hedging it spends the budget of extra calls on the ordinary tail
            and leaves none for the stragglers that hedging is for.
        min_samples: latencies to observe before the adaptive threshold is used.
        max_extra_ratio: at most this share of extra calls (hedges / calls started); the
            first hedge is allowed once ``1 / max_extra_ratio`` calls have started.
        window: how many recent latencies the adaptive threshold looks at.

    Raises:
        ConfigurationError: a value is out of range.
    """

    after_s: float | None = None
    percentile: float = 0.95
    min_ratio_to_median: float = 2.0
    min_samples: int = 20
    max_extra_ratio: float = 0.05
    window: int = 1000

    def __post_init__(self) -> None:
        check_number(
            "HedgePolicy.after_s", self.after_s, above=0, at_most=MAX_SECONDS, optional=True
        )
        check_number("HedgePolicy.percentile", self.percentile, above=0, below=1)
        check_number(
            "HedgePolicy.min_ratio_to_median", self.min_ratio_to_median, at_least=1, below=1e6
        )
        check_number("HedgePolicy.max_extra_ratio", self.max_extra_ratio, above=0, at_most=1)
        for name in ("min_samples", "window"):
            check_number(
                f"HedgePolicy.{name}",
                getattr(self, name),
                at_least=1,
                at_most=10**7,
                integer=True,
            )
        if self.window < self.min_samples:
            raise ConfigurationError(
                f"need 1 <= min_samples <= window, got {self.min_samples} and {self.window}"
            )


class HedgeTracker:
    """The live state of hedging in one dispatch: latencies seen, calls and hedges counted."""

    def __init__(self, policy: HedgePolicy) -> None:
        self.policy = policy
        self._latencies: deque[float] = deque(maxlen=policy.window)
        self._lock = threading.Lock()
        self._threshold: float | None = None
        self._unseen = 0  # latencies observed since the threshold was computed
        self.calls = 0
        self.launched = 0
        self.won = 0

    def threshold_s(self) -> float | None:
        """Seconds after which a call should be hedged now, or ``None`` (not yet known)."""
        policy = self.policy
        if policy.after_s is not None:
            return policy.after_s
        with self._lock:
            seen = len(self._latencies)
            if seen < policy.min_samples:
                return None
            # Recomputed after every 5% of the window is new, not on every call: sorting
            # the window per call would cost more than the rest of the call.
            if self._threshold is not None and self._unseen < max(1, seen // 20):
                return self._threshold
            ordered = sorted(self._latencies)
            self._unseen = 0
        rank = max(1, math.ceil(policy.percentile * len(ordered)))
        median = ordered[(len(ordered) - 1) // 2]
        threshold = max(ordered[rank - 1], policy.min_ratio_to_median * median)
        self._threshold = threshold
        return threshold

    def started(self) -> None:
        with self._lock:
            self.calls += 1

    def observe(self, latency_s: float) -> None:
        with self._lock:
            self._latencies.append(latency_s)
            self._unseen += 1

    def try_launch(self) -> bool:
        """Take a hedge if the cap allows one (hedges <= max_extra_ratio * calls)."""
        with self._lock:
            if self.launched + 1 > self.policy.max_extra_ratio * self.calls:
                return False
            self.launched += 1
            return True

    def record_win(self) -> None:
        with self._lock:
            self.won += 1

    def __repr__(self) -> str:
        return (
            f"HedgeTracker(threshold_s={self.threshold_s()}, calls={self.calls}, "
            f"launched={self.launched}, won={self.won})"
        )
