"""The public surface changes only on purpose: this list is the contract."""

from __future__ import annotations

import ast
import inspect
import pickle
import re
import typing
from pathlib import Path

import langgraph_fanout

PUBLIC = [
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


def test_all_is_sorted_and_pinned() -> None:
    assert langgraph_fanout.__all__ == sorted(langgraph_fanout.__all__)
    assert langgraph_fanout.__all__ == PUBLIC


def test_every_public_name_resolves() -> None:
    for name in langgraph_fanout.__all__:
        assert getattr(langgraph_fanout, name) is not None, name


def test_re_exported_names_show_the_face_and_keep_their_type_hints() -> None:
    for name in langgraph_fanout.__all__:
        obj = getattr(langgraph_fanout, name)
        if isinstance(obj, type) or inspect.isfunction(obj):
            assert obj.__module__ == "langgraph_fanout", name
        if isinstance(obj, type):
            typing.get_type_hints(obj)  # resolvable although __module__ moved
    assert repr(langgraph_fanout.SubAgentResult) == "<class 'langgraph_fanout.SubAgentResult'>"


def test_public_values_pickle_by_their_public_path() -> None:
    result = langgraph_fanout.SubAgentResult.from_error(
        index=0, agent="a", error=langgraph_fanout.CallCancelled(reason="stop", started=True)
    )
    data = pickle.dumps(result)
    # Only the public face and errors (the one module that never moves) are named.
    assert set(re.findall(rb"langgraph_fanout[\w.]*", data)) <= {
        b"langgraph_fanout",
        b"langgraph_fanout.errors",
    }
    back = pickle.loads(data)
    assert back.error_kind == "cancelled" and back.error.started


ROOT = Path(__file__).parent.parent


def _deep_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
        elif isinstance(node, ast.Import):
            module = node.names[0].name
        else:
            continue
        top = module.split(".")
        if top[0] == "langgraph_fanout" and module not in PUBLIC_MODULES:
            found.append(module)
    return found


PUBLIC_MODULES = {"langgraph_fanout", "langgraph_fanout.testing", "langgraph_fanout.cli"}


def test_examples_integrations_and_the_readme_import_only_public_names() -> None:
    sources = {
        str(p.relative_to(ROOT)): p.read_text()
        for folder in ("examples", "integrations")
        for p in (ROOT / folder).rglob("*.py")
        if "tests" not in p.parts
    }
    readme = (ROOT / "README.md").read_text()
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", readme, re.S)):
        sources[f"README.md block {i}"] = block
    deep = {name: _deep_imports(src) for name, src in sources.items()}
    assert {name: found for name, found in deep.items() if found} == {}
