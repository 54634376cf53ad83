"""Parallel sub-agent dispatch, delegation and aggregation for LangChain and LangGraph.

Start with ``dispatch_agents`` (fan-out under limits), ``vote`` (ensembles) and the
``create_*`` factories; every call goes through one pipeline with the budget, recovery,
cache, rate limits and screening.

This module is the one public face: everything else in the package is private and may
move (``langgraph_fanout.testing`` holds the simulators, and ``langgraph_fanout.cli`` the
console script). Names re-exported here say so in their ``__module__``, as httpx's do, so
reprs, docs and pickles name ``langgraph_fanout.X`` whatever module defines ``X``.
"""

import inspect as _inspect
import types as _types
import typing as _typing

from langgraph_fanout.aggregate.aggregators import (
    aggregator_from,
    best_result,
    collect_all,
    first_success,
    mean,
    median,
    rank_by_metric,
)
from langgraph_fanout.aggregate.voting import Vote, Votes, majority_vote
from langgraph_fanout.core.prompts import PromptTemplate
from langgraph_fanout.core.report import DispatchReport
from langgraph_fanout.core.results import Attempt, Status, SubAgentResult
from langgraph_fanout.core.stopping import (
    DispatchProgress,
    StopCondition,
    stop_after_failures,
    stop_after_successes,
    stop_on_first_failure,
    stop_when,
)
from langgraph_fanout.delegation.client import A2AClient, delegate
from langgraph_fanout.delegation.requests import AgentDelegationRequest, DelegationResult
from langgraph_fanout.engine.agents import SubAgent
from langgraph_fanout.engine.call import Task
from langgraph_fanout.engine.dispatch import (
    Dispatcher,
    DispatchResult,
    dispatch_agents,
    dispatch_agents_sync,
)
from langgraph_fanout.engine.ensemble import vote, vote_sync
from langgraph_fanout.engine.options import GuardOptions, Guards
from langgraph_fanout.engine.plan import DispatchPlan, plan_dispatch
from langgraph_fanout.engine.registry import AgentRegistry
from langgraph_fanout.engine.spec import DispatchMode
from langgraph_fanout.errors import (
    AgentError,
    AgentLimitExceeded,
    BudgetExceeded,
    CacheBackendWarning,
    CacheKeyError,
    CallCancelled,
    CallError,
    CallSkipped,
    CallTimeout,
    CircuitOpen,
    ClientRetriesWarning,
    ConfigurationError,
    DepthLimitExceeded,
    DispatchFailed,
    FanoutError,
    FanoutWarning,
    InjectionDetected,
    InvalidInputError,
    InvalidItem,
    KeyNotFound,
    NestedLimitsWarning,
    OutputLimitWarning,
    RefusedError,
    RetriesExhausted,
    SyncInAsyncError,
    TokenEstimateWarning,
    UnestimatedCostWarning,
    UnpricedModel,
    UnpricedModelWarning,
    VoterNotNeeded,
    VoteTie,
)
from langgraph_fanout.graphs.fan import (
    as_dispatch_result,
    create_fan_in_graph,
    create_fan_out_graph,
)
from langgraph_fanout.graphs.pipeline import create_pipeline_graph, parallel
from langgraph_fanout.graphs.records import result_from_record, result_to_record
from langgraph_fanout.graphs.tree import create_tree_graph
from langgraph_fanout.guards.breaker import (
    BreakerConfig,
    BreakerRegistry,
    CircuitBreaker,
    default_breakers,
)
from langgraph_fanout.guards.cache import CacheMode, IdempotencyCache
from langgraph_fanout.guards.hedging import HedgePolicy
from langgraph_fanout.guards.injection import InjectionFinding, InjectionSeverity
from langgraph_fanout.guards.ledger import CostLedger
from langgraph_fanout.guards.limits import DispatchResourceLimits, SharedRun
from langgraph_fanout.guards.pricing import Price, lookup_price
from langgraph_fanout.guards.ratelimit import (
    EndpointPauses,
    RateLimiter,
    default_pauses,
    shared_limiter,
)
from langgraph_fanout.guards.recovery import ErrorRecoveryPolicy, ErrorStrategy
from langgraph_fanout.guards.redaction import RedactionMode, Redactor
from langgraph_fanout.guards.scanners import InjectionScanner, LLMGuardScanner
from langgraph_fanout.guards.screening import InjectionPolicy, ScreeningPolicy
from langgraph_fanout.guards.tokens import count_message_tokens, count_tokens
from langgraph_fanout.tools.factories import (
    create_delegate_tool,
    create_dispatch_tool,
    create_vote_tool,
)

