"""LangChain's standard tool tests (``langchain-tests``) for the three tools, offline."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from langgraph_fanout.delegation.client import A2AClient
from langgraph_fanout.guards.limits import DispatchResourceLimits
from langgraph_fanout.guards.pricing import Price
from langgraph_fanout.testing import SimulatedChatModel
from langgraph_fanout.tools.factories import DispatchTool, create_delegate_tool, create_vote_tool

PRICES = {"simulated-small": Price(input_per_mtok=0.15, output_per_mtok=0.60)}
LIMITS = DispatchResourceLimits(max_total_cost_usd=1.0, max_concurrent=4)


def agents() -> dict[str, SimulatedChatModel]:
    return {
        "classifier": SimulatedChatModel(choices=["electronics", "clothing"], seed=3),
        "summarizer": SimulatedChatModel(seed=5),
    }


class DispatchToolParams:
    """The dispatch tool built from its class, with a fresh client per test."""

    @property
    def tool_constructor(self) -> type[BaseTool]:
        return DispatchTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"client": A2AClient(agents(), limits=LIMITS, prices=PRICES)}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {
            "instruction": "Classify this product: {item}",
            "items": ["running shoes", "a laptop", {"item": "a desk lamp"}],
            "agent": "classifier",
            "aggregate": "majority_vote",
        }


class DelegateToolParams:
    """The delegate tool built by its factory (a new instance at every access)."""

    @property
    def tool_constructor(self) -> BaseTool:
        return create_delegate_tool(agents(), limits=LIMITS, prices=PRICES, timeout=30)

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {
            "agent": "summarizer",
            "task": "Summarize the document in one sentence.",
            "context": {"document": "Parallel sub-agents share one budget."},
        }


class VoteToolParams:
    """The vote tool over one model asked five times."""

    @property
    def tool_constructor(self) -> BaseTool:
        return create_vote_tool(
            SimulatedChatModel(choices=["yes", "no"], seed=7), n=5, limits=LIMITS, prices=PRICES
        )

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"question": "Is this email spam?", "options": ["yes", "no"], "context": "WIN!"}


class TestDispatchToolUnit(DispatchToolParams, ToolsUnitTests):
    pass


class TestDispatchToolIntegration(DispatchToolParams, ToolsIntegrationTests):
    pass


class TestDelegateToolUnit(DelegateToolParams, ToolsUnitTests):
    pass


class TestDelegateToolIntegration(DelegateToolParams, ToolsIntegrationTests):
    pass


class TestVoteToolUnit(VoteToolParams, ToolsUnitTests):
    pass


class TestVoteToolIntegration(VoteToolParams, ToolsIntegrationTests):
    pass
