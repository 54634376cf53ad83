"""Parallel sub-agent dispatch, delegation and aggregation for LangChain and LangGraph."""

from .agents import SubAgent
from .call import CallPipeline, Task
from .dispatch import (
    Dispatcher,
    DispatchMode,
    DispatchResult,
    dispatch_agents,
    dispatch_agents_sync,
)
from .errors import (
    AgentError,
    AgentLimitExceeded,
    BudgetExceeded,
    CacheKeyError,
    CallCancelled,
    CallError,
    CallSkipped,
    CallTimeout,
    CircuitOpen,
    ConfigurationError,
    DepthLimitExceeded,
    DispatchFailed,
    FanoutError,
    InjectionDetected,
    InvalidInputError,
    InvalidItem,
    RefusedError,
    RetriesExhausted,
    SyncInAsyncError,
    UnpricedModel,
)
from .limits import DispatchResourceLimits
from .prompts import PromptTemplate
from .report import DispatchReport
from .results import Attempt, Status, SubAgentResult
from .stopping import (
    DispatchProgress,
    StopCondition,
    stop_after_failures,
    stop_after_successes,
    stop_on_first_failure,
    stop_when,
)

__all__ = [
    "AgentError",
    "AgentLimitExceeded",
    "Attempt",
    "BudgetExceeded",
    "CacheKeyError",
    "CallCancelled",
    "CallError",
    "CallPipeline",
    "CallSkipped",
    "CallTimeout",
    "CircuitOpen",
    "ConfigurationError",
    "DepthLimitExceeded",
    "DispatchFailed",
    "DispatchMode",
    "DispatchProgress",
    "DispatchReport",
    "DispatchResourceLimits",
    "DispatchResult",
    "Dispatcher",
    "FanoutError",
    "InjectionDetected",
    "InvalidInputError",
    "InvalidItem",
    "PromptTemplate",
    "RefusedError",
    "RetriesExhausted",
    "Status",
    "StopCondition",
    "SubAgent",
    "SubAgentResult",
    "SyncInAsyncError",
    "Task",
    "UnpricedModel",
    "dispatch_agents",
    "dispatch_agents_sync",
    "stop_after_failures",
    "stop_after_successes",
    "stop_on_first_failure",
    "stop_when",
]