__all__ = [
    "A2AClient",
    "AgentDelegationRequest",
    "AgentError",
    "AgentLimitExceeded",
    "AgentRegistry",
    "Attempt",
    "BreakerConfig",
    "BreakerRegistry",
    "BudgetExceeded",
    "CacheBackendWarning",
    "CacheKeyError",
    "CacheMode",
    "CallCancelled",
    "CallError",
    "CallSkipped",
    "CallTimeout",
    "CircuitBreaker",
    "CircuitOpen",
    "ClientRetriesWarning",
    "ConfigurationError",
    "CostLedger",
    "DelegationResult",
    "DepthLimitExceeded",
    "DispatchFailed",
    "DispatchMode",
    "DispatchPlan",
    "DispatchProgress",
    "DispatchReport",
    "DispatchResourceLimits",
    "DispatchResult",
    "Dispatcher",
    "EndpointPauses",
    "ErrorRecoveryPolicy",
    "ErrorStrategy",
    "FanoutError",
    "FanoutWarning",
    "GuardOptions",
    "Guards",
    "HedgePolicy",
    "IdempotencyCache",
    "InjectionDetected",
    "InjectionFinding",
    "InjectionPolicy",
    "InjectionScanner",
    "InjectionSeverity",
    "InvalidInputError",
    "InvalidItem",
    "KeyNotFound",
    "LLMGuardScanner",
    "NestedLimitsWarning",
    "OutputLimitWarning",
    "Price",
    "PromptTemplate",
    "RateLimiter",
    "RedactionMode",
    "Redactor",
    "RefusedError",
    "RetriesExhausted",
    "ScreeningPolicy",
    "SharedRun",
    "Status",
    "StopCondition",
    "SubAgent",
    "SubAgentResult",
    "SyncInAsyncError",
    "Task",
    "TokenEstimateWarning",
    "UnestimatedCostWarning",
    "UnpricedModel",
    "UnpricedModelWarning",
    "Vote",
    "VoteTie",
    "VoterNotNeeded",
    "Votes",
    "aggregator_from",
    "as_dispatch_result",
    "best_result",
    "collect_all",
    "count_message_tokens",
    "count_tokens",
    "create_delegate_tool",
    "create_dispatch_tool",
    "create_fan_in_graph",
    "create_fan_out_graph",
    "create_pipeline_graph",
    "create_tree_graph",
    "create_vote_tool",
    "default_breakers",
    "default_pauses",
    "delegate",
    "dispatch_agents",
    "dispatch_agents_sync",
    "first_success",
    "lookup_price",
    "majority_vote",
    "mean",
    "median",
    "parallel",
    "plan_dispatch",
    "rank_by_metric",
    "result_from_record",
    "result_to_record",
    "shared_limiter",
    "stop_after_failures",
    "stop_after_successes",
    "stop_on_first_failure",
    "stop_when",
    "vote",
    "vote_sync",
]


def _show_the_face() -> None:
    """Set ``__module__`` of every re-exported class and function to this package.

    String annotations of a class (``from __future__ import annotations``) are resolved
    first, in the module that defines them: ``typing.get_type_hints`` looks names up in
    ``sys.modules[cls.__module__]``, which is no longer that module afterwards.
    """
    ours = [
        obj
        for obj in (globals()[name] for name in __all__)
        if isinstance(obj, type | _types.FunctionType)
        and str(getattr(obj, "__module__", "")).startswith("langgraph_fanout.")
    ]
    for obj in ours:
        own = _inspect.get_annotations(obj) if isinstance(obj, type) else None
        if own and any(isinstance(v, str) for v in own.values()):
            try:
                hints = _typing.get_type_hints(obj, include_extras=True)
            except NameError:  # a name imported for type checking only: left as it is
                continue
            obj.__annotations__ = {k: hints.get(k, v) for k, v in own.items()}
    for obj in ours:
        obj.__module__ = __name__


_show_the_face()
