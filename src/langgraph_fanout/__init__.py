"""Parallel sub-agent dispatch, delegation and aggregation for LangChain and LangGraph.

Start with ``dispatch_agents`` (fan-out under limits), ``vote`` (ensembles) and the
``create_*`` factories; every call goes through one pipeline with the budget, recovery,
cache, rate limits and screening.
"""

from .agents import SubAgent
from .aggregate import (
    aggregator_from,
    best_result,
    collect_all,
    first_success,
    mean,
    median,
    rank_by_metric,
)
from .breaker import BreakerConfig, CircuitBreaker
from .cache import CacheMode, IdempotencyCache
from .call import Task
from .cost import CostLedger, Price, count_message_tokens, count_tokens, lookup_price
from .delegation import (
    A2AClient,
    AgentDelegationRequest,
    AgentRegistry,
    DelegationResult,
    delegate,
)
from .dispatch import (
    Dispatcher,
    DispatchMode,
    DispatchResult,
    dispatch_agents,
    dispatch_agents_sync,
)
from .ensemble import vote, vote_sync
from .errors import (
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
    RefusedError,
    RetriesExhausted,
    SyncInAsyncError,
    TokenEstimateWarning,
    UnestimatedCostWarning,
    UnpricedModel,
    UnpricedModelWarning,
    VoteTie,
)
from .graphs import (
    as_dispatch_result,
    create_fan_in_graph,
    create_fan_out_graph,
    create_pipeline_graph,
    create_tree_graph,
    parallel,
)
from .hedging import HedgePolicy
from .limits import DispatchResourceLimits
from .options import GuardOptions, Guards
from .plan import DispatchPlan, plan_dispatch
from .prompts import PromptTemplate
from .ratelimit import RateLimiter, shared_limiter
from .recovery import ErrorRecoveryPolicy, ErrorStrategy
from .redaction import RedactionMode, Redactor
from .report import DispatchReport
from .results import Attempt, Status, SubAgentResult
from .security import InjectionPolicy, ScreeningPolicy
from .stopping import (
    DispatchProgress,
    StopCondition,
    stop_after_failures,
    stop_after_successes,
    stop_on_first_failure,
    stop_when,
)
from .tools import (
    create_delegate_tool,
    create_dispatch_tool,
    create_vote_tool,
)
from .voting import Vote, majority_vote

__all__ = [
    "A2AClient",
    "AgentDelegationRequest",
    "AgentError",
    "AgentLimitExceeded",
    "AgentRegistry",
    "Attempt",
    "BreakerConfig",
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
    "ErrorRecoveryPolicy",
    "ErrorStrategy",
    "FanoutError",
    "FanoutWarning",
    "GuardOptions",
    "Guards",
    "HedgePolicy",
    "IdempotencyCache",
    "InjectionDetected",
    "InjectionPolicy",
    "InvalidInputError",
    "InvalidItem",
    "KeyNotFound",
    "NestedLimitsWarning",
    "Price",
    "PromptTemplate",
    "RateLimiter",
    "RedactionMode",
    "Redactor",
    "RefusedError",
    "RetriesExhausted",
    "ScreeningPolicy",
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
    "shared_limiter",
    "stop_after_failures",
    "stop_after_successes",
    "stop_on_first_failure",
    "stop_when",
    "vote",
    "vote_sync",
]
