"""Backpressure is not an outage: bursts of 429/503 at real concurrency never open a breaker.

The errors are the ones the OpenAI SDK raises (``openai.RateLimitError`` and
``openai.InternalServerError`` built over real HTTP responses, by
``langgraph_fanout.testing``), the concurrency is real, and time is virtual
(``fakeclock``): a Retry-After of one second costs nothing here, and nothing is timed.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

import fakeclock
from langgraph_fanout import (
    BreakerConfig,
    BreakerRegistry,
    DispatchResourceLimits,
    EndpointPauses,
    ErrorRecoveryPolicy,
    ErrorStrategy,
    Status,
    SubAgent,
    as_dispatch_result,
    create_dispatch_tool,
    create_fan_out_graph,
    dispatch_agents,
)
from langgraph_fanout.errors import AgentError, CircuitOpen, ConfigurationError
from langgraph_fanout.guards.breaker import BreakerSnapshot, ObjectKey, default_breakers
from langgraph_fanout.guards.classify import classify_error, is_outage
from langgraph_fanout.testing import (
    SimulatedChatModel,
    bad_request_error,
    rate_limit_error,
    server_error,
)


def _breaker_of(registry: BreakerRegistry, agent: str) -> BreakerSnapshot:
    """The snapshot of the one breaker of the agent named ``agent`` (names are name@id)."""
    (found,) = [b for key, b in registry.snapshot().items() if key.split("@")[0] == agent]
    return found


class Provider:
    """An endpoint that answers every ``period``-th request with ``error()``; 50 ms each."""

    def __init__(
        self, period: int | None, error: Any = None, *, bad: set[int] = frozenset()
    ) -> None:  # type: ignore[assignment]
        self.period = period
        self.error = error
        self.bad = set(bad)
        self.requests = 0
        self.__name__ = "provider"

    async def __call__(self, item: int) -> str:
        self.requests += 1
        n = self.requests
        await asyncio.sleep(0.05)
        if item in self.bad:
            raise ValueError(f"item {item} cannot be parsed")  # the input's fault
        if self.period is not None and n % self.period == 0:
            raise self.error()
        return f"answer {item}"


@pytest.mark.parametrize("rate", [0.005, 0.01, 0.02, 0.05])
def test_a_burst_of_429s_with_retry_after_never_fails_the_batch(rate: float) -> None:
    provider = Provider(round(1 / rate), lambda: rate_limit_error(retry_after_s=1.0))
    breakers = BreakerRegistry()

    async def scenario() -> Any:
        return await dispatch_agents(
            None,
            range(2000),
            agent=provider,
            limits=DispatchResourceLimits(max_concurrent=20),
            breakers=breakers,
            rng=random.Random(0),  # the Retry-After spread: a fixed run
        )

    result = fakeclock.run(scenario())
    # Every input is answered: a 429 says "not now", so it is retried within the policy's
    # own allowance for backpressure, and the endpoint is paused for every call meanwhile.
    assert result.report.succeeded == 2000
    assert result.report.breaker_openings == 0
    assert _breaker_of(breakers, "provider").opened_count == 0
    assert max(len(r.attempts) for r in result) <= ErrorRecoveryPolicy().most_attempts_per_agent
    assert provider.requests == 2000 + result.report.retries  # every retry was a 429
    counts = result.report.recovery_by_agent["provider"]
    assert counts["attempts"] == provider.requests
    assert counts["retries"] == result.report.retries
    # Every failed attempt was a 429, and each is counted as backpressure.
    assert counts["backpressure"] == sum(a.error is not None for r in result for a in r.attempts)
    assert counts["breaker_openings"] == counts["circuit_open"] == 0
    assert result.report.retries == sum(len(r.attempts) - 1 for r in result)


def test_overloaded_503s_with_retry_after_behind_admission_control_all_succeed() -> None:
    # An admission controller admits 5 requests in flight and answers 503 + retry-after: 1
    # to the rest, as LiteLLM's proxy does; the dispatch sends up to 10 at once.
    in_flight = 0
    requests = 0

    async def behind_admission(item: int) -> str:
        nonlocal in_flight, requests
        requests += 1
        if in_flight >= 5:
            raise server_error(503, retry_after_s=1.0)
        in_flight += 1
        try:
            await asyncio.sleep(0.2)
        finally:
            in_flight -= 1
        return f"answer {item}"

    breakers = BreakerRegistry()

    async def scenario() -> Any:
        return await dispatch_agents(
            None,
            range(30),
            agent=behind_admission,
            breakers=breakers,
            rng=random.Random(1),
        )

    result = fakeclock.run(scenario())
    assert result.report.succeeded == 30
    assert result.report.breaker_openings == 0
    assert requests > 30  # the controller did refuse some: the retries carried them


def test_bad_inputs_and_backpressure_leave_the_next_dispatch_alone() -> None:
    # 2 inputs the agent cannot parse, a 429 and a 500 in a dispatch of 50, through the
    # process-wide breakers: the next dispatches are not refused anything.
    faults = iter([rate_limit_error(retry_after_s=0.5), server_error(500)])

    async def flaky(item: int) -> str:
        if item in (3, 4):
            raise ValueError("cannot parse this item")
        if item in (10, 20):
            fault = next(faults, None)
            if fault is not None:
                raise fault
        await asyncio.sleep(0.01)
        return "ok"

    async def scenario() -> list[Any]:
        first = await dispatch_agents(None, range(50), agent=flaky)
        later = [await dispatch_agents(None, range(50), agent=flaky) for _ in range(3)]
        return [first, *later]

    default_breakers.reset()
    first, *later = fakeclock.run(scenario())
    assert first.report.succeeded == 48  # only the 2 bad inputs fail
    assert {r.error_kind for r in first.failures} == {"agent_error"}
    assert all(r.report.failures_by_kind == {"agent_error": 2} for r in later)
    assert _breaker_of(default_breakers, "flaky").opened_count == 0


@pytest.mark.parametrize(
    ("make", "outage"),
    [
        (lambda: rate_limit_error(retry_after_s=2), False),
        (lambda: rate_limit_error(), False),
        (lambda: server_error(503), False),
        (lambda: server_error(529), False),
        (lambda: server_error(500, retry_after_s=3), False),
        (lambda: bad_request_error(), False),
        (lambda: ValueError("this input is malformed"), False),
        (lambda: server_error(500), True),
        (lambda: server_error(502), True),
        (lambda: ConnectionResetError("reset by peer"), True),
        (lambda: TimeoutError("read timed out"), True),
    ],
)
def test_what_counts_as_an_outage(make: Any, outage: bool) -> None:
    error = classify_error(make(), agent="a")
    assert isinstance(error, AgentError)
    assert is_outage(error) is outage


def test_a_user_can_mark_more_failures_as_outages() -> None:
    # Every 429 counted (say, a quota that never refills): the breaker opens on them.
    provider = Provider(1, lambda: rate_limit_error())
    breakers = BreakerRegistry()
    policy = ErrorRecoveryPolicy(
        max_retries=0,
        outage_on=lambda e: isinstance(e, AgentError) and e.status_code == 429,
        breaker=BreakerConfig(minimum_calls=5),
    )

    async def scenario() -> Any:
        return await dispatch_agents(
            None,
            range(20),
            agent=provider,
            policy=policy,
            breakers=breakers,
            limits=DispatchResourceLimits(max_concurrent=1),
        )

    result = fakeclock.run(scenario())
    assert result.report.breaker_openings == 1
    assert provider.requests < 20  # the open circuit spared the rest
    assert Status.ERROR in {r.status for r in result}


# -- a breaker that opens on a failure rate -------------------------------------------------


def test_rare_outages_among_many_successes_never_open_the_breaker() -> None:
    # 10% of calls are 500s (outages, counted), spread among successes: the rate stays far
    # below 50%, so the circuit stays closed however many calls there are.
    provider = Provider(10, lambda: server_error(500))

    async def scenario() -> Any:
        return await dispatch_agents(
            None,
            range(1000),
            agent=provider,
            limits=DispatchResourceLimits(max_concurrent=20),
            breakers=BreakerRegistry(clock=asyncio.get_running_loop().time),
            rng=random.Random(2),
        )

    result = fakeclock.run(scenario())
    assert result.report.breaker_openings == 0
    assert "circuit_open" not in {a.error for r in result for a in r.attempts}
    # What fails is an input whose three attempts all met a 500 (about 1 in 1,000).
    assert all(len(r.attempts) == 3 for r in result.failures)
    assert result.report.succeeded >= 998


def test_a_dead_agent_is_spared_once_the_rate_says_so_and_probed_after_the_cooldown() -> None:
    dead = {"down": True}
    primary_calls = 0

    async def primary(item: int) -> str:
        nonlocal primary_calls
        primary_calls += 1
        await asyncio.sleep(0.05)
        if dead["down"]:
            raise ConnectionResetError("connection reset by peer")
        return f"primary {item}"

    async def backup(item: int) -> str:
        await asyncio.sleep(0.05)
        return f"backup {item}"

    policy = ErrorRecoveryPolicy(
        strategy=ErrorStrategy.FALLBACK, fallback_tools=["backup"], max_retries=0
    )

    async def scenario() -> tuple[Any, int, Any]:
        registry = BreakerRegistry(clock=asyncio.get_running_loop().time)
        first = await dispatch_agents(
            None,
            range(200),
            agent=primary,
            agents={"backup": backup},
            policy=policy,
            limits=DispatchResourceLimits(max_concurrent=20),
            breakers=registry,
        )
        calls_while_down = primary_calls
        dead["down"] = False
        await asyncio.sleep(BreakerConfig().cooldown_s)  # the cooldown passes
        later = await dispatch_agents(
            None,
            range(50),
            agent=primary,
            agents={"backup": backup},
            policy=policy,
            limits=DispatchResourceLimits(max_concurrent=1),
            breakers=registry,
        )
        return first, calls_while_down, (later, _breaker_of(registry, "primary"))

    first, calls_while_down, (later, snapshot) = fakeclock.run(scenario())
    assert first.report.succeeded == 200
    down = first.report.recovery_by_agent["primary"]
    assert down["breaker_openings"] == 1 and down["backpressure"] == 0
    assert down["attempts"] - down["circuit_open"] == calls_while_down  # calls really made
    assert first.report.recovery_by_agent["backup"]["attempts"] == 200
    assert all(r.agent_used == "backup" for r in first)
    config = BreakerConfig()
    assert calls_while_down <= config.minimum_calls + 20  # the minimum, plus those in flight
    assert first.report.breaker_openings == 1
    # After the cooldown one probe goes through, succeeds, and closes the circuit.
    assert all(r.agent_used == "primary" for r in later)
    assert snapshot.state.value == "closed"


# -- waiting for the probe instead of failing ----------------------------------------------


class ResetsTwice:
    """Each input's first two requests are reset by the peer; the third is answered."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.__name__ = "resets_twice"

    async def __call__(self, prompt: Any) -> str:
        key = str(prompt)
        self.requests[key] = self.requests.get(key, 0) + 1
        await asyncio.sleep(0.05)
        if self.requests[key] <= 2:
            raise ConnectionResetError("connection reset by peer")
        return f"answer {key}"


