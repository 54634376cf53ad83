"""The engine's semantics: concurrency, laziness, deadlines, stops, modes, nesting, cancellation."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any

import pytest

from langgraph_fanout.core.results import Status
from langgraph_fanout.core.stopping import stop_after_failures, stop_after_successes
from langgraph_fanout.engine.agents import SubAgent
from langgraph_fanout.engine.dispatch import (
    Dispatcher,
    DispatchResult,
    dispatch_agents,
    dispatch_agents_sync,
)
from langgraph_fanout.engine.spec import DispatchMode
from langgraph_fanout.errors import (
    CallCancelled,
    CallTimeout,
    ConfigurationError,
    DepthLimitExceeded,
    DispatchFailed,
    InvalidInputError,
    RetriesExhausted,
    SyncInAsyncError,
)
from langgraph_fanout.guards.limits import DispatchResourceLimits
from langgraph_fanout.guards.recovery import ErrorRecoveryPolicy, ErrorStrategy


class Probe:
    """An async agent that counts calls in flight and can be held on an event."""

    def __init__(self, *, gate: asyncio.Event | None = None, fail: set[str] | None = None):
        self.gate = gate
        self.fail = fail or set()
        self.in_flight = 0
        self.peak = 0
        self.calls = 0

    async def __call__(self, prompt: str) -> str:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            else:
                for _ in range(3):
                    await asyncio.sleep(0)
            if prompt in self.fail:
                raise ValueError(f"bad {prompt}")
            return prompt.upper()
        finally:
            self.in_flight -= 1


def items(n: int) -> list[dict[str, Any]]:
    return [{"n": i} for i in range(n)]


async def test_results_in_input_order_and_sequence_behaviour() -> None:
    probe = Probe()
    result = await dispatch_agents("item {n}", items(25), agent=probe)
    assert isinstance(result, DispatchResult)
    assert len(result) == 25
    assert [r.index for r in result] == list(range(25))
    assert result[3].output == "ITEM 3"
    assert result.outputs == [f"ITEM {i}" for i in range(25)]
    assert all(r.ok and r.status is Status.OK and r.attempts for r in result)
    assert result.report.inputs == 25 and result.report.succeeded == 25


async def test_max_concurrent_is_never_exceeded_and_is_used() -> None:
    probe = Probe()
    await dispatch_agents(
        "{n}", items(50), agent=probe, limits=DispatchResourceLimits(max_concurrent=7)
    )
    assert probe.calls == 50
    assert probe.peak == 7


async def test_tasks_are_created_lazily() -> None:
    """A long lazy stream never has more than max_concurrent call tasks alive."""
    peak_tasks = 0

    async def agent(prompt: Any) -> Any:
        nonlocal peak_tasks
        peak_tasks = max(peak_tasks, len(asyncio.all_tasks()))
        await asyncio.sleep(0)
        return prompt

    consumed = 0
    dispatcher = Dispatcher(agent, limits=DispatchResourceLimits(max_concurrent=4))
    async with aclosing(dispatcher.stream(None, iter(range(20_000)))) as stream:
        async for result in stream:
            assert result.ok
            consumed += 1
    assert consumed == 20_000
    # 4 call tasks + the test's own task + the stream's producer task.
    assert peak_tasks <= 4 + 2


async def test_empty_input_returns_empty_result() -> None:
    result = await dispatch_agents("x {n}", [], agent=Probe())
    assert len(result) == 0
    assert result.report.inputs == 0
    assert result.report.success_rate == 1.0


@pytest.mark.parametrize(
    ("template", "args", "indices", "fragment"),
    [
        ("a {n}", [{"n": 1}, {"m": 2}, {"n": 3}, 5], (1, 3), "missing field"),
        ("a {x.__class__}", [{"x": 1}], (), "not allowed"),
        ("a {x[0]}", [{"x": [1]}], (), "not allowed"),
        ("a {0}", [{"x": 1}], (), "not allowed"),
        ("a {x!r}", [{"x": 1}], (), "conversion"),
        ("a {x", [{"x": 1}], (), "brace"),
    ],
)
async def test_bad_input_raises_one_typed_error_and_calls_nothing(
    template: str, args: list[Any], indices: tuple[int, ...], fragment: str
) -> None:
    probe = Probe()
    with pytest.raises(InvalidInputError) as info:
        await dispatch_agents(template, args, agent=probe)
    assert info.value.indices == indices
    assert fragment in str(info.value)
    assert probe.calls == 0


async def test_braces_in_arguments_are_not_fields() -> None:
    seen: list[str] = []

    async def agent(prompt: str) -> str:
        seen.append(prompt)
        return prompt

    await dispatch_agents("### Task\n{text}", [{"text": "{secret} and {{x}}"}], agent=agent)
    assert seen == ["### Task\n{secret} and {{x}}"]


async def test_failures_are_results_in_partial_mode() -> None:
    probe = Probe(fail={"1", "4"})
    result = await dispatch_agents("{n}", items(6), agent=probe)
    assert [r.ok for r in result] == [True, False, True, True, False, True]
    bad = result[1]
    assert bad.status is Status.ERROR
    assert bad.error is not None and bad.error.kind == "agent_error"
    assert "ValueError" in str(bad.error)
    assert result.report.failures_by_kind == {"agent_error": 2}
    assert result.report.success_rate == pytest.approx(4 / 6)


async def test_per_attempt_timeout(fake_sleep: Any) -> None:
    gate = asyncio.Event()  # never set: the call hangs until its timeout
    result = await dispatch_agents(
        "{n}",
        items(3),
        agent=Probe(gate=gate),
        limits=DispatchResourceLimits(max_agent_duration_s=0.01),
        policy=ErrorRecoveryPolicy(max_retries=1, breaker=None),
        sleep=fake_sleep,
    )
    assert all(r.status is Status.ERROR for r in result)
    for r in result:
        # A timeout is transient: retried once, then reported with the last timeout.
        assert isinstance(r.error, RetriesExhausted)
        assert isinstance(r.error.last_error, CallTimeout)
        assert r.error.last_error.timeout_s == 0.01
        assert [a.error for a in r.attempts] == ["timeout", "timeout"]
    assert len(fake_sleep.waits) == 3


async def test_deadline_cancels_in_flight_and_ends_the_rest_as_cancelled() -> None:
    gate = asyncio.Event()
    probe = Probe(gate=gate)
    result = await dispatch_agents(
        "{n}",
        items(10),
        agent=probe,
        limits=DispatchResourceLimits(max_concurrent=3, max_total_duration_s=0.02),
    )
    assert len(result) == 10
    assert all(r.status is Status.CANCELLED for r in result)
    errors = [r.error for r in result]
    assert all(isinstance(e, CallCancelled) and "deadline" in e.reason for e in errors)
    started = [e.started for e in errors if isinstance(e, CallCancelled)]
    assert started.count(True) == 3 and started.count(False) == 7
    assert probe.in_flight == 0
    assert "deadline" in (result.report.stop_reason or "")


@pytest.mark.parametrize("cancel_in_flight", [True, False])
async def test_failure_rate_stop_keeps_partial_results(cancel_in_flight: bool) -> None:
    release = asyncio.Event()

    async def agent(prompt: str) -> str:
        if prompt.startswith("slow"):
            await release.wait()
            return prompt
        raise RuntimeError("down")

    args = (
        [{"p": "slow0"}]
        + [{"p": f"fail{i}"} for i in range(5)]
        + [{"p": f"x{i}"} for i in range(10)]
    )

    async def run() -> DispatchResult:
        return await dispatch_agents(
            "{p}",
            args,
            agent=agent,
            limits=DispatchResourceLimits(
                max_concurrent=2,
                max_failure_rate=0.5,
                failure_rate_min_sample=3,
                cancel_in_flight_on_failure_rate=cancel_in_flight,
            ),
        )

    task = asyncio.create_task(run())
    for _ in range(50):
        await asyncio.sleep(0)
    release.set()
    result = await task
    assert len(result) == 16
    assert result.report.stop_reason is not None and "failure rate" in result.report.stop_reason
    first = result[0]
    if cancel_in_flight:
        assert first.status is Status.CANCELLED and isinstance(first.error, CallCancelled)
        assert first.error.started
    else:
        assert first.ok
    assert sum(r.status is Status.ERROR for r in result) == 3
    not_started = [r for r in result if isinstance(r.error, CallCancelled) and not r.error.started]
    assert len(not_started) == 12
    assert all(
        "failure rate" in r.error.reason for r in not_started if isinstance(r.error, CallCancelled)
    )


async def test_failure_rate_counts_timeouts_like_exceptions() -> None:
    gate = asyncio.Event()
    result = await dispatch_agents(
        "{n}",
        items(20),
        agent=Probe(gate=gate),
        limits=DispatchResourceLimits(
            max_concurrent=2,
            max_failure_rate=0.2,
            failure_rate_min_sample=2,
            max_agent_duration_s=0.005,
        ),
        policy=ErrorRecoveryPolicy(strategy=ErrorStrategy.FAIL),
    )
    kinds = [r.error.kind for r in result if r.error is not None]
    assert kinds.count("timeout") == 2
    assert kinds.count("cancelled") == 18


async def test_all_or_nothing_raises_with_every_result() -> None:
    probe = Probe(fail={"2"})
    with pytest.raises(DispatchFailed) as info:
        await dispatch_agents(
            "{n}",
            items(30),
            agent=probe,
            mode="all_or_nothing",
            limits=DispatchResourceLimits(max_concurrent=2),
        )
    results = info.value.results
    assert len(results) == 30
    assert results[2].status is Status.ERROR
    assert any(r.status is Status.CANCELLED for r in results)
    assert "input 2 failed" in info.value.reason
    assert probe.calls < 30


async def test_min_success_count() -> None:
    probe = Probe(fail={str(i) for i in range(8)})
    with pytest.raises(DispatchFailed) as info:
        await dispatch_agents(
            "{n}",
            items(10),
            agent=probe,
            limits=DispatchResourceLimits(min_success_count=3, max_concurrent=1),
        )
    assert "min_success_count=3" in str(info.value)
    assert len(info.value.results) == 10
    # A new name: the first dispatch's failures opened the process-wide breaker of "Probe".
    ok = await dispatch_agents(
        "{n}",
        items(10),
        agent=SubAgent.of(Probe(fail={"0"}), name="healthy"),
        limits=DispatchResourceLimits(min_success_count=9),
    )
    assert ok.report.succeeded == 9


async def test_stop_conditions_compose_and_cancel_the_rest() -> None:
    probe = Probe(fail={"0", "1"})
    result = await dispatch_agents(
        "{n}",
        items(40),
        agent=probe,
        stop=stop_after_successes(5) | stop_after_failures(10),
        limits=DispatchResourceLimits(max_concurrent=3),
    )
    assert result.report.succeeded == 5
    assert result.report.stop_reason == "5 success(es) reached"
    assert result.report.succeeded + result.report.failed + result.report.cancelled == 40
    assert probe.calls < 40


async def test_heterogeneous_tasks() -> None:
    from langgraph_fanout.engine.agents import SubAgent
    from langgraph_fanout.engine.call import Task

    async def upper(p: str) -> str:
        return p.upper()

    def reverse(p: str) -> str:  # sync callable: runs in a worker thread
        return p[::-1]

    a, b = SubAgent.of(upper), SubAgent.of(reverse)
    tasks = [Task(index=0, agent=a, prompt="ab"), Task(index=1, agent=b, prompt="ab")]
    result = await Dispatcher().run_tasks(tasks)
    assert result.outputs == ["AB", "ba"]
    assert [r.agent for r in result] == ["upper", "reverse"]
    with pytest.raises(ConfigurationError, match="indexed"):
        await Dispatcher().run_tasks([Task(index=1, agent=a, prompt="x")])


async def test_stream_yields_as_completed() -> None:
    order: list[int] = []
    gates = [asyncio.Event() for _ in range(3)]

    async def agent(i: int) -> int:
        await gates[i].wait()
        return i

    dispatcher = Dispatcher(agent, limits=DispatchResourceLimits(max_concurrent=3))

    async def consume() -> None:
        async for r in dispatcher.stream(None, [0, 1, 2]):
            order.append(r.output)

    task = asyncio.create_task(consume())
    for i in (2, 0, 1):
        gates[i].set()
        for _ in range(10):
            await asyncio.sleep(0)
    await task
    assert order == [2, 0, 1]


async def test_stream_bad_item_is_its_own_result() -> None:
    dispatcher = Dispatcher(Probe())
    results = [r async for r in dispatcher.stream("{n}", iter([{"n": 1}, {"m": 2}, {"n": 3}]))]
    by_index = {r.index: r for r in results}
    assert sorted(by_index) == [0, 1, 2]
    assert by_index[1].error is not None and by_index[1].error.kind == "invalid_item"
    assert by_index[0].ok and by_index[2].ok


async def test_nested_dispatch_shares_the_concurrency_cap() -> None:
    leaf = Probe()

    async def parent(prompt: str) -> list[Any]:
        inner = await dispatch_agents(
            "{n}", items(10), agent=leaf, limits=DispatchResourceLimits(max_concurrent=10)
        )
        return inner.outputs

    result = await dispatch_agents(
        "{n}", items(10), agent=parent, limits=DispatchResourceLimits(max_concurrent=5)
    )
    assert all(r.ok and len(r.output) == 10 for r in result)
    assert leaf.calls == 100
    assert leaf.peak == 5


async def test_nested_depth_is_tracked_and_limited() -> None:
    depth_results: list[Any] = []

    async def recurse(prompt: str) -> str:
        inner = await dispatch_agents(None, [prompt + "."], agent=recurse)
        depth_results.append(inner[0])
        return "x"

    result = await dispatch_agents(
        None, ["."], agent=recurse, limits=DispatchResourceLimits(max_dispatch_depth=3)
    )
    assert result[0].ok
    refused = [r for r in depth_results if not r.ok]
    assert len(refused) == 1
    assert isinstance(refused[0].error, DepthLimitExceeded)
    assert refused[0].error.depth == 4 and refused[0].error.limit == 3


async def test_max_total_agents_counts_nested_calls() -> None:
    leaf = Probe()

    async def parent(prompt: str) -> int:
        inner = await dispatch_agents("{n}", items(5), agent=leaf)
        return inner.report.succeeded

    result = await dispatch_agents(
        "{n}",
        items(3),
        agent=parent,
        limits=DispatchResourceLimits(max_total_agents=10, max_concurrent=1),
    )
    # Sequential parents: 1 + 5 leaves, 1 + 3 leaves (the 4th refused), then parent 3 refused.
    assert leaf.calls == 8
    assert [r.output for r in result[:2]] == [5, 3]
    assert result[2].error is not None and result[2].error.kind == "agent_limit"


async def test_cancelling_the_caller_cancels_everything() -> None:
    gate = asyncio.Event()
    probe = Probe(gate=gate)
    before = len(asyncio.all_tasks())
    task = asyncio.create_task(dispatch_agents("{n}", items(20), agent=probe))
    for _ in range(10):
        await asyncio.sleep(0)
    assert probe.in_flight == 10
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert probe.in_flight == 0
    assert len(asyncio.all_tasks()) == before


async def test_cancellation_leaked_by_an_agent_is_its_failure_not_ours() -> None:
    """Nobody cancelled the call: a CancelledError raised from inside is the agent's error."""

    async def agent(prompt: str) -> str:
        raise asyncio.CancelledError

    result = await dispatch_agents("{n}", items(2), agent=agent)
    assert [r.error.kind for r in result if r.error] == ["agent_error", "agent_error"]


