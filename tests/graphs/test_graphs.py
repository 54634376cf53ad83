"""Tests of the LangGraph patterns (graphs/fan.py, tree.py, pipeline.py, runs.py, records.py)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from langgraph_fanout import (
    AgentError,
    BudgetExceeded,
    CallCancelled,
    ConfigurationError,
    DepthLimitExceeded,
    DispatchFailed,
    DispatchResourceLimits,
    InvalidInputError,
    RetriesExhausted,
    Status,
    SubAgent,
    SubAgentResult,
    dispatch_agents,
)
from langgraph_fanout.aggregate.aggregators import collect_all
from langgraph_fanout.aggregate.voting import majority_vote
from langgraph_fanout.graphs import runs as graph_runs
from langgraph_fanout.graphs.fan import (
    as_dispatch_result,
    create_fan_in_graph,
    create_fan_out_graph,
)
from langgraph_fanout.graphs.pipeline import create_pipeline_graph, parallel
from langgraph_fanout.graphs.records import result_from_record, result_to_record
from langgraph_fanout.graphs.tree import create_tree_graph
from langgraph_fanout.guards.pricing import Price
from langgraph_fanout.testing import SimulatedChatModel, scripted_agent

UNPRICED = DispatchResourceLimits(allow_unpriced=True)
CHILD = Path(__file__).with_name("graph_crash_child.py")


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    graph_runs._RUNS.clear()
    yield
    graph_runs._RUNS.clear()


class Gauge:
    """An async agent that counts calls in flight; the first ``want`` calls wait for each
    other, so the peak reaches ``want`` whenever the cap allows it (no timing involved)."""

    def __init__(self, want: int, fail: set[Any] | None = None) -> None:
        self.want = want
        self.fail = fail or set()
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self.inputs: list[Any] = []
        self.ready = asyncio.Event()
        self.__name__ = "gauge"

    async def __call__(self, item: Any) -> Any:
        self.calls += 1
        self.inputs.append(item)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.want:
            self.ready.set()
        try:
            await self.ready.wait()
            for _ in range(3):
                await asyncio.sleep(0)
            if item in self.fail:
                raise ValueError(f"bad item {item}")
            return item
        finally:
            self.in_flight -= 1


def _split_halves(numbers: list[int]) -> list[list[int]] | None:
    if len(numbers) < 2:
        return None
    pivot = sorted(numbers)[len(numbers) // 2]  # the median keeps both halves non-empty
    return [[x for x in numbers if x < pivot], [x for x in numbers if x >= pivot]]


def _concat(_task: Any, parts: list[list[int]]) -> list[int]:
    return [x for part in parts for x in part]


# -- arguments -----------------------------------------------------------------------------


async def _echo(x: Any) -> Any:
    return x


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: create_fan_out_graph(_echo, limits={"max_concurrent": 2}), "limits must be"),
        (lambda: create_fan_out_graph(_echo, retries=3), "unknown option(s) ['retries']"),
        (lambda: create_fan_out_graph(_echo, samples=0), "samples must be an int >= 1"),
        (lambda: create_fan_out_graph([]), "at least one agent"),
        (lambda: create_fan_out_graph(object()), "cannot use object as a sub-agent"),
        (
            lambda: create_fan_out_graph([_echo, SubAgent.of(_echo)]),
            "two agents are named '_echo'",
        ),
        (
            lambda: create_fan_out_graph(
                _echo, aggregate=SimulatedChatModel(), aggregate_prompt="{x}"
            ),
            "aggregate_prompt may use",
        ),
        (lambda: create_fan_out_graph(_echo, aggregate="nope"), "unknown aggregator 'nope'"),
        (lambda: create_fan_in_graph(_echo, aggregator=None), "needs an aggregator"),  # type: ignore[arg-type]
        (lambda: create_pipeline_graph([]), "non-empty list"),
        (lambda: create_pipeline_graph([_echo, []]), "stage 1 has no agents"),
        (lambda: create_pipeline_graph([parallel(_echo, _echo)]), "two branches named alike"),
        (
            lambda: create_tree_graph(_echo, split=_split_halves, combine=_concat, max_depth=-1),
            "max_depth must be an int >= 0",
        ),
        (lambda: create_tree_graph(_echo, split=42, combine=_concat), "split must be a function"),
        (
            lambda: create_pipeline_graph(
                [_echo], limits=DispatchResourceLimits(min_success_count=1)
            ),
            "min_success_count does not apply to a pipeline graph",
        ),
    ],
)
def test_bad_arguments_are_rejected_up_front(build: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        build()
    assert message in str(caught.value)


def test_factories_return_uncompiled_graphs() -> None:
    graphs = [
        create_fan_out_graph(_echo),
        create_fan_in_graph(_echo, aggregator=collect_all()),
        create_pipeline_graph([_echo, [_echo, SubAgent.of(_echo, name="other")]]),
        create_tree_graph(_echo, split=_split_halves, combine=_concat),
    ]
    assert all(isinstance(g, StateGraph) for g in graphs)


# -- fan-out -------------------------------------------------------------------------------


async def test_fan_out_end_to_end_with_a_simulated_model() -> None:
    model = SimulatedChatModel(choices=["spam", "ham"], seed=3)
    graph = create_fan_out_graph(
        model,
        template="Classify: {text}",
        aggregate=majority_vote(early=None, group_by=None),  # one vote across the items
        limits=UNPRICED,
    ).compile()
    texts = [f"message {i}" for i in range(12)]

    out = await graph.ainvoke({"items": [{"text": t} for t in texts]})

    assert set(out) == {"results", "aggregate", "aggregate_result", "report"}
    assert [r["index"] for r in out["results"]] == list(range(12))
    assert all(r["status"] == "ok" for r in out["results"])
    answers = [r["output"].text for r in out["results"]]
    assert out["aggregate"].winner == max(set(answers), key=answers.count)
    assert out["report"]["inputs"] == out["report"]["succeeded"] == 12
    assert model.calls == 12
    assert graph_runs._RUNS == {}  # the run's state was dropped at the end


async def test_items_go_round_robin_and_tasks_name_their_agent() -> None:
    async def upper(x: str) -> str:
        return x.upper()

    async def lower(x: str) -> str:
        return x.lower()

    graph = create_fan_out_graph([upper, lower]).compile()
    out = await graph.ainvoke({"items": ["Ab", "Cd", "Ef"]})
    assert [r["output"] for r in out["results"]] == ["AB", "cd", "EF"]

    out = await graph.ainvoke(
        {"tasks": [{"agent": "lower", "input": "Xy"}, {"agent": "upper", "input": "z"}]}
    )
    assert [(r["agent"], r["output"]) for r in out["results"]] == [("lower", "xy"), ("upper", "Z")]


async def test_bad_input_is_refused_before_any_call() -> None:
    agent = scripted_agent(str, cycle=True)
    graph = create_fan_out_graph(agent, template="Say {word}").compile()
    with pytest.raises(InvalidInputError) as caught:
        await graph.ainvoke({"items": [{"word": "a"}, {"other": 1}, "text"]})
    assert caught.value.indices == (1, 2)
    with pytest.raises(InvalidInputError, match="unknown agent 'ghost'"):
        await graph.ainvoke({"tasks": [{"agent": "ghost", "input": 1}]})
    with pytest.raises(InvalidInputError, match="either 'items' or 'tasks'"):
        await graph.ainvoke({"items": [], "tasks": []})
    assert agent.calls == 0


async def test_a_failing_branch_does_not_cancel_its_siblings() -> None:
    gauge = Gauge(want=6, fail={2})
    graph = create_fan_out_graph(gauge).compile()

    out = await graph.ainvoke({"items": list(range(6))})

    statuses = [r["status"] for r in out["results"]]
    assert statuses == ["ok", "ok", "error", "ok", "ok", "ok"]
    assert gauge.peak == 6  # all six were in flight together when item 2 failed
    failed = as_dispatch_result(out).results[2]
    assert isinstance(failed.error, AgentError)
    assert failed.error.cause_type == "ValueError"
    assert str(failed.error) == "agent 'gauge' raised ValueError: bad item 2"


async def test_samples_are_distinct_calls_for_a_vote() -> None:
    model = SimulatedChatModel(choices=["yes", "no"], seed=1)
    graph = create_fan_out_graph(model, samples=5, aggregate=majority_vote(), limits=UNPRICED)
    out = await graph.compile().ainvoke({"items": ["Is it?"]})
    assert [(r["index"], r["sample"]) for r in out["results"]] == [(s, s) for s in range(5)]
    assert model.calls == 5
    (vote,) = out["aggregate"]  # one item, its 5 samples: one vote
    assert vote.voters == 5 and vote.question == 0


async def test_progress_events_and_updates_stream() -> None:
    gauge = Gauge(want=1, fail={3})
    model = SimulatedChatModel(usage_override=(100, 10), max_tokens=50)

    async def priced(item: int, config: RunnableConfig) -> int:
        await model.ainvoke(f"item {item}", config)
        return await gauge(item)

    agent = SubAgent.of(priced, name="priced", model="simulated-small", max_output_tokens=50)
    prices = {"simulated-small": Price(input_per_mtok=1.0, output_per_mtok=2.0)}
    graph = create_fan_out_graph(agent, prices=prices).compile()
    events: list[dict[str, Any]] = []
    nodes: list[str] = []

    async for mode, chunk in graph.astream(
        {"items": list(range(5))}, stream_mode=["custom", "updates"]
    ):
        if mode == "custom":
            events.append(chunk)
        else:
            nodes.extend(chunk)

    assert [e["done"] for e in events] == [1, 2, 3, 4, 5]
    assert {e["event"] for e in events} == {"item_done"}
    assert {e["total"] for e in events} == {5}
    assert sorted(e["index"] for e in events) == list(range(5))
    assert [e["status"] for e in events if e["index"] == 3] == ["error"]
    per_call = (100 * 1.0 + 10 * 2.0) / 1e6
    assert [e["cost_usd_so_far"] for e in events] == pytest.approx(
        [per_call * n for n in range(1, 6)]
    )
    assert nodes.count("call_agent") == 5
    assert nodes[0] == "prepare" and nodes[-1] == "collect"


class _Runs(BaseCallbackHandler):
    def __init__(self) -> None:
        self.chat_runs: list[tuple[str | None, list[str], dict[str, Any]]] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.chat_runs.append(
            (kwargs.get("name"), kwargs.get("tags") or [], kwargs.get("metadata") or {})
        )


async def test_config_reaches_each_sub_agent_and_each_call_is_one_named_run() -> None:
    seen: list[RunnableConfig] = []

    async def inspect(item: int, config: RunnableConfig) -> int:
        seen.append(config)
        return item

    handler = _Runs()
    config: RunnableConfig = {"callbacks": [handler], "tags": ["batch-7"], "metadata": {"job": 42}}
    classifier = SubAgent.of(SimulatedChatModel(), name="classifier")
    await create_fan_out_graph(inspect).compile().ainvoke({"items": [0, 1]}, config)
    await (
        create_fan_out_graph(classifier, limits=UNPRICED)
        .compile()
        .ainvoke({"items": ["a", "b", "c"]}, config)
    )

    assert len(seen) == 2
    assert all("batch-7" in c["tags"] and c["metadata"]["job"] == 42 for c in seen)
    assert sorted(c["metadata"]["fanout_index"] for c in seen) == [0, 1]
    assert [name for name, _, _ in handler.chat_runs] == ["classifier"] * 3
    assert all("batch-7" in tags and meta["job"] == 42 for _, tags, meta in handler.chat_runs)


async def test_deadline_cancels_calls_in_flight_into_typed_results() -> None:
    async def hang(item: int) -> int:
        await asyncio.Event().wait()
        return item

    limits = DispatchResourceLimits(max_total_duration_s=0.05, max_concurrent=2)
    out = (
        await create_fan_out_graph(hang, limits=limits).compile().ainvoke({"items": list(range(4))})
    )

    results = as_dispatch_result(out).results
    assert {r.status for r in results} == {Status.CANCELLED}
    started = sorted(r.error.started for r in results if isinstance(r.error, CallCancelled))
    assert started == [False, False, True, True]
    assert "deadline of 0.05 s passed" in out["report"]["stop_reason"]


async def test_failure_rate_gate_stops_starting_new_calls() -> None:
    agent = scripted_agent(lambda x: ValueError("always"))
    limits = DispatchResourceLimits(
        max_concurrent=1, max_failure_rate=0.5, failure_rate_min_sample=2
    )
    out = (
        await create_fan_out_graph(agent, limits=limits)
        .compile()
        .ainvoke({"items": list(range(6))})
    )
    assert agent.calls == 2
    kinds = [r["error_kind"] for r in out["results"]]
    assert kinds.count("agent_error") == 2 and kinds.count("cancelled") == 4
    assert out["report"]["stop_reason"].startswith("failure rate 100%")


async def test_min_success_count_fails_the_run() -> None:
    agent = scripted_agent(lambda x: ValueError("no") if x else x)
    limits = DispatchResourceLimits(min_success_count=2)
    with pytest.raises(DispatchFailed, match="1 successes < min_success_count=2"):
        await create_fan_out_graph(agent, limits=limits).compile().ainvoke({"items": [0, 1, 2]})
    assert graph_runs._RUNS == {}


# -- records -------------------------------------------------------------------------------


def test_records_keep_typed_errors_through_the_checkpoint_serializer() -> None:
    budget = BudgetExceeded(
        agent="a", spent_usd=0.4, reserved_usd=0.05, estimate_usd=0.1, limit_usd=0.5
    )
    exhausted = RetriesExhausted(
        agent="b",
        attempts=3,
        last_error=AgentError(agent="b", cause_type="RateLimitError", detail="429", retryable=True),
    )
    results = [
        SubAgentResult.from_error(index=0, agent="a", error=budget, estimated_cost_usd=0.1),
        SubAgentResult.from_error(index=1, agent="b", error=exhausted, cost_usd=0.02),
        SubAgentResult(index=2, agent="c", status=Status.OK, output={"x": [1, 2]}, flags=("f",)),
    ]
    serde = JsonPlusSerializer()
    records = serde.loads_typed(serde.dumps_typed([result_to_record(r) for r in results]))

    back = [result_from_record(r) for r in records]
    assert isinstance(back[0].error, BudgetExceeded)
    assert back[0].error.limit_usd == 0.5 and str(back[0].error) == str(budget)
    assert isinstance(back[1].error, RetriesExhausted)
    assert isinstance(back[1].error.last_error, AgentError)
    assert back[1].error.last_error.retryable is True
    assert back[1].cost_usd == 0.02
    assert back[2].output == {"x": [1, 2]} and back[2].flags == ("f",)


def test_a_record_naming_a_foreign_class_is_not_imported() -> None:
    record = result_to_record(
        SubAgentResult.from_error(
            index=0, agent="a", error=AgentError(agent="a", cause_type="X", detail="d")
        )
    )
    record["error_data"] = {"module": "os", "type": "system", "args": ["echo hi"]}
    error = result_from_record(record).error
    assert type(error).__name__ == "CallError" and str(error) == "agent 'a' raised X: d"


# -- nesting -------------------------------------------------------------------------------


async def test_nested_fan_out_inside_fan_out_peaks_at_the_global_cap() -> None:
    gauge = Gauge(want=5)
    inner = create_fan_out_graph(gauge).compile()  # its own default cap (10) is not used
    outer = create_fan_out_graph(
        SubAgent.of(inner, name="inner"), limits=DispatchResourceLimits(max_concurrent=5)
    ).compile()

    async with asyncio.timeout(30):
        out = await outer.ainvoke({"items": [{"items": list(range(10))} for _ in range(10)]})

    assert gauge.calls == 100
    assert gauge.peak == 5
    assert all(r["status"] == "ok" for r in out["results"])
    assert all(r["output"]["report"]["succeeded"] == 10 for r in out["results"])


async def test_graph_inside_a_dispatch_shares_its_cap_and_budget() -> None:
    gauge = Gauge(want=3)
    inner = SubAgent.of(create_fan_out_graph(gauge).compile(), name="inner")

    async with asyncio.timeout(30):
        result = await dispatch_agents(
            None,
            [{"items": list(range(4))} for _ in range(6)],
            agent=inner,
            limits=DispatchResourceLimits(max_concurrent=3),
        )

    assert result.report.succeeded == 6
    assert gauge.calls == 24 and gauge.peak == 3


async def test_nesting_deeper_than_the_depth_limit_is_refused() -> None:
    agent = scripted_agent(str, cycle=True)
    inner = SubAgent.of(create_fan_out_graph(agent).compile(), name="inner")
    outer = create_fan_out_graph(inner, limits=DispatchResourceLimits(max_dispatch_depth=1))
    out = await outer.compile().ainvoke({"items": [{"items": [1, 2]}]})
    inner_results = as_dispatch_result(out["results"][0]["output"]).results
    assert agent.calls == 0
    assert all(isinstance(r.error, DepthLimitExceeded) for r in inner_results)
    assert inner_results[0].error.depth == 2


async def test_a_fan_out_graph_is_a_node_of_a_users_graph() -> None:
    class Parent(TypedDict, total=False):
        topic: str
        items: list[Any]
        results: list[dict[str, Any]]
        aggregate: Any
        report: dict[str, Any]
        summary: str

    def plan(state: Parent) -> dict[str, Any]:
        return {"items": [f"{state['topic']} {i}" for i in range(3)]}

    def summarize(state: Parent) -> dict[str, Any]:
        return {"summary": f"{state['report']['succeeded']} ok: {', '.join(state['aggregate'])}"}

    async def shout(text: str) -> str:
        return text.upper()

    parent = StateGraph(Parent)
    parent.add_node("plan", plan)
    parent.add_node("fan_out", create_fan_out_graph(shout, aggregate=collect_all()).compile())
    parent.add_node("summarize", summarize)
    parent.add_edge(START, "plan")
    parent.add_edge("plan", "fan_out")
    parent.add_edge("fan_out", "summarize")
    parent.add_edge("summarize", END)

    out = await parent.compile().ainvoke({"topic": "cats"})
    assert out["summary"] == "3 ok: CATS 0, CATS 1, CATS 2"


# -- durability ----------------------------------------------------------------------------


class _Crash(BaseException):
    """Kills a run the way a dying process would: nothing in the package catches it."""


async def test_a_run_resumed_in_a_new_process_keeps_its_spent_budget() -> None:
    model = SimulatedChatModel(usage_override=(100, 10), max_tokens=100)
    calls: list[int] = []
    crash_at: int | None = 6

    async def worker(item: int, config: RunnableConfig) -> int:
        if crash_at is not None and len(calls) + 1 == crash_at:
            raise _Crash
        await model.ainvoke(f"item {item}", config)
        calls.append(item)
        return item

    agent = SubAgent.of(worker, name="worker", model="simulated-small", max_output_tokens=100)
    prices = {"simulated-small": Price(input_per_mtok=1.0, output_per_mtok=2.0)}
    probe = await dispatch_agents(
        None, [0], agent=agent, prices=prices, limits=DispatchResourceLimits(max_total_cost_usd=1)
    )
    cost, estimate = probe[0].cost_usd, probe[0].estimated_cost_usd
    assert 0 < cost < estimate
    calls.clear()
    # Room for 8 calls in all: a resumed run that forgot the first 5 would make 10.
    limits = DispatchResourceLimits(max_concurrent=1, max_total_cost_usd=7 * cost + estimate)
    graph = create_fan_out_graph(agent, limits=limits, prices=prices).compile(
        checkpointer=InMemorySaver()
    )
    config: RunnableConfig = {"configurable": {"thread_id": "resume-budget"}}

    with pytest.raises(_Crash):
        await graph.ainvoke({"items": list(range(10))}, config, durability="sync")
    assert len(calls) == 5
    graph_runs._RUNS.clear()  # what a new process would see
    crash_at = None
    out = await graph.ainvoke(None, config, durability="sync")

    result = as_dispatch_result(out)
    assert len(calls) == 8 and len(set(calls)) == 8  # no finished item was called again
    assert sum(r.ok for r in result) == 8
    assert [r.error_kind for r in result if not r.ok] == ["budget_exceeded"] * 2
    assert result.report.total_spent_usd == pytest.approx(8 * cost)
    assert result.report.total_spent_usd <= limits.max_total_cost_usd


def _count_lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _saved_items(db: Path, thread: str) -> int:
    """Finished items the checkpoint holds as pending writes of the fan-out superstep."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            saved = SqliteSaver(conn).get_tuple({"configurable": {"thread_id": thread}})
    except sqlite3.OperationalError:  # the child holds a write lock right now
        return 0
    if saved is None:
        return 0
    return sum(1 for _, channel, _ in saved.pending_writes or () if channel == "finished")