@pytest.mark.parametrize("surface", ["engine", "graph", "tool"])
def test_ten_inputs_that_each_fail_twice_all_succeed_on_every_surface(surface: str) -> None:
    # 10 inputs x 2 resets = 20 outages in a row: the default breaker opens at the 20th.
    # The third attempts wait for the half-open probe, which succeeds and closes it.
    agent = ResetsTwice()
    items = [f"item {i}" for i in range(10)]

    async def scenario() -> Any:
        breakers = BreakerRegistry(clock=asyncio.get_running_loop().time)
        if surface == "engine":
            return await dispatch_agents(None, items, agent=agent, breakers=breakers)
        if surface == "graph":
            graph = create_fan_out_graph(agent, breakers=breakers).compile()
            return as_dispatch_result(await graph.ainvoke({"items": items}))
        tool = create_dispatch_tool({"resets_twice": agent}, breakers=breakers)
        message = await tool.ainvoke(
            {
                "type": "tool_call",
                "id": "1",
                "name": tool.name,
                "args": {"instruction": "{item}", "items": items},
            }
        )
        return message.artifact

    result = fakeclock.run(scenario())
    assert result.report.succeeded == 10
    assert result.report.breaker_openings == 1
    assert [len(r.attempts) for r in result] == [3] * 10
    assert sorted(agent.requests.values()) == [3] * 10