def test_sync_twin_outside_a_loop() -> None:
    result = dispatch_agents_sync("{n}", items(3), agent=lambda p: p * 2)
    assert result.outputs == ["00", "11", "22"]


async def test_sync_twin_inside_a_loop_raises() -> None:
    with pytest.raises(SyncInAsyncError, match="await dispatch_agents"):
        dispatch_agents_sync("{n}", items(1), agent=Probe())


async def test_report_adds_up() -> None:
    probe = Probe(fail={"3"})
    result = await dispatch_agents("{n}", items(9), agent=probe, stop=stop_after_successes(20))
    rep = result.report
    assert rep.inputs == rep.succeeded + rep.failed + rep.cancelled + rep.skipped == 9
    assert rep.calls_started == 9
    assert rep.latency_max_s >= rep.latency_p95_s >= rep.latency_p50_s > 0
    assert rep.busy_time_s == pytest.approx(sum(r.duration_s for r in result))
    data = rep.to_dict()
    assert data["inputs"] == 9 and data["failures_by_kind"] == {"agent_error": 1}


async def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="mode must be one of"):
        Dispatcher(Probe(), mode="sometimes")
    with pytest.raises(ConfigurationError, match="no agent"):
        await Dispatcher().run("{n}", items(1))
    with pytest.raises(ConfigurationError, match="cannot use int"):
        await dispatch_agents("{n}", items(1), agent=42)
    assert DispatchMode("partial") is DispatchMode.PARTIAL


