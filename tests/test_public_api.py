"""The public surface changes only on purpose: this list is the contract."""

from __future__ import annotations

import langgraph_fanout

PUBLIC = [
    "AgentError",
    "AgentLimitExceeded",
    "Attempt",
    "BreakerConfig",
    "BudgetExceeded",
    "CacheKeyError",
    "CacheMode",
    "CallCancelled",
    "CallError",
    "CallSkipped",
    "CallTimeout",
    "CircuitBreaker",
    "CircuitOpen",
    "ConfigurationError",
    "CostLedger",
    "DepthLimitExceeded",
    "DispatchFailed",
    "DispatchMode",
    "DispatchProgress",
    "DispatchReport",
    "DispatchResourceLimits",
    "DispatchResult",
    "Dispatcher",
    "ErrorRecoveryPolicy",
    "ErrorStrategy",
    "FanoutError",
    "HedgePolicy",
    "IdempotencyCache",
    "InjectionDetected",
    "InjectionPolicy",
    "InvalidInputError",
    "InvalidItem",
    "KeyNotFound",
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
    "UnpricedModel",
    "Vote",
    "VoteTie",
    "aggregator_from",
    "best_result",
    "collect_all",
    "count_message_tokens",
    "count_tokens",
    "dispatch_agents",
    "dispatch_agents_sync",
    "first_success",
    "lookup_price",
    "majority_vote",
    "mean",
    "median",
    "rank_by_metric",
    "shared_limiter",
    "stop_after_failures",
    "stop_after_successes",
    "stop_on_first_failure",
    "stop_when",
    "vote",
    "vote_sync",
]


def test_all_is_sorted_and_pinned() -> None:
    assert langgraph_fanout.__all__ == sorted(langgraph_fanout.__all__)
    assert langgraph_fanout.__all__ == PUBLIC


def test_every_public_name_resolves() -> None:
    for name in langgraph_fanout.__all__:
        assert getattr(langgraph_fanout, name) is not None, name