def test_with_no_time_to_wait_for_the_probe_the_input_fails_open_naming_the_probe() -> None:
    # The cooldown (120 s) is longer than a retry may wait (retry_after_cap_s=60 s).
    async def dead(prompt: Any) -> str:
        raise ConnectionResetError("connection reset by peer")

    policy = ErrorRecoveryPolicy(
        max_retries=1, breaker=BreakerConfig(minimum_calls=2, cooldown_s=120)
    )

    async def scenario() -> Any:
        breakers = BreakerRegistry(clock=asyncio.get_running_loop().time)
        return await dispatch_agents(
            None,
            range(4),
            agent=dead,
            policy=policy,
            breakers=breakers,
            limits=DispatchResourceLimits(max_concurrent=1),
        )

    result = fakeclock.run(scenario())
    assert result.report.breaker_openings == 1
    later = result[3].error
    assert isinstance(later, CircuitOpen) and later.retry_in_s > 60


# -- breakers are keyed by what is called --------------------------------------------------


def test_two_agent_graphs_both_named_langgraph_never_share_a_breaker() -> None:
    from langchain.agents import create_agent

    broken = create_agent(
        SimulatedChatModel(model_name="m-broken", failure_rate=1.0, failure_kind="server_error"),
        tools=[],
    )
    healthy = create_agent(SimulatedChatModel(model_name="m-healthy"), tools=[])
    assert broken.get_name() == healthy.get_name() == "LangGraph"
    policy = ErrorRecoveryPolicy(max_retries=0)

    async def scenario() -> tuple[Any, Any]:
        # Through the process-wide breakers, as two unrelated parts of one app would.
        down = await dispatch_agents(
            None, [f"q{i}" for i in range(30)], agent=broken, policy=policy
        )
        up = await dispatch_agents(None, [f"q{i}" for i in range(5)], agent=healthy, policy=policy)
        return down, up

    default_breakers.reset()
    down, up = fakeclock.run(scenario())
    assert down.report.breaker_openings == 1  # the broken graph's own circuit opened
    assert up.report.succeeded == 5  # and the healthy graph never saw it
    assert len(default_breakers) == 2