async def test_closing_a_stream_early_cancels_the_calls_in_flight() -> None:
    gate = asyncio.Event()
    probe = Probe(gate=gate)
    started: list[int] = []

    async def agent(prompt: Any) -> Any:
        started.append(prompt)
        return await probe(str(prompt)) if prompt else prompt

    dispatcher = Dispatcher(agent, limits=DispatchResourceLimits(max_concurrent=3))
    async with aclosing(dispatcher.stream(None, iter(range(100)))) as stream:
        async for result in stream:
            assert result.index == 0  # item 0 returns at once; 1..3 wait on the gate
            break
    assert probe.in_flight == 0  # cancelled by the close, not left running
    count = len(started)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(started) == count <= 4  # and nothing new started after the close


async def test_closing_a_stream_with_a_full_queue_does_not_hang() -> None:
    async def agent(prompt: Any) -> Any:
        return prompt

    dispatcher = Dispatcher(agent, limits=DispatchResourceLimits(max_concurrent=1))
    stream = dispatcher.stream(None, iter(range(1000)))
    first = await anext(stream)
    for _ in range(50):  # let the producer fill its allowance while we do not consume
        await asyncio.sleep(0)
    await asyncio.wait_for(stream.aclose(), timeout=5)
    assert first.index == 0


async def test_stream_reports_and_honours_all_or_nothing() -> None:
    reports: list[Any] = []
    dispatcher = Dispatcher(Probe(fail={"3"}), mode="all_or_nothing")
    seen: list[int] = []

    async def consume() -> None:
        async for result in dispatcher.stream("{n}", items(5), on_report=reports.append):
            seen.append(result.index)

    with pytest.raises(DispatchFailed, match="input 3 failed"):
        await consume()
    assert sorted(seen) == list(range(5))
    assert reports[0].inputs == 5 and reports[0].failed == 1


async def test_a_nested_budget_of_its_own_is_reported_as_not_applied() -> None:
    from langgraph_fanout import NestedLimitsWarning

    async def parent(prompt: str) -> int:
        inner = await dispatch_agents(
            "{n}", items(2), agent=Probe(), limits=DispatchResourceLimits(max_total_agents=1)
        )
        return inner.report.succeeded

    with pytest.warns(NestedLimitsWarning, match="max_total_agents is not applied"):
        result = await dispatch_agents("{n}", items(1), agent=parent)
    assert result[0].output == 2  # the enclosing run's count applies, not the inner cap
