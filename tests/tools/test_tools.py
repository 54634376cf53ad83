"""Tests of ``langgraph_fanout.tools``: the dispatch, delegate and vote tools."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any
from uuid import UUID

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.tools import BaseTool

from conftest import FakeSleep
from langgraph_fanout.aggregate.voting import Vote, Votes
from langgraph_fanout.delegation.client import A2AClient
from langgraph_fanout.delegation.requests import DelegationResult
from langgraph_fanout.engine.agents import SubAgent
from langgraph_fanout.engine.dispatch import DispatchResult
from langgraph_fanout.errors import BudgetExceeded, ConfigurationError
from langgraph_fanout.guards.limits import DispatchResourceLimits
from langgraph_fanout.guards.pricing import Price
from langgraph_fanout.guards.recovery import ErrorRecoveryPolicy, ErrorStrategy
from langgraph_fanout.testing import SimulatedChatModel
from langgraph_fanout.tools.factories import (
    DelegateTool,
    DispatchTool,
    VoteTool,
    create_delegate_tool,
    create_dispatch_tool,
    create_vote_tool,
)

# Every sub-agent call reports 30 input and 40 output tokens: $0.0043 at these prices.
# The worst case reserved before a call (prompt + max_tokens=50 output) is about $0.0051.
PRICES = {"simulated-small": Price(input_per_mtok=10.0, output_per_mtok=100.0)}
CALL_COST = 30 * 10e-6 + 40 * 100e-6


def model(**kwargs: Any) -> SimulatedChatModel:
    kwargs.setdefault("max_tokens", 50)
    kwargs.setdefault("usage_override", (30, 40))
    return SimulatedChatModel(**kwargs)


def budget(usd: float, **kwargs: Any) -> DispatchResourceLimits:
    return DispatchResourceLimits(max_total_cost_usd=usd, **kwargs)


def call(tool: BaseTool, args: dict[str, Any], call_id: str = "call-1") -> ToolCall:
    return ToolCall(name=tool.name, args=args, id=call_id, type="tool_call")


def echo(prompt: str, rng: Any) -> str:
    return prompt.rsplit(":", 1)[-1].strip()


async def hang(prompt: Any) -> str:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- dispatch tool


def test_dispatch_tool_schema_lists_agents_aggregates_and_max_items() -> None:
    tool = create_dispatch_tool(
        {"classifier": model(), "summarizer": model()}, max_items=7, limits=budget(0.5)
    )
    assert isinstance(tool, DispatchTool)
    assert tool.name == "dispatch_agents"
    assert tool.response_format == "content_and_artifact"
    assert "classifier" in tool.description and "$0.5000" in tool.description
    schema = tool.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
    props = schema["properties"]
    assert schema["required"] == ["instruction", "items"]
    assert props["items"]["maxItems"] == 7 and props["items"]["minItems"] == 1
    assert props["agent"]["anyOf"][0]["enum"] == ["classifier", "summarizer"]
    assert "majority_vote" in props["aggregate"]["anyOf"][0]["enum"]


def test_dispatch_tool_call_returns_summary_and_full_result() -> None:
    tool = create_dispatch_tool(
        {"classifier": model(answer=echo)}, limits=budget(0.05), prices=PRICES
    )
    message = tool.invoke(
        call(tool, {"instruction": "Classify: {item}", "items": ["red", "green", "blue"]})
    )
    assert isinstance(message, ToolMessage)
    assert message.status == "success" and message.tool_call_id == "call-1"
    result = message.artifact
    assert isinstance(result, DispatchResult)
    assert [r.output.content for r in result] == ["red", "green", "blue"]
    spent = 3 * CALL_COST
    assert message.content == (
        f"3/3 ok; spent ${spent:.4f} (run: ${spent:.4f} of $0.0500, ${0.05 - spent:.4f} left)\n"
        "[0] red\n[1] green\n[2] blue"
    )


async def test_dispatch_tool_async_invoke_and_plain_args() -> None:
    tool = create_dispatch_tool({"a": model(answer=echo)})
    message = await tool.ainvoke(call(tool, {"instruction": "Say: {item}", "items": ["x"]}))
    assert message.content.startswith("1/1 ok")
    # Invoked with plain arguments (no tool call id), LangChain returns the content only.
    content = await tool.ainvoke({"instruction": "Say: {item}", "items": ["y"]})
    assert isinstance(content, str) and content.endswith("[0] y")


def test_items_without_a_field_are_appended_and_dict_items_fill_fields() -> None:
    worker = model(record_prompts=True)
    tool = create_dispatch_tool({"w": worker})
    tool.invoke(call(tool, {"instruction": "Translate to French", "items": ["cat", {"n": 1}]}))
    tool.invoke(
        call(
            tool,
            {"instruction": "Rate {name} ({stars} stars)", "items": [{"name": "A", "stars": 4}]},
        )
    )
    assert worker.prompts == [
        "Translate to French\n\ncat",
        'Translate to French\n\n{"n": 1}',
        "Rate A (4 stars)",
    ]


def test_budget_is_for_the_run_and_a_refusal_says_spent_and_left() -> None:
    tool = create_dispatch_tool({"a": model()}, limits=budget(0.012), prices=PRICES)
    first = tool.invoke(call(tool, {"instruction": "Do {item}", "items": ["1", "2"]}))
    assert first.content.startswith("2/2 ok")
    second = tool.invoke(call(tool, {"instruction": "Do {item}", "items": ["3", "4"]}, "call-2"))
    spent = 2 * CALL_COST
    assert second.content.startswith(
        "refused: the cost budget of this run cannot cover the call, nothing was run. "
        f"Spent ${spent:.4f} of $0.0120, ${0.012 - spent:.4f} left; one call needs up to $0.0053"
    )
    refused = second.artifact
    assert all(isinstance(r.error, BudgetExceeded) for r in refused)
    assert refused.report.spent_usd == 0.0
    assert tool.ledger.spent_usd == pytest.approx(spent) and tool.ledger.spent_usd <= 0.012
    tool.reset_budget()
    assert tool.invoke(call(tool, {"instruction": "Do {item}", "items": ["5"]})).content.startswith(
        "1/1 ok"
    )


def test_partial_refusal_names_the_refused_items() -> None:
    tool = create_dispatch_tool(
        {"a": model()}, limits=budget(0.012, max_concurrent=1), prices=PRICES
    )
    message = tool.invoke(call(tool, {"instruction": "Do {item}", "items": ["1", "2", "3"]}))
    first_line, *items = str(message.content).splitlines()
    assert first_line.startswith("2/3 ok; 1 failed (1 budget_exceeded); spent $0.0086")
    assert "1 refused by the budget (one call needs up to $0.0053)" in first_line
    assert items[2].startswith("[2] failed (budget_exceeded): cost budget exceeded")


def test_agent_count_is_shared_by_every_call_of_the_tool() -> None:
    tool = create_dispatch_tool({"a": model()}, limits=DispatchResourceLimits(max_total_agents=3))
    first = tool.invoke(call(tool, {"instruction": "Do {item}", "items": ["1", "2"]}))
    second = tool.invoke(call(tool, {"instruction": "Do {item}", "items": ["3", "4"]}))
    assert first.content.startswith("2/2 ok")
    assert second.content.startswith("1/2 ok; 1 failed (1 agent_limit)")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            {"instruction": "Do {item}", "items": ["x"], "agent": "nobody"},
            "invalid arguments, nothing was run: agent: Input should be 'a' or 'b'. "
            "Fix them and call the tool again.",
        ),
        (
            {"instruction": "Do {item}", "items": []},
            "invalid arguments, nothing was run: items: List should have at least 1 item",
        ),
        (
            {"instruction": "Do {item}", "items": ["x"] * 4},
            "invalid arguments, nothing was run: items: List should have at most 3 items",
        ),
        (
            {"instruction": "Do {item}", "items": ["x"], "aggregate": "sum"},
            "invalid arguments, nothing was run: aggregate: Input should be 'collect_all'",
        ),
        ({"instruction": "Do {item}", "items": ["x"]}, "name the agent: one of ['a', 'b']"),
        (
            {"instruction": "Do {item.attr}", "items": ["x"], "agent": "a"},
            "invalid instruction: invalid input, nothing was called: template: field "
            "{item.attr} is not allowed",
        ),
        (
            {"instruction": "Rate {name}", "items": ["x"], "agent": "a"},
            "item 0 is a string but the instruction uses the fields ['name']",
        ),
        (
            {"instruction": "Rate {name}", "items": [{"nom": "x"}], "agent": "a"},
            "invalid input, nothing was called: item 0: missing field(s) ['name']",
        ),
        (
            {"instruction": "Unbalanced {", "items": ["x"], "agent": "a"},
            "invalid instruction: invalid input, nothing was called: template: Single '{'",
        ),
    ],
)
def test_bad_arguments_come_back_as_error_messages(args: dict[str, Any], expected: str) -> None:
    worker = model()
    tool = create_dispatch_tool({"a": worker, "b": model()}, max_items=3)
    message = tool.invoke(call(tool, args))
    assert isinstance(message, ToolMessage)
    assert message.status == "error"
    assert str(message.content).startswith(expected)
    assert worker.calls == 0


def test_aggregates_in_the_content() -> None:
    votes = model(responses=['{"label": "spam"}', '{"label": "ham"}', '{"label": "spam"}'])
    tool = create_dispatch_tool({"a": votes})
    message = tool.invoke(
        call(
            tool,
            {
                "instruction": "Label {item}",
                "items": ["m1", "m2", "m3"],
                "aggregate": "majority_vote",
                "key": "label",
            },
        )
    )
    # One vote per item (each item's samples vote among themselves; here one sample each).
    votes = message.artifact.aggregate
    assert isinstance(votes, Votes) and votes.winners == ["spam", "ham", "spam"]
    assert str(message.content).splitlines()[1:4] == [
        "[0] vote: spam (1/1 votes, 100%); spam: 1",
        "[1] vote: ham (1/1 votes, 100%); ham: 1",
        "[2] vote: spam (1/1 votes, 100%); spam: 1",
    ]

    scores = create_dispatch_tool(
        {"a": model(responses=["0.2", "0.9", "0.5"], cycle_responses=True)}
    )
    best = scores.invoke(
        call(
            scores, {"instruction": "{item}", "items": ["a", "b", "c"], "aggregate": "best_result"}
        )
    )
    assert str(best.content).splitlines()[1] == "best_result: [1] 0.9"
    mean = scores.invoke(
        call(scores, {"instruction": "{item}", "items": ["a", "b", "c"], "aggregate": "mean"})
    )
    assert str(mean.content).splitlines()[1] == "mean: 0.533333"


def test_first_success_stops_early_and_lists_failures() -> None:
    flaky = model(responses=["first"], failures=["bad_request"])
    tool = create_dispatch_tool(
        {"a": flaky}, limits=DispatchResourceLimits(max_concurrent=1), aggregate="first_success"
    )
    message = tool.invoke(call(tool, {"instruction": "{item}", "items": ["1", "2", "3"]}))
    lines = str(message.content).splitlines()
    assert lines[0].startswith("1/3 ok; 2 failed (1 agent_error, 1 cancelled)")
    assert "stopped early: " in lines[0]
    assert lines[1] == "first_success: [1] first"
    assert lines[2].startswith("failed: [0] agent_error: agent 'a' raised BadRequestError")


def test_long_outputs_are_clipped_in_the_content_but_whole_in_the_artifact() -> None:
    tool = create_dispatch_tool({"a": model(max_tokens=None, answer=lambda p, r: "x" * 5000)})
    tool.max_item_chars = 50
    tool.max_content_chars = 300
    message = tool.invoke(
        call(tool, {"instruction": "{item}", "items": [str(i) for i in range(20)]})
    )
    content = str(message.content)
    assert len(content) <= 300 + 60
    assert content.splitlines()[1] == "[0] " + "x" * 49 + "…"
    assert content.endswith("more line(s) in the artifact")
    assert len(message.artifact[19].output.content) == 5000


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.model_runs: list[tuple[list[str], dict[str, Any]]] = []

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.model_runs.append((list(tags or []), dict(metadata or {})))


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_callbacks_tags_and_metadata_reach_sub_agents(mode: str) -> None:
    tool = create_dispatch_tool({"a": model()})
    recorder = Recorder()
    config = {"callbacks": [recorder], "tags": ["orchestrator"], "metadata": {"run": "r1"}}
    args = call(tool, {"instruction": "{item}", "items": ["1", "2"]})
    if mode == "sync":
        await asyncio.to_thread(tool.invoke, args, config)
    else:
        await tool.ainvoke(args, config)
    assert len(recorder.model_runs) == 2
    for tags, metadata in recorder.model_runs:
        assert "orchestrator" in tags
        assert metadata["run"] == "r1"
        assert "fanout_index" in metadata


async def test_sync_invoke_inside_a_running_loop_still_works() -> None:
    # A sync tool call made from async code (e.g. a sync agent run in a notebook) runs on
    # a fresh loop in a worker thread instead of failing.
    tool = create_dispatch_tool({"a": model()}, limits=budget(0.05), prices=PRICES)
    message = tool.invoke(call(tool, {"instruction": "{item}", "items": ["1"]}))
    again = await asyncio.to_thread(
        tool.invoke, call(tool, {"instruction": "{item}", "items": ["2"]})
    )
    assert message.content.startswith("1/1 ok") and again.content.startswith("1/1 ok")
    assert tool.ledger.spent_usd == pytest.approx(2 * CALL_COST)


# Three gathered delegations under max_concurrent=1; each sync sub-agent calls a sync tool,
# whose dispatch runs on a fresh loop in the sub-agent's worker thread. Run in a child
# process: when it deadlocks, its stuck threads would keep this process from exiting.
SYNC_TOOLS_UNDER_CONTENTION = """
import asyncio
from langgraph_fanout.delegation.client import A2AClient
from langgraph_fanout.guards.limits import DispatchResourceLimits
from langgraph_fanout.testing import SimulatedChatModel
from langgraph_fanout.tools.factories import create_dispatch_tool