def test_chat_models_of_one_deployment_share_a_breaker_and_a_key_shares_on_purpose() -> None:
    one = SubAgent.of(SimulatedChatModel(model_name="gpt-x"), name="first")
    two = SubAgent.of(SimulatedChatModel(model_name="gpt-x"), name="second")
    other = SubAgent.of(SimulatedChatModel(model_name="gpt-y"))
    assert one.circuit_key() == two.circuit_key() != other.circuit_key()

    async def a(x: Any) -> Any:
        return x

    async def b(x: Any) -> Any:
        return x

    assert SubAgent.of(a).circuit_key() != SubAgent.of(b).circuit_key()
    assert SubAgent.of(a, breaker_key="search").circuit_key() == "search"
    assert SubAgent.of(b, breaker_key="search").circuit_key() == "search"


# -- over real HTTP, through the real ChatOpenAI -------------------------------------------


async def test_admission_control_over_http_through_chatopenai_answers_every_input() -> None:
    # A server on 127.0.0.1 admits 5 requests in flight and answers 503 + retry-after: 1 to
    # the rest; the dispatch sends up to 10 at once through the real ChatOpenAI.
    from langchain_openai import ChatOpenAI

    from provider import ProviderServer, admission_control

    async with ProviderServer(admit=admission_control(5), latency_s=0.1) as server:
        model = ChatOpenAI(
            model="gpt-4o-mini", base_url=server.base_url, api_key="sk-test", max_retries=0
        )
        result = await dispatch_agents(
            "Question {n}",
            [{"n": i} for i in range(30)],
            agent=model,
            policy=ErrorRecoveryPolicy(max_retries=5),
            breakers=BreakerRegistry(),
        )
    assert result.report.succeeded == 30
    assert server.refused > 0  # the controller did refuse: the retries carried them
    assert server.answered == 30
    assert result.report.breaker_openings == 0
    assert server.requests == 30 + result.report.retries


# -- a Retry-After holds every call to the endpoint -------------------------------------------


class Endpoint:
    """Answers in 50 ms and records when each request arrived; the first one is a 429."""

    def __init__(self, name: str, *, retry_after_s: float | None) -> None:
        self.__name__ = name
        self.retry_after_s = retry_after_s
        self.arrivals: list[float] = []

    async def __call__(self, item: int) -> str:
        self.arrivals.append(asyncio.get_running_loop().time())
        if len(self.arrivals) == 1 and self.retry_after_s is not None:
            await asyncio.sleep(0.01)
            raise rate_limit_error(retry_after_s=self.retry_after_s)
        await asyncio.sleep(0.05)
        return f"answer {item}"


