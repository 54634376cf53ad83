"""What configures a run: its mode, its stop conditions, its guards, its limits.

``RunSpec`` is built once per ``Dispatcher`` (and per graph) and validated then; every
``RunController`` opened from it follows the same rules. ``warn_nested_limits`` says,
field by field, which limits of a nested run only a top-level run applies.

Example:
    >>> spec = RunSpec(limits=DispatchResourceLimits(), guards=Guards().pipeline(SubAgent.of))
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import StrEnum

from langchain_core.runnables import RunnableConfig

from langgraph_fanout.core.stopping import StopCondition
from langgraph_fanout.engine.call import PipelineGuards
from langgraph_fanout.errors import ConfigurationError, NestedLimitsWarning
from langgraph_fanout.guards.ledger import CostLedger
from langgraph_fanout.guards.limits import (
    DispatchResourceLimits,
    SharedRun,
    reconcile_budget,
    run_wide_fields,
)
from langgraph_fanout.guards.ratelimit import RateLimiter


class DispatchMode(StrEnum):
    """What a failed input means for the dispatch."""

    PARTIAL = "partial"
    """Default: failures are results like any other."""
    ALL_OR_NOTHING = "all_or_nothing"
    """The first failure cancels the rest and raises ``DispatchFailed`` with every result."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSpec:
    """How the runs of one ``Dispatcher`` (or one graph) are configured.

    Built once, validated once; every run opened from it follows the same rules.

    Attributes:
        limits: the limits (run-wide fields apply at top level only; see ``limits``).
        mode: partial or all-or-nothing.
        stop: the user's stop condition and the aggregate's early decision, combined.
        guards: what configures the call pipeline.
        config: the ``RunnableConfig`` every call gets unless a node passes its own.
        ledger / rate_limiter / shared: a budget, a limiter or a whole run to share.
    """

    limits: DispatchResourceLimits
    mode: DispatchMode = DispatchMode.PARTIAL
    stop: StopCondition | None = None
    guards: PipelineGuards
    config: RunnableConfig | None = None
    ledger: CostLedger | None = None
    rate_limiter: RateLimiter | None = None
    shared: SharedRun | None = None

    def __post_init__(self) -> None:
        shared, ledger = self.shared, self.ledger
        if shared is not None and ledger is not None and ledger is not shared.ledger:
            raise ConfigurationError("run= already has a ledger: pass run= or ledger=, not both")
        budget = ledger if shared is None else shared.ledger
        object.__setattr__(self, "limits", reconcile_budget(self.limits, budget))


def warn_nested_limits(limits: DispatchResourceLimits, *, stacklevel: int = 2) -> None:
    """Warn, naming each field, when a nested run sets a limit that only a top-level run
    applies (the budget, agent count, depth, rates and estimate settings)."""
    defaults = DispatchResourceLimits()
    own = [name for name in run_wide_fields() if getattr(limits, name) != getattr(defaults, name)]
    if own:
        warnings.warn(
            f"a nested dispatch draws from the enclosing run; its own {', '.join(own)} "
            "is not applied (its concurrency window, timeouts, deadline, failure rate and "
            "min_success_count are)",
            NestedLimitsWarning,
            stacklevel=stacklevel + 1,
        )