leaf = SimulatedChatModel(responses=["leaf"], cycle_responses=True, latency_s=0.05)
inner = create_dispatch_tool({"leaf": leaf})

def sync_parent(prompt):
    args = {"instruction": "Echo {item}", "items": ["a"]}
    return inner.invoke({"type": "tool_call", "id": "c", "name": inner.name, "args": args})

async def main():
    outer = A2AClient({"parent": sync_parent}, limits=DispatchResourceLimits(max_concurrent=1))
    requests = [{"agent_id": "parent", "task": f"t{i}"} for i in range(3)]
    results = await outer.delegate_all(requests)
    assert all(r.success for r in results), [r.error for r in results]
    print(leaf.calls)

asyncio.run(main())
"""


def test_sync_tools_in_concurrent_sync_sub_agents_do_not_deadlock() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SYNC_TOOLS_UNDER_CONTENTION],
        capture_output=True,
        text=True,
        timeout=15,
        check=True,
    )
    assert done.stdout.strip() == "3"


def test_min_success_count_failure_is_reported_not_raised() -> None:
    tool = create_dispatch_tool(
        {"a": model(failures=["bad_request", "bad_request"])},
        limits=DispatchResourceLimits(min_success_count=2, max_concurrent=1),
    )
    message = tool.invoke(call(tool, {"instruction": "{item}", "items": ["1", "2", "3"]}))
    assert message.status == "success"
    assert str(message.content).startswith(
        "dispatch failed (0 successes < min_success_count=2): 0/3 ok. failed: [0] agent_error"
    )


# --------------------------------------------------------------------------- create_agent


def orchestrator(*calls: dict[str, Any], final: str = "final answer") -> SimulatedChatModel:
    """A scripted tool-calling model: each dict is one dispatch_agents call, then ``final``."""
    steps: list[str | AIMessage] = [
        AIMessage(
            content="",
            tool_calls=[{"name": "dispatch_agents", "args": args, "id": f"call-{i}"}],
        )
        for i, args in enumerate(calls, start=1)
    ]
    steps.append(final)
    return SimulatedChatModel(model="orchestrator", responses=steps)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_create_agent_fans_out_then_gets_a_budget_refusal_and_finishes(mode: str) -> None:
    worker = model(answer=echo)
    tool = create_dispatch_tool({"classifier": worker}, limits=budget(0.012), prices=PRICES)
    agent = create_agent(
        orchestrator(
            {"instruction": "Classify: {item}", "items": ["shoes", "laptop"]},
            {"instruction": "Classify: {item}", "items": ["lamp", "desk"]},
        ),
        tools=[tool],
    )
    inputs = {"messages": [("user", "Classify my four products.")]}
    if mode == "sync":
        state = await asyncio.to_thread(agent.invoke, inputs)
    else:
        state = await agent.ainvoke(inputs)
    messages = state["messages"]
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert len(tool_messages) == 2
    first, second = tool_messages
    spent = 2 * CALL_COST
    assert first.content == (
        f"2/2 ok; spent ${spent:.4f} (run: ${spent:.4f} of $0.0120, ${0.012 - spent:.4f} left)\n"
        "[0] shoes\n[1] laptop"
    )
    assert [r.output.content for r in first.artifact] == ["shoes", "laptop"]
    assert second.content.startswith("refused: the cost budget of this run cannot cover")
    assert f"Spent ${spent:.4f} of $0.0120" in second.content
    assert [r.error_kind for r in second.artifact] == ["budget_exceeded"] * 2
    assert messages[-1].content == "final answer"
    assert worker.calls == 2
    assert tool.ledger.spent_usd <= 0.012


async def test_a_model_calling_the_tool_in_a_loop_is_stopped_by_the_budget() -> None:
    worker = model()
    tool = create_dispatch_tool({"a": worker}, limits=budget(0.02), prices=PRICES)
    calls = [{"instruction": "Step {item}", "items": [str(i)]} for i in range(8)]
    agent = create_agent(orchestrator(*calls), tools=[tool])
    state = await agent.ainvoke({"messages": [("user", "go")]})
    contents = [m.content for m in state["messages"] if isinstance(m, ToolMessage)]
    assert len(contents) == 8
    ran = [c for c in contents if c.startswith("1/1 ok")]
    refused = [c for c in contents if c.startswith("refused:")]
    # Four calls spend $0.0172; the $0.0028 left cannot hold a $0.0051 worst case.
    assert len(ran) == 4 and len(refused) == 4
    assert worker.calls == 4
    assert tool.ledger.spent_usd <= 0.02
    assert state["messages"][-1].content == "final answer"


async def test_parallel_tool_calls_share_one_concurrency_cap_and_budget() -> None:
    # One model turn with two dispatch calls: LangGraph runs them concurrently, and both
    # draw from the tool's one concurrency cap and one budget.
    worker = model(latency_s=0.005)
    tool = create_dispatch_tool({"a": worker}, limits=budget(0.05, max_concurrent=1), prices=PRICES)
    turn = AIMessage(
        content="",
        tool_calls=[
            {"name": "dispatch_agents", "args": {"instruction": "{item}", "items": items}, "id": i}
            for i, items in (("c1", ["1", "2"]), ("c2", ["3", "4"]))
        ],
    )
    agent = create_agent(SimulatedChatModel(responses=[turn, "done"]), tools=[tool])
    state = await agent.ainvoke({"messages": [("user", "go")]})
    contents = [m.content for m in state["messages"] if isinstance(m, ToolMessage)]
    assert [c.split(";")[0] for c in contents] == ["2/2 ok", "2/2 ok"]
    assert worker.calls == 4 and worker.peak_in_flight == 1
    assert tool.ledger.spent_usd == pytest.approx(4 * CALL_COST)


async def test_bad_arguments_do_not_end_the_agent_run() -> None:
    tool = create_dispatch_tool({"a": model(), "b": model()})
    agent = create_agent(
        orchestrator(
            {"instruction": "Do {item}", "items": ["x"], "agent": "c"},
            {"instruction": "Do {item}", "items": ["x"], "agent": "a"},
        ),
        tools=[tool],
    )
    state = await agent.ainvoke({"messages": [("user", "go")]})
    first, second = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert first.status == "error"
    assert "agent: Input should be 'a' or 'b'" in first.content
    assert second.status == "success" and second.content.startswith("1/1 ok")
    assert state["messages"][-1].content == "final answer"


# The middle agent is a callable that dispatches: no worst case of its own (warned, expected).
@pytest.mark.filterwarnings("ignore::langgraph_fanout.UnestimatedCostWarning")
async def test_nested_dispatch_inside_a_sub_agent_draws_from_the_tool_budget() -> None:
    # The tool's sub-agent is itself an agent with its own dispatch tool: the leaf calls
    # are billed to the outer tool's run, never to the inner tool's own ledger.
    leaf = model(answer=echo)
    inner = create_dispatch_tool({"leaf": leaf}, prices=PRICES)
    middle_model = SimulatedChatModel(
        responses=[
            AIMessage(
                content="",
                tool_calls=[
                    {
                        "name": "dispatch_agents",
                        "args": {"instruction": "Say: {item}", "items": ["p", "q", "r"]},
                        "id": "inner-1",
                    }
                ],
            ),
            "middle done",
        ],
        usage_override=(30, 40),
    )
    middle = create_agent(middle_model, tools=[inner])
    outer = create_dispatch_tool({"middle": middle}, limits=budget(0.05), prices=PRICES)
    message = await outer.ainvoke(call(outer, {"instruction": "Plan {item}", "items": ["x"]}))
    assert message.content.startswith("1/1 ok")
    assert str(message.content).splitlines()[1] == "[0] middle done"
    assert leaf.calls == 3
    assert inner.ledger.spent_usd == 0.0
    # Two middle-model calls and three leaf calls, all on the outer run's ledger.
    assert outer.ledger.spent_usd == pytest.approx(5 * CALL_COST)
    assert message.artifact.report.total_spent_usd == pytest.approx(5 * CALL_COST)


# --------------------------------------------------------------------------- delegate tool


def test_delegate_tool_returns_the_answer_and_the_delegation_result() -> None:
    tool = create_delegate_tool(
        {"researcher": model(responses=["Paris"]), "writer": model()},
        limits=budget(0.05),
        prices=PRICES,
    )
    assert isinstance(tool, DelegateTool)
    assert tool.name == "delegate_to_agent"
    props = tool.tool_call_schema.model_json_schema()["properties"]  # type: ignore[union-attr]
    assert props["agent"]["enum"] == ["researcher", "writer"]
    message = tool.invoke(
        call(tool, {"agent": "researcher", "task": "Capital?", "context": {"country": "France"}})
    )
    result = message.artifact
    assert isinstance(result, DelegationResult) and result.success
    left = 0.05 - CALL_COST
    assert message.content == (
        f"researcher answered; 1 attempt(s), ${CALL_COST:.4f}; run: ${CALL_COST:.4f} of "
        f"$0.0500, ${left:.4f} left\nParis"
    )


async def test_delegate_tool_with_timeout_and_fallback_policy(fake_sleep: FakeSleep) -> None:
    policy = ErrorRecoveryPolicy(
        strategy=ErrorStrategy.FALLBACK, fallback_tools=["backup_agent"], max_retries=1
    )
    tool = create_delegate_tool(
        {"researcher": hang, "backup_agent": model(responses=["backup says hi"])},
        policy=policy,
        timeout=0.01,
        sleep=fake_sleep,
    )
    message = await tool.ainvoke(call(tool, {"agent": "researcher", "task": "hi"}))
    assert message.content.startswith(
        "backup_agent (fallback for researcher) answered; 3 attempt(s)"
    )
    assert message.content.endswith("backup says hi")
    assert message.artifact.errors == ("timeout", "timeout")


async def test_delegate_tool_failure_and_refusal_messages(fake_sleep: FakeSleep) -> None:
    tool = create_delegate_tool(
        # A plain function under a budget states what a call costs (here nothing).
        {"slow": SubAgent.of(hang, cost_per_call_usd=0.0), "a": model()},
        timeout=0.01,
        policy=ErrorRecoveryPolicy(max_retries=0),
        limits=budget(0.006),
        prices=PRICES,
        sleep=fake_sleep,
    )
    failed = await tool.ainvoke(call(tool, {"agent": "slow", "task": "t"}))
    assert failed.status == "success"
    assert failed.content.startswith(
        "delegation to 'slow' failed (timeout): call to 'slow' timed out after 0.01 s"
    )
    ok = await tool.ainvoke(call(tool, {"agent": "a", "task": "t"}))
    assert ok.content.startswith("a answered")
    refused = await tool.ainvoke(call(tool, {"agent": "a", "task": "t"}))
    assert refused.content.startswith("refused: the cost budget of this run cannot cover")
    assert f"Spent ${CALL_COST:.4f} of $0.0060" in refused.content
    bad = await tool.ainvoke(call(tool, {"agent": "nobody", "task": "t"}))
    assert bad.status == "error" and "agent: Input should be 'slow' or 'a'" in bad.content


# --------------------------------------------------------------------------- vote tool


def test_vote_tool_asks_distinct_samples_of_one_model() -> None:
    voter = model(choices=["spam", "ham"], seed=11, record_prompts=True)
    tool = create_vote_tool(voter, n=5, early=None)
    assert isinstance(tool, VoteTool)
    assert tool.name == "ask_ensemble" and "5 voters" in tool.description
    message = tool.invoke(
        call(tool, {"question": "Is it spam?", "options": ["spam", "ham"], "context": "WIN $$$"})
    )
    vote = message.artifact.aggregate
    assert isinstance(vote, Vote)
    assert voter.calls == 5 and len(set(voter.prompts)) == 1
    assert voter.prompts[0] == (
        "Is it spam?\n\nAnswer with exactly one of: spam, ham\n\nContext:\nWIN $$$"
    )
    assert (
        str(message.content)
        .splitlines()[0]
        .startswith(f"vote: {vote.winner} ({vote.support}/5 votes")
    )
    assert [r.sample for r in message.artifact] == [0, 1, 2, 3, 4]


async def test_vote_tool_over_several_agents_stops_once_decided() -> None:
    agents = {f"v{i}": model(responses=["yes"]) for i in range(5)}
    tool = create_vote_tool(agents, limits=DispatchResourceLimits(max_concurrent=1))
    message = await tool.ainvoke(call(tool, {"question": "Ship it?"}))
    vote = message.artifact.aggregate
    assert vote.winner == "yes" and vote.decided_early
    assert sum(a.calls for a in agents.values()) == 3  # three of five decide it
    assert str(message.content).splitlines()[0] == (
        "vote: yes (3/5 votes, 100%; decided early, 2 voter(s) not needed); yes: 3"
    )


def test_vote_tool_with_no_valid_vote_and_a_budget_refusal() -> None:
    broken = create_vote_tool(
        model(failures=["bad_request"] * 3), n=3, policy=ErrorRecoveryPolicy(max_retries=0)
    )
    message = broken.invoke(call(broken, {"question": "q"}))
    lines = str(message.content).splitlines()
    assert lines[0] == "no valid votes"
    assert lines[1].startswith("0/3 ok; 3 failed (3 agent_error)")
    poor = create_vote_tool(model(), n=3, limits=budget(0.001), prices=PRICES)
    refused = poor.invoke(call(poor, {"question": "q"}))
    assert str(refused.content).startswith("refused: the cost budget of this run")


# --------------------------------------------------------------------------- factories


def test_tools_sharing_one_client_share_one_budget() -> None:
    client = A2AClient({"a": model(answer=echo)}, limits=budget(0.012), prices=PRICES)
    dispatch = create_dispatch_tool(client)
    delegate = create_delegate_tool(client)
    assert dispatch.client is delegate.client
    dispatch.invoke(call(dispatch, {"instruction": "x: {item}", "items": ["1", "2"]}))
    refused = delegate.invoke(call(delegate, {"agent": "a", "task": "t"}))
    assert str(refused.content).startswith("refused:")


def test_factory_errors() -> None:
    client = A2AClient({"a": model()})
    with pytest.raises(ConfigurationError, match=r"configure the A2AClient instead of passing \["):
        create_dispatch_tool(client, limits=budget(1.0))
    with pytest.raises(ConfigurationError, match="default_agent 'z' is not registered"):
        create_dispatch_tool({"a": model()}, default_agent="z")
    with pytest.raises(ConfigurationError, match="unknown voters"):
        create_vote_tool({"a": model()}, voters=["b"])
    with pytest.raises(ConfigurationError, match="n must be an int >= 1"):
        create_vote_tool(model(), n=0)
    with pytest.raises(ConfigurationError, match="unknown agent 'ghost'"):
        create_delegate_tool(
            {"a": model()},
            policy=ErrorRecoveryPolicy(strategy=ErrorStrategy.FALLBACK, fallback_tools=["ghost"]),
        )
    with pytest.raises(ValueError, match="at least one registered agent"):
        DispatchTool(client=A2AClient())


def test_tool_classes_take_a_client_and_a_custom_name() -> None:
    tool = DispatchTool(client=A2AClient({"a": model()}), name="fan_out", max_items=2)
    assert tool.name == "fan_out"
    schema = tool.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
    assert schema["properties"]["items"]["maxItems"] == 2
    named = create_vote_tool(model(), name="poll", description="Ask five times.")
    assert (named.name, named.description) == ("poll", "Ask five times.")
    assert json.loads(json.dumps(named.args))["question"]["type"] == "string"