def test_a_retry_after_holds_every_call_to_that_endpoint_and_no_other() -> None:
    # No rate limit is set. The paused endpoint's first request is answered "429, come back
    # in 2 s" at t=0.01; every later request to it waits until then (each spread by up to 10%
    # of the pause), while another endpoint in the same process goes on meanwhile.
    paused = Endpoint("paused", retry_after_s=2.0)
    other = Endpoint("other", retry_after_s=None)
    pauses = EndpointPauses(rng=random.Random(3))

    async def scenario() -> list[Any]:
        return list(
            await asyncio.gather(
                *(
                    dispatch_agents(
                        None,
                        range(40),
                        agent=agent,
                        limits=DispatchResourceLimits(max_concurrent=4),
                        breakers=BreakerRegistry(),
                        pauses=pauses,
                        rng=random.Random(0),
                    )
                    for agent in (paused, other)
                )
            )
        )

    first, second = fakeclock.run(scenario())
    assert first.report.succeeded == second.report.succeeded == 40
    started = paused.arrivals[:4]  # the first window, sent together at t=0
    assert max(started) == pytest.approx(0.0, abs=1e-6)
    later = paused.arrivals[4:]
    assert len(later) == 37  # 36 inputs not yet started and the 429's retry
    assert min(later) >= 2.01
    assert min(later) <= 2.01 + 2.0 * 0.1  # held calls leave as soon as the pause ends
    assert len({round(t, 6) for t in later[:4]}) == 4  # spread out, not in lockstep
    # The other endpoint was never held: it finished its 40 inputs in 10 windows of 50 ms.
    assert max(other.arrivals) < 0.5
    assert first.report.rate_wait_s > 0 and second.report.rate_wait_s == 0


def test_endpoint_pauses_keep_the_later_end_and_forget_dead_objects() -> None:
    pauses = EndpointPauses(spread=0.0)

    async def scenario() -> tuple[float, float, float]:
        pauses.pause("m@x", 3.0)
        pauses.pause("m@x", 1.0)  # shorter: the pause already running wins
        remaining = pauses.remaining_s("m@x")
        waited = await pauses.wait("m@x")
        return remaining, waited, await pauses.wait("m@x")

    remaining, waited, again = fakeclock.run(scenario())
    assert remaining == pytest.approx(3.0, abs=1e-6)
    assert waited == pytest.approx(3.0, abs=1e-6)
    assert again == 0.0
    with pytest.raises(ConfigurationError, match="spread must be a finite number >= 0 and < 1"):
        EndpointPauses(spread=1.5)

    class Agent:
        pass

    async def many() -> None:
        for _ in range(70):
            pauses.pause(ObjectKey("a", Agent()), 0.5)  # each object dies at once

    fakeclock.run(many())
    assert len(pauses) < 64
    pauses.reset()
    assert len(pauses) == 0


async def test_a_litellm_retry_after_over_http_holds_the_next_input_through_chatopenai() -> None:
    # The proxy answers the first request 429 with LiteLLM's header spelling. Two inputs
    # are sent at once; without the pause the third would start as soon as the second is
    # answered (10 ms), long before the second the proxy asked for.
    from langchain_openai import ChatOpenAI

    from provider import ProviderServer

    arrivals: list[float] = []
    refused_at: list[float] = []

    def admit(server: ProviderServer) -> Any:
        now = asyncio.get_running_loop().time()
        arrivals.append(now)
        if server.requests == 1:
            refused_at.append(now)
            return 429, {"llm_provider-retry-after": "1"}
        return None

    async with ProviderServer(admit=admit, latency_s=0.01) as server:
        model = ChatOpenAI(
            model="gpt-4o-mini", base_url=server.base_url, api_key="sk-test", max_retries=0
        )
        result = await dispatch_agents(
            "Question {n}",
            [{"n": i} for i in range(4)],
            agent=model,
            limits=DispatchResourceLimits(max_concurrent=2),
            breakers=BreakerRegistry(),
            pauses=EndpointPauses(),
        )
    assert result.report.succeeded == 4
    assert len(arrivals) == 5  # 4 inputs and one retry
    # The second request was on its way with the first; everything after it waited.
    assert all(t - refused_at[0] >= 1.0 for t in arrivals[2:])