def test_crash_and_resume_pays_for_each_item_once(tmp_path: Path) -> None:
    db, calls, thread, stall = tmp_path / "graph.db", tmp_path / "calls.txt", "crash-1", 25
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(calls), thread, "first", str(stall)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        # Kill only once the 25 finished items are both paid (lines) and saved: later
        # calls hang, so nothing can finish between this check and the kill.
        while not (_count_lines(calls) >= stall and _saved_items(db, thread) >= stall):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child made no progress"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert _count_lines(calls) == stall >= 20

    resumed = subprocess.run(
        [sys.executable, str(CHILD), str(db), str(calls), thread, "resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])

    paid = [int(line) for line in calls.read_text().splitlines()]
    assert len(paid) == 50 and sorted(paid) == list(range(50))
    assert summary["ok"] == 50
    assert summary["indices"] == list(range(50))
    assert summary["outputs"] == [2 * i for i in range(50)]
    per_call = (100 * 1.0 + 10 * 2.0) / 1e6
    assert summary["total_spent_usd"] == pytest.approx(50 * per_call)  # seeded + new
    assert summary["spent_usd"] == pytest.approx(50 * per_call)
    assert summary["calls_started"] == 50


# -- tree ----------------------------------------------------------------------------------


def _shuffled(n: int, seed: int = 7) -> list[int]:
    numbers = list(range(n))
    random.Random(seed).shuffle(numbers)
    return numbers


async def test_quicksort_tree_sorts_1000_numbers_with_max_depth_honoured() -> None:
    leaves: list[list[int]] = []

    def sort_leaf(numbers: list[int]) -> list[int]:
        leaves.append(numbers)
        return sorted(numbers)

    numbers = _shuffled(1000)
    graph = create_tree_graph(sort_leaf, split=_split_halves, combine=_concat, max_depth=3)

    out = await graph.compile().ainvoke({"task": numbers})

    assert out["status"] == "ok"
    assert out["result"] == sorted(numbers)
    assert len(leaves) == 2**3 and [len(leaf) for leaf in leaves] == [125] * 8
    assert out["leaves"] == 8 and out["depth_reached"] == 3
    assert out["report"]["calls_started"] == 8
    assert out["report"]["succeeded"] == 8


@pytest.mark.parametrize(("max_depth", "leaves"), [(0, 1), (1, 2), (5, 32)])
async def test_tree_depth_bounds_the_number_of_leaves(max_depth: int, leaves: int) -> None:
    agent = scripted_agent(sorted)
    graph = create_tree_graph(agent, split=_split_halves, combine=_concat, max_depth=max_depth)
    out = await graph.compile().ainvoke({"task": _shuffled(200)})
    assert out["result"] == list(range(200))
    assert agent.calls == out["leaves"] == leaves


async def test_tree_combine_as_an_agent_is_counted_as_a_call() -> None:
    combine = SubAgent.of(lambda payload: _concat(None, payload["parts"]), name="merge")
    graph = create_tree_graph(sorted, split=_split_halves, combine=combine, max_depth=2)
    out = await graph.compile().ainvoke({"task": _shuffled(64)})
    assert out["result"] == list(range(64))
    assert out["report"]["calls_started"] == 4 + 3  # leaves + internal nodes


async def test_a_failed_leaf_fails_the_tree_but_its_siblings_finish() -> None:
    gauge = Gauge(want=8)
    gauge.fail = {tuple(range(250, 375))}

    async def leaf(numbers: list[int]) -> list[int]:
        return list(await gauge(tuple(sorted(numbers))))

    graph = create_tree_graph(leaf, split=_split_halves, combine=_concat, max_depth=3)
    out = await graph.compile().ainvoke({"task": _shuffled(1000)})

    assert out["status"] == "error" and out["result"] is None
    assert gauge.calls == 8 and gauge.peak == 8
    assert out["error"]["error_kind"] == "agent_error"
    assert out["report"]["succeeded"] == 7 and out["report"]["failed"] == 1


async def test_tree_shares_one_concurrency_cap() -> None:
    gauge = Gauge(want=2)

    async def leaf(numbers: list[int]) -> list[int]:
        await gauge(len(numbers))
        return sorted(numbers)

    graph = create_tree_graph(
        leaf,
        split=_split_halves,
        combine=_concat,
        max_depth=4,
        limits=DispatchResourceLimits(max_concurrent=2),
    )
    out = await graph.compile().ainvoke({"task": _shuffled(160)})
    assert out["result"] == list(range(160))
    assert gauge.calls == 16 and gauge.peak == 2


async def test_a_split_agent_must_return_subtasks() -> None:
    graph = create_tree_graph(
        sorted, split=SubAgent.of(lambda t: "not a list", name="planner"), combine=_concat
    )
    out = await graph.compile().ainvoke({"task": [3, 1, 2]})
    assert out["status"] == "error"
    error = result_from_record(out["error"]).error
    assert isinstance(error, AgentError) and error.cause_type == "InvalidOutput"


# -- pipeline ------------------------------------------------------------------------------


def _enricher(name: str, fail: bool = False) -> Any:
    agent = scripted_agent(
        lambda x: RuntimeError(f"{name} down") if fail else f"{name}:{x['id']}", name=name
    )
    return agent


async def test_pipeline_validates_enriches_in_parallel_and_aggregates() -> None:
    validate = scripted_agent(lambda x: {"id": x.strip()}, name="validate")
    geo, company, news = _enricher("geo"), _enricher("company", fail=True), _enricher("news")
    seen: list[Any] = []

    def merge(results: Sequence[SubAgentResult]) -> dict[str, Any]:
        seen.extend(results)
        return {r.agent: r.output for r in results if r.ok}

    aggregate = scripted_agent(lambda enriched: sorted(enriched.values()), name="aggregate")
    graph = create_pipeline_graph(
        [validate, parallel(geo, company, news, combine=merge), aggregate]
    )

    out = await graph.compile().ainvoke({"input": " acme "})

    assert out["status"] == "ok" and out["error"] is None
    assert out["output"] == ["geo:acme", "news:acme"]
    assert [(r["stage"], r["branch"], r["status"]) for r in out["results"]] == [
        (0, None, "ok"),
        (1, 0, "ok"),
        (1, 1, "error"),
        (1, 2, "ok"),
        (2, None, "ok"),
    ]
    assert [r.agent for r in seen] == ["geo", "company", "news"]  # failure included
    assert isinstance(seen[1].error, AgentError) and seen[1].error.detail == "company down"
    assert (geo.calls, company.calls, news.calls, aggregate.calls) == (1, 1, 1, 1)
    assert out["report"]["succeeded"] == 4 and out["report"]["failed"] == 1


async def test_a_failed_stage_ends_the_pipeline_with_its_typed_error() -> None:
    validate = scripted_agent(lambda x: ValueError("not a company"), name="validate")
    geo, news = _enricher("geo"), _enricher("news")
    writer = scripted_agent(str, name="writer")
    graph = create_pipeline_graph([validate, [geo, news], writer]).compile()

    out = await graph.ainvoke({"input": "??"})

    assert out["status"] == "error" and out["output"] is None
    assert out["error"]["agent"] == "validate" and out["error"]["error_kind"] == "agent_error"
    assert (geo.calls, news.calls, writer.calls) == (0, 0, 0)
    assert len(out["results"]) == 1


async def test_a_branch_point_fails_only_if_every_branch_fails() -> None:
    down1, down2 = _enricher("geo", fail=True), _enricher("news", fail=True)
    writer = scripted_agent(str, name="writer")
    out = (
        await create_pipeline_graph([[down1, down2], writer])
        .compile()
        .ainvoke({"input": {"id": 1}})
    )
    assert out["status"] == "error" and out["error"]["agent"] == "geo"
    assert writer.calls == 0

    up = _enricher("company")
    out = await create_pipeline_graph([[down1, up], writer]).compile().ainvoke({"input": {"id": 1}})
    assert out["status"] == "ok" and out["output"] == "{'company': 'company:1'}"


async def test_a_chat_model_stage_passes_its_text_on() -> None:
    model = SimulatedChatModel(responses=["  Acme Corp  "])
    received: list[Any] = []

    async def tidy(text: str) -> str:
        received.append(text)
        return text.strip()

    out = (
        await create_pipeline_graph([model, tidy], limits=UNPRICED)
        .compile()
        .ainvoke({"input": "who?"})
    )
    assert received == ["  Acme Corp  "] and out["output"] == "Acme Corp"


async def test_a_resumed_pipeline_calls_only_the_unfinished_branches() -> None:
    validate = scripted_agent(lambda x: {"id": x}, name="validate")
    geo, news = _enricher("geo"), _enricher("news")
    crash = True

    async def flaky(x: Any) -> str:
        if crash:
            raise _Crash
        return f"company:{x['id']}"

    writer = scripted_agent(lambda enriched: sorted(enriched), name="writer")
    stages = [validate, [geo, SubAgent.of(flaky, name="company"), news], writer]
    graph = create_pipeline_graph(stages).compile(checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "pipeline-resume"}}

    with pytest.raises(_Crash):
        await graph.ainvoke({"input": 7}, config, durability="sync")
    graph_runs._RUNS.clear()  # what a new process would see
    crash = False
    out = await graph.ainvoke(None, config, durability="sync")

    assert out["status"] == "ok" and out["output"] == ["company", "geo", "news"]
    assert (validate.calls, geo.calls, news.calls, writer.calls) == (1, 1, 1, 1)
    assert [r["agent"] for r in out["results"]] == ["validate", "geo", "company", "news", "writer"]


async def test_a_chat_model_stage_gets_structured_values_as_json() -> None:
    model = SimulatedChatModel(answer=lambda prompt, rng: f"got {prompt}")
    validate = scripted_agent(lambda x: {"id": x}, name="validate")
    out = (
        await create_pipeline_graph([validate, model], limits=UNPRICED)
        .compile()
        .ainvoke({"input": 3})
    )
    assert out["output"].text == 'got {"id": 3}'


# -- fan-in --------------------------------------------------------------------------------


async def test_fan_in_runs_every_collector_on_every_source_then_aggregates() -> None:
    web, docs = (
        scripted_agent(lambda s: f"web:{s}", name="web"),
        scripted_agent(lambda s: f"docs:{s}", name="docs"),
    )
    graph = create_fan_in_graph([web, docs], aggregator=collect_all()).compile()
    out = await graph.ainvoke({"sources": ["a", "b"]})
    assert out["aggregate"] == ["web:a", "docs:a", "web:b", "docs:b"]
    assert out["aggregate_result"] is None


async def test_fan_in_with_an_agent_aggregator() -> None:
    web = scripted_agent(lambda s: f"web says {s}", name="web")
    broken = scripted_agent(lambda s: RuntimeError("offline"), name="news")
    writer = SimulatedChatModel(answer=lambda prompt, rng: prompt.upper())
    graph = create_fan_in_graph([web, broken], aggregator=writer, limits=UNPRICED).compile()

    out = await graph.ainvoke({"sources": ["tides"]})

    text = out["aggregate"].text
    assert "[1] WEB: WEB SAYS TIDES" in text and "[2] NEWS: (FAILED: AGENT_ERROR)" in text
    assert out["aggregate_result"]["status"] == "ok"
    assert out["report"]["calls_started"] == 3  # two collectors and the aggregator


async def test_a_failing_aggregator_agent_is_a_typed_result() -> None:
    web = scripted_agent(lambda s: s, name="web")
    writer = SubAgent.of(scripted_agent(lambda p: PermissionError("no"), name="writer"))
    out = await create_fan_in_graph(web, aggregator=writer).compile().ainvoke({"sources": ["x"]})
    assert out["aggregate"] is None
    assert result_from_record(out["aggregate_result"]).error_kind == "agent_error"


def test_messages_in_a_join_become_their_text() -> None:
    from langchain_core.messages import AIMessage

    from langgraph_fanout.core.text import as_text as message_text

    assert message_text({"geo": AIMessage("paris"), "n": 1}) == '{"geo": "paris", "n": 1}'


async def test_graph_calls_honour_the_per_call_timeout() -> None:
    from langgraph_fanout import CallTimeout, DispatchResourceLimits
    from langgraph_fanout.guards.recovery import ErrorRecoveryPolicy, ErrorStrategy

    async def hang(prompt: Any) -> Any:
        await asyncio.Event().wait()

    graph = create_fan_out_graph(
        hang,
        limits=DispatchResourceLimits(max_agent_duration_s=0.01),
        policy=ErrorRecoveryPolicy(strategy=ErrorStrategy.FAIL),
    ).compile()
    out = await graph.ainvoke({"items": ["a", "b"]})
    results = as_dispatch_result(out)
    assert [r.error.kind for r in results if r.error] == ["timeout", "timeout"]
    assert all(isinstance(r.error, CallTimeout) for r in results)


def test_abandoned_graph_runs_are_dropped_after_an_idle_hour() -> None:
    # A run whose graph stops between two nodes (here: paused before its calls and never
    # resumed) is not seen ending by any of its nodes; the idle sweep is the fallback.
    import fakeclock

    graph = create_fan_out_graph(lambda p: p).compile(
        checkpointer=InMemorySaver(), interrupt_before=["call_agent"]
    )

    async def scenario() -> tuple[int, int]:
        config: RunnableConfig = {"configurable": {"thread_id": "abandoned"}}
        await graph.ainvoke({"items": ["a", "b"]}, config)
        left_behind = len(graph_runs._RUNS)
        await asyncio.sleep(graph_runs.IDLE_RUN_S + 1)
        await create_fan_out_graph(lambda p: p).compile().ainvoke({"items": ["x"]})
        return left_behind, len(graph_runs._RUNS)

    graph_runs._RUNS.clear()
    left_behind, after = fakeclock.run(scenario())
    assert left_behind == 1  # the paused run stays registered for its resume...
    assert after == 0  # ...and the next run opened after an idle hour drops it


def test_records_written_by_0_1_0_still_load_with_their_typed_errors() -> None:
    # Written before the layer folders, when records named an error by its module path.
    data = json.loads((Path(__file__).parent.parent / "data" / "records_0_1_0.json").read_text())
    results = [result_from_record(r) for r in data["records"]]
    for expected in data["expect"]:
        error = results[expected["index"]].error
        assert type(error).__name__ == expected["type"]
        assert error is not None and error.kind == expected["kind"]
        assert str(error) == expected["message"]
    retried = results[1].error
    assert isinstance(retried, RetriesExhausted) and retried.last_error.kind == "timeout"
    assert results[-1].ok and results[-1].output == "fine" and results[-1].cost_usd == 0.001


def test_records_name_errors_by_kind_not_by_module() -> None:
    error = RetriesExhausted(
        agent="a",
        attempts=2,
        last_error=BudgetExceeded(
            agent="a", spent_usd=0.4, reserved_usd=0.0, estimate_usd=0.2, limit_usd=0.5
        ),
    )
    record = result_to_record(SubAgentResult.from_error(index=0, agent="a", error=error))
    text = json.dumps(record)
    assert "module" not in record["error_data"] and "langgraph_fanout" not in text
    assert record["error_data"]["kind"] == "retries_exhausted"
    back = result_from_record(json.loads(text)).error
    assert isinstance(back, RetriesExhausted) and isinstance(back.last_error, BudgetExceeded)
    assert str(back) == str(error)


async def test_an_interrupt_inside_a_sub_agent_pauses_the_graph_and_resumes_it() -> None:
    from langgraph.types import Command, interrupt

    from langgraph_fanout import CostLedger, SubAgent

    asked: list[str] = []

    async def reviewer(prompt: Any) -> Any:
        asked.append(prompt)
        return f"{prompt}:{interrupt(f'approve {prompt}?')}"

    ledger = CostLedger(limit_usd=10.0)
    agent = SubAgent.of(reviewer, name="reviewer", cost_per_call_usd=1.0)
    graph = create_fan_out_graph(agent, ledger=ledger).compile(checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "review"}}
    paused = await graph.ainvoke({"items": ["a"]}, config)
    assert [i.value for i in paused["__interrupt__"]] == ["approve a?"]
    assert ledger.snapshot().spent_usd == 0.0  # paused before it answered: nothing billed
    done = await graph.ainvoke(Command(resume="yes"), config)
    assert [(r["status"], r["output"]) for r in done["results"]] == [("ok", "a:yes")]
    assert asked == ["a", "a"]  # LangGraph re-runs the node; interrupt() then returns
    assert ledger.snapshot().spent_usd == 1.0
