"""Retry, fallback, classification and circuit breakers (recovery.py, breaker.py).

Time never passes for real here: backoff goes through a recording fake ``sleep`` and
breakers read a fake clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import email.utils
import itertools
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpcore2
import httpx
import httpx2
import openai
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAuthenticationError,
    ModelRateLimitError,
)
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models.base import OpenAIRateLimitError
from tenacity import AsyncRetrying, RetryCallState

from httpmock import openai_chat_completion_body, openai_error_body
from langgraph_fanout.core.results import Attempt
from langgraph_fanout.errors import (
    AgentError,
    BudgetExceeded,
    CallCancelled,
    CallSkipped,
    CallTimeout,
    CircuitOpen,
    ConfigurationError,
    RetriesExhausted,
)
from langgraph_fanout.guards.breaker import (
    BreakerConfig,
    BreakerRegistry,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    default_breakers,
)
from langgraph_fanout.guards.classify import classify_error, is_transient, retry_after_s
from langgraph_fanout.guards.recovery import (
    RETRY_AFTER_SPREAD,
    ErrorRecoveryPolicy,
    ErrorStrategy,
    RecoveryOutcome,
    backoff_wait,
    run_with_recovery,
)

BASE_URL = "https://api.openai.com/v1"
URL = f"{BASE_URL}/chat/completions"


# --------------------------------------------------------------------------- fakes


class FakeClock:
    """Monotonic seconds that move only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSleep:
    """An async sleep that records each wait (and moves a fake clock) without waiting."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.waits: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


@dataclass
class ScriptedAgent:
    """An agent that plays its script: exceptions are raised, other items returned.

    The last item repeats forever. ``calls`` counts how often the agent was really called.
    """

    name: str
    script: list[Any]
    calls: int = 0
    clock: FakeClock | None = None
    takes_s: float = 0.0

    async def run(self) -> Any:
        item = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if self.clock is not None:
            self.clock.advance(self.takes_s)
        if isinstance(item, BaseException):
            raise item
        return item


class HTTPStatusFailure(Exception):
    """A duck-typed provider error: ``status_code`` and ``response.headers``, no SDK import."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.response = type("Resp", (), {"headers": headers or {}, "status_code": status})()


def transient(status: int = 503, **headers: str) -> HTTPStatusFailure:
    return HTTPStatusFailure(status, {k.replace("_", "-"): v for k, v in headers.items()})


async def call_agent(agent: ScriptedAgent) -> Any:
    return await agent.run()


def agent_name(agent: ScriptedAgent) -> str:
    return agent.name


def no_breaker(**kwargs: Any) -> ErrorRecoveryPolicy:
    return ErrorRecoveryPolicy(breaker=None, **kwargs)


async def recover(
    primary: ScriptedAgent,
    *fallbacks: ScriptedAgent,
    policy: ErrorRecoveryPolicy,
    sleep: FakeSleep | None = None,
    breakers: BreakerRegistry | None = None,
    **kwargs: Any,
) -> RecoveryOutcome[Any]:
    return await run_with_recovery(
        call_agent,
        primary=primary,
        fallbacks=fallbacks,
        policy=policy,
        name_of=agent_name,
        breakers=breakers if breakers is not None else BreakerRegistry(),
        sleep=sleep if sleep is not None else FakeSleep(),
        **kwargs,
    )


def openai_status_error(
    status: int, *, headers: dict[str, str] | None = None, message: str = "boom"
) -> openai.APIStatusError:
    """The exception the OpenAI SDK itself raises for ``status`` (before LangChain wraps it)."""
    response = httpx2.Response(
        status, headers=headers or {}, request=httpx2.Request("POST", URL), json={}
    )
    client = openai.OpenAI(api_key="sk-test", max_retries=0)
    return client._make_status_error(message, body={"message": message}, response=response)


def state_after(attempt_number: int, exc: BaseException | None = None) -> RetryCallState:
    state = RetryCallState(AsyncRetrying(), None, (), {})
    state.attempt_number = attempt_number
    if exc is not None:
        state.set_exception((type(exc), exc, None))
    return state


# --------------------------------------------------------------------------- classification


def _timeout_request() -> httpx2.Request:
    return httpx2.Request("POST", URL)


RETRYABLE: list[tuple[str, Callable[[], BaseException]]] = [
    ("openai 429", lambda: openai_status_error(429)),
    ("openai 500", lambda: openai_status_error(500)),
    ("openai 502", lambda: openai_status_error(502)),
    ("openai 503", lambda: openai_status_error(503)),
    ("openai 504", lambda: openai_status_error(504)),
    ("openai 408 (plain APIStatusError)", lambda: openai_status_error(408)),
    ("openai 409 (ConflictError)", lambda: openai_status_error(409)),
    ("openai APITimeoutError", lambda: openai.APITimeoutError(request=_timeout_request())),
    ("openai APIConnectionError", lambda: openai.APIConnectionError(request=_timeout_request())),
    (
        "anthropic 529 overloaded",
        lambda: anthropic.InternalServerError(
            "overloaded", response=httpx2.Response(529, request=_timeout_request()), body=None
        ),
    ),
    ("TimeoutError", lambda: TimeoutError("slow")),
    ("httpx.ReadTimeout", lambda: httpx.ReadTimeout("slow")),
    ("httpx2.ConnectError", lambda: httpx2.ConnectError("refused")),
    ("httpcore2.RemoteProtocolError", lambda: httpcore2.RemoteProtocolError("eof")),
    ("ConnectionResetError", lambda: ConnectionResetError("reset")),
    ("langchain ModelRateLimitError", lambda: ModelRateLimitError("limited")),
    (
        "langchain OpenAIRateLimitError",
        lambda: OpenAIRateLimitError(
            "limited",
            response=httpx2.Response(429, request=_timeout_request()),
            body=None,
        ),
    ),
    ("CallTimeout", lambda: CallTimeout(agent="a", timeout_s=1.0)),
    ("duck 503", lambda: transient(503)),
]

NOT_RETRYABLE: list[tuple[str, Callable[[], BaseException]]] = [
    ("openai 400", lambda: openai_status_error(400)),
    ("openai 401", lambda: openai_status_error(401)),
    ("openai 403", lambda: openai_status_error(403)),
    ("openai 404", lambda: openai_status_error(404)),
    ("openai 422", lambda: openai_status_error(422)),
    (
        "openai 400 context length",
        lambda: openai_status_error(
            400,
            message="This model's maximum context length is 128000 tokens.",
        ),
    ),
    ("duck 500 saying context_length_exceeded", lambda: _context_500()),
    ("langchain ContextOverflowError", lambda: ContextOverflowError("too long")),
    ("langchain ModelAuthenticationError", lambda: ModelAuthenticationError("bad key")),
    ("ValueError", lambda: ValueError("bad")),
    ("KeyboardInterrupt", lambda: KeyboardInterrupt()),
    ("CancelledError", lambda: asyncio.CancelledError()),
    (
        "BudgetExceeded",
        lambda: BudgetExceeded(
            agent="a", spent_usd=1, reserved_usd=0, estimate_usd=1, limit_usd=1.5
        ),
    ),
    ("CircuitOpen", lambda: CircuitOpen(agent="a", failures=5, retry_in_s=3)),
    ("AgentError retryable=False", lambda: AgentError(agent="a", cause_type="X", detail="d")),
]


def _context_500() -> HTTPStatusFailure:
    exc = HTTPStatusFailure(500)
    exc.args = ("upstream: context_length_exceeded",)
    return exc


@pytest.mark.parametrize(("label", "make"), RETRYABLE, ids=[r[0] for r in RETRYABLE])
def test_transient_errors_are_retryable(label: str, make: Callable[[], BaseException]) -> None:
    assert is_transient(make()) is True


@pytest.mark.parametrize(("label", "make"), NOT_RETRYABLE, ids=[r[0] for r in NOT_RETRYABLE])
def test_permanent_errors_are_not_retryable(label: str, make: Callable[[], BaseException]) -> None:
    assert is_transient(make()) is False


def test_context_length_signals() -> None:
    coded = openai_status_error(400, message="too long")
    coded.code = "context_length_exceeded"
    assert is_transient(coded) is False
    tokens_per_minute = HTTPStatusFailure(429)
    tokens_per_minute.args = ("input tokens exceed your limit of 30000 per minute",)
    assert is_transient(tokens_per_minute) is True  # a 429 is a rate limit, whatever it says

    class Broken(TimeoutError):
        def __str__(self) -> str:
            raise RuntimeError("broken __str__")

    assert is_transient(Broken()) is True
    error = classify_error(Broken(), agent="a")
    assert isinstance(error, AgentError)
    assert error.detail == "Broken"


def test_is_retryable_attribute_is_honoured_and_status_wins_over_it() -> None:
    class Flaky(Exception):
        is_retryable = True

    class NotFlaky(Exception):
        is_retryable = False

    class Confused(Exception):
        is_retryable = True
        status_code = 401

    assert is_transient(Flaky()) is True
    assert is_transient(NotFlaky()) is False
    assert is_transient(Confused()) is False


def caused_by(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` as if raised ``from inner``."""
    outer.__cause__ = inner
    return outer


def during(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` as if raised while handling ``inner`` (implicit ``__context__``)."""
    outer.__context__ = inner
    return outer


def test_a_wrapper_inherits_the_verdict_of_its_cause() -> None:
    wrapped = caused_by(RuntimeError("tool failed"), openai_status_error(429))
    assert is_transient(wrapped) is True
    error = classify_error(wrapped, agent="a")
    assert isinstance(error, AgentError)
    assert (error.cause_type, error.status_code, error.retryable) == ("RuntimeError", 429, True)
    # A wrapper with a verdict of its own keeps it.
    assert is_transient(caused_by(openai_status_error(400), TimeoutError())) is False
    assert is_transient(caused_by(ValueError("a"), ValueError("b"))) is False


def test_classify_error_builds_an_agent_error_with_numbers() -> None:
    exc = openai_status_error(429, headers={"retry-after": "7"}, message="Rate limit reached")
    error = classify_error(exc, agent="researcher")
    assert isinstance(error, AgentError)
    assert error.agent == "researcher"
    assert error.cause_type == "RateLimitError"
    assert error.status_code == 429
    assert error.retryable is True
    assert error.retry_after_s == 7.0
    assert error.detail == "Rate limit reached"
    assert str(error) == "agent 'researcher' raised RateLimitError (HTTP 429): Rate limit reached"


def test_classify_error_keeps_call_errors_and_shortens_details() -> None:
    timeout = CallTimeout(agent="a", timeout_s=2.0)
    assert classify_error(timeout, agent="b") is timeout
    error = classify_error(ValueError("x" * 5000 + "\n\n tail"), agent="a")
    assert isinstance(error, AgentError)
    assert len(error.detail) == 300
    assert error.detail.endswith("…")
    assert (error.status_code, error.retry_after_s, error.retryable) == (None, None, False)
    empty = classify_error(TimeoutError(), agent="a")
    assert isinstance(empty, AgentError)
    assert (empty.detail, empty.retryable) == ("(no message)", True)


def test_classify_error_uses_the_given_retry_on() -> None:
    error = classify_error(ValueError("flaky parser"), agent="a", retry_on=lambda e: True)
    assert isinstance(error, AgentError)
    assert error.retryable is True


# --------------------------------------------------------------------------- retry-after


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "1"}, 1.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "whenever"}, None),
        ({}, None),
        (
            {
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "1m30s",
                "x-ratelimit-remaining-tokens": "5000",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            90.0,
        ),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "20ms"}, 0.02),
        ({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1s"}, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(HTTPStatusFailure(429, headers)) == expected


def test_retry_after_http_date_is_measured_from_now() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 42, usegmt=True)
    exc = HTTPStatusFailure(503, {"retry-after": date})
    assert retry_after_s(exc, now=now) == 42.0
    assert retry_after_s(exc, now=now + 100) == 0.0


def test_retry_after_found_on_openai_errors_and_through_the_chain() -> None:
    sdk_error = openai_status_error(429, headers={"retry-after-ms": "1500"})
    assert retry_after_s(sdk_error) == 1.5
    assert retry_after_s(caused_by(ValueError("wrapped"), sdk_error)) == 1.5
    # Raised while handling the 429 but not from it (a bug in the handler): not its wait.
    assert retry_after_s(during(KeyError("lost in a handler"), sdk_error)) is None


def test_retry_after_of_an_agent_error_is_its_attribute() -> None:
    error = AgentError(agent="a", cause_type="X", detail="d", retryable=True, retry_after_s=4.0)
    assert retry_after_s(error) == 4.0


# --------------------------------------------------------------------------- policy


def test_the_seed_snippet_constructs() -> None:
    policy = ErrorRecoveryPolicy(
        strategy=ErrorStrategy.FALLBACK,
        fallback_tools=["backup_agent"],
        max_retries=2,
    )
    assert policy.strategy is ErrorStrategy.FALLBACK
    assert policy.fallback_tools == ("backup_agent",)
    assert policy.max_retries == 2
    assert policy.attempts_per_agent == 3
    assert policy.breaker == BreakerConfig()
    assert policy.retry_on is is_transient
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_retries = 5  # type: ignore[misc]


def test_policy_defaults_and_string_strategy() -> None:
    policy = ErrorRecoveryPolicy()
    assert (policy.strategy, policy.max_retries, policy.fallback_tools) == ("retry", 2, ())
    assert ErrorRecoveryPolicy(strategy="skip").strategy is ErrorStrategy.SKIP  # type: ignore[arg-type]
    assert ErrorRecoveryPolicy(strategy=ErrorStrategy.FAIL).attempts_per_agent == 1
    agent_object = object()
    assert ErrorRecoveryPolicy(
        strategy=ErrorStrategy.FALLBACK, fallback_tools=("a", agent_object)
    ).fallback_tools == ("a", agent_object)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries must be an int >= 0"),
        ({"max_retries": 1.5}, "max_retries must be an int >= 0"),
        ({"max_retries": True}, "max_retries must be an int >= 0"),
        ({"strategy": "retry-harder"}, "strategy must be one of retry, fallback, skip, fail"),
        (
            {"strategy": ErrorStrategy.FALLBACK, "fallback_tools": "backup_agent"},
            "fallback_tools must be a list",
        ),
        ({"fallback_tools": ["backup_agent"]}, "only used with strategy=FALLBACK"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier must be a finite number >= 1"),
        ({"jitter_s": -0.1}, "jitter_s must be a finite number >= 0"),
        ({"retry_after_cap_s": float("nan")}, "retry_after_cap_s must be a finite number"),
        ({"backoff_initial_s": 5.0, "backoff_max_s": 1.0}, "backoff_max_s (1) must be >="),
        ({"retry_on": "transient"}, "retry_on must be callable"),
        ({"breaker": {"minimum_calls": 3}}, "breaker must be a BreakerConfig or None"),
    ],
)
def test_policy_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        ErrorRecoveryPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"minimum_calls": 0}, {"window_s": 0}, {"cooldown_s": -1}, {"half_open_max_calls": 0}],
)
def test_breaker_config_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="BreakerConfig"):
        BreakerConfig(**kwargs)


def test_backoff_is_exponential_plus_seeded_additive_jitter() -> None:
    policy = ErrorRecoveryPolicy(backoff_initial_s=0.5, backoff_multiplier=2.0, backoff_max_s=3.0)
    wait = backoff_wait(policy, rng=random.Random(7))
    expected_rng = random.Random(7)
    got = [wait(state_after(n, transient())) for n in range(1, 6)]
    expected = [b + expected_rng.uniform(0.0, 0.5) for b in (0.5, 1.0, 2.0, 3.0, 3.0)]
    assert got == expected


def test_retry_after_replaces_the_backoff_spread_by_at_most_a_tenth_and_is_capped() -> None:
    policy = ErrorRecoveryPolicy(retry_after_cap_s=10.0)
    wait = backoff_wait(policy, rng=random.Random(1))
    asked_1 = AgentError(agent="a", cause_type="X", detail="d", retryable=True, retry_after_s=1.0)
    asked_99 = AgentError(agent="a", cause_type="X", detail="d", retryable=True, retry_after_s=99)
    assert 1.0 <= wait(state_after(3, asked_1)) <= 1.1  # not the exponential backoff (2 s)
    assert 10.0 <= wait(state_after(1, asked_99)) <= 11.0
    # A foreign exception's headers are read too.
    assert 2.0 <= wait(state_after(1, transient(429, retry_after="2"))) <= 2.2


def test_calls_told_the_same_retry_after_come_back_spread_out() -> None:
    wait = backoff_wait(ErrorRecoveryPolicy(), rng=random.Random(7))
    told = AgentError(agent="a", cause_type="X", detail="d", retryable=True, retry_after_s=1.0)
    waits = [wait(state_after(1, told)) for _ in range(200)]
    assert min(waits) >= 1.0 and max(waits) <= 1.1
    assert len({round(w, 6) for w in waits}) > 190  # not 200 retries in lockstep


# --------------------------------------------------------------------------- real ChatOpenAI


def _chat(model: str) -> ChatOpenAI:
    return ChatOpenAI(model=model, api_key="sk-test", max_retries=0)


def _model_name(model: ChatOpenAI) -> str:
    return model.model_name


async def _ask(model: ChatOpenAI) -> Any:
    return await model.ainvoke("hi")


@pytest.mark.parametrize(
    ("status", "headers", "asked"),
    [
        (429, {"retry-after": "2"}, 2.0),
        (429, {"retry-after-ms": "1500"}, 1.5),
        (503, {"retry-after": "3"}, 3.0),
        (429, {"llm_provider-retry-after": "4"}, 4.0),  # LiteLLM's proxy passes it on so
        (429, {"llm_provider-retry-after-ms": "250"}, 0.25),
        (
            429,
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6s"},
            6.0,
        ),
    ],
)
async def test_every_retry_after_spelling_through_the_real_chatopenai(
    status: int, headers: dict[str, str], asked: float
) -> None:
    sleep = FakeSleep()
    with respx.mock(using="httpcore2", base_url=BASE_URL) as router:
        router.post("/chat/completions").mock(
            side_effect=[
                httpx.Response(status, headers=headers, json=openai_error_body("slow down")),
                httpx.Response(200, json=openai_chat_completion_body("answer")),
            ]
        )
        registry = BreakerRegistry()
        outcome = await run_with_recovery(
            _ask,
            primary=_chat("gpt-4o-mini"),
            policy=ErrorRecoveryPolicy(max_retries=1),
            name_of=_model_name,
            breakers=registry,
            sleep=sleep,
        )
    assert outcome.ok
    (waited,) = sleep.waits
    assert asked <= waited <= asked * 1.1  # what the provider said, spread by <= 10%
    assert registry.get("gpt-4o-mini").snapshot().failures_in_window == 0  # backpressure


async def test_an_http_date_retry_after_through_the_real_chatopenai() -> None:
    sleep = FakeSleep()
    when = email.utils.format_datetime(
        datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30), usegmt=True
    )
    with respx.mock(using="httpcore2", base_url=BASE_URL) as router:
        router.post("/chat/completions").mock(
            side_effect=[
                httpx.Response(429, headers={"Retry-After": when}, json=openai_error_body("x")),
                httpx.Response(200, json=openai_chat_completion_body("answer")),
            ]
        )
        outcome = await run_with_recovery(
            _ask,
            primary=_chat("gpt-4o-mini"),
            policy=ErrorRecoveryPolicy(max_retries=1),
            name_of=_model_name,
            breakers=BreakerRegistry(),
            sleep=sleep,
        )
    assert outcome.ok
    assert 25 <= sleep.waits[0] <= 33


async def test_chatopenai_429_with_retry_after_is_retried_once_after_exactly_that_wait() -> None:
    sleep = FakeSleep()
    with respx.mock(using="httpcore2", base_url=BASE_URL) as router:
        route = router.post("/chat/completions").mock(
            side_effect=[
                httpx.Response(
                    429,
                    headers={"Retry-After": "1"},
                    json=openai_error_body("Rate limit reached", type="requests"),
                ),
                httpx.Response(200, json=openai_chat_completion_body("answer")),
            ]
        )
        outcome = await run_with_recovery(
            _ask,
            primary=_chat("gpt-4o-mini"),
            policy=ErrorRecoveryPolicy(max_retries=2),
            name_of=_model_name,
            breakers=BreakerRegistry(),
            sleep=sleep,
            rng=random.Random(0),
        )
    assert route.call_count == 2
    assert len(sleep.waits) == 1 and 1.0 <= sleep.waits[0] <= 1.1  # Retry-After, spread
    assert outcome.ok
    assert outcome.output.content == "answer"
    assert (outcome.agent_used, outcome.fallback_used, outcome.retries) == (
        "gpt-4o-mini",
        False,
        1,
    )
    assert [(a.agent, a.number, a.error) for a in outcome.attempts] == [
        ("gpt-4o-mini", 1, "agent_error"),
        ("gpt-4o-mini", 2, None),
    ]
    assert outcome.attempts[0].wait_before_s == 0.0
    assert outcome.attempts[1].wait_before_s == sleep.waits[0]


async def test_chatopenai_500s_fall_back_to_a_second_model() -> None:
    sleep = FakeSleep()
    seen: list[str] = []

    def by_model(request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        seen.append(model)
        if model == "gpt-4o-mini":
            return httpx.Response(500, json=openai_error_body("server error", type="server_error"))
        return httpx.Response(200, json=openai_chat_completion_body("from backup", model=model))

    with respx.mock(using="httpcore2", base_url=BASE_URL) as router:
        router.post("/chat/completions").mock(side_effect=by_model)
        outcome = await run_with_recovery(
            _ask,
            primary=_chat("gpt-4o-mini"),
            fallbacks=[_chat("gpt-4.1-mini")],
            policy=ErrorRecoveryPolicy(strategy=ErrorStrategy.FALLBACK, max_retries=2),
            name_of=_model_name,
            breakers=BreakerRegistry(),
            sleep=sleep,
            rng=random.Random(3),
        )
    jitter = random.Random(3)
    assert sleep.waits == [0.5 + jitter.uniform(0, 0.5), 1.0 + jitter.uniform(0, 0.5)]
    assert seen == ["gpt-4o-mini"] * 3 + ["gpt-4.1-mini"]
    assert outcome.ok
    assert outcome.output.content == "from backup"
    assert (outcome.agent_used, outcome.fallback_used, outcome.retries) == ("gpt-4.1-mini", True, 2)
    assert [(a.agent, a.error) for a in outcome.attempts] == [
        ("gpt-4o-mini", "agent_error"),
        ("gpt-4o-mini", "agent_error"),
        ("gpt-4o-mini", "agent_error"),
        ("gpt-4.1-mini", None),
    ]
    assert outcome.attempts[3].wait_before_s == 0.0  # a fallback starts at once


async def test_chatopenai_400_is_one_attempt_and_a_typed_error() -> None:
    sleep = FakeSleep()
    with respx.mock(using="httpcore2", base_url=BASE_URL) as router:
        route = router.post("/chat/completions").respond(
            400, json=openai_error_body("Invalid 'messages'", code="invalid_value")
        )
        outcome = await run_with_recovery(
            _ask,
            primary=_chat("gpt-4o-mini"),
            policy=ErrorRecoveryPolicy(max_retries=2),
            name_of=_model_name,
            breakers=BreakerRegistry(),
            sleep=sleep,
        )
    assert route.call_count == 1
    assert sleep.waits == []
    assert len(outcome.attempts) == 1
    error = outcome.error
    assert isinstance(error, AgentError)
    assert (error.status_code, error.retryable, error.cause_type) == (
        400,
        False,
        "OpenAIInvalidRequestError",
    )
    assert error.detail == "Error code: 400 - Invalid 'messages'"
    assert outcome.output is None
    assert outcome.agent_used is None


# --------------------------------------------------------------------------- strategies


async def test_retry_exhausted_reports_every_attempt() -> None:
    agent = ScriptedAgent("a", [transient(502)])
    sleep = FakeSleep()
    outcome = await recover(agent, policy=no_breaker(max_retries=2, jitter_s=0.0), sleep=sleep)
    assert agent.calls == 3
    assert sleep.waits == [0.5, 1.0]
    error = outcome.error
    assert isinstance(error, RetriesExhausted)
    assert (error.agent, error.attempts) == ("a", 3)
    assert isinstance(error.last_error, AgentError)
    assert error.last_error.status_code == 502
    assert str(error).startswith("call to 'a' failed after 3 attempt(s): agent 'a' raised")
    assert outcome.retries == 2


async def test_success_after_retries_on_the_primary() -> None:
    agent = ScriptedAgent("a", [TimeoutError(), CallTimeout(agent="a", timeout_s=5), "done"])
    outcome = await recover(agent, policy=no_breaker(max_retries=2))
    assert (outcome.output, outcome.error, agent.calls) == ("done", None, 3)
    assert [a.error for a in outcome.attempts] == ["agent_error", "timeout", None]


async def test_skip_ends_the_input_as_skipped() -> None:
    agent = ScriptedAgent("a", [transient(502)])
    outcome = await recover(agent, policy=no_breaker(strategy=ErrorStrategy.SKIP, max_retries=1))
    assert agent.calls == 2
    error = outcome.error
    assert isinstance(error, CallSkipped)
    assert error.agent == "a"
    assert "HTTP 502" in error.cause
    assert error.kind == "skipped"


async def test_fail_makes_one_attempt_even_for_transient_errors() -> None:
    agent = ScriptedAgent("a", [transient(503), "never"])
    sleep = FakeSleep()
    outcome = await recover(
        agent, policy=no_breaker(strategy=ErrorStrategy.FAIL, max_retries=5), sleep=sleep
    )
    assert agent.calls == 1
    assert sleep.waits == []
    assert isinstance(outcome.error, AgentError)
    assert outcome.error.retryable is True
    assert len(outcome.attempts) == 1


async def test_fallback_after_a_non_retryable_error_without_retrying_it() -> None:
    primary = ScriptedAgent("primary", [HTTPStatusFailure(404)])
    backup = ScriptedAgent("backup", ["rescued"])
    sleep = FakeSleep()
    outcome = await recover(
        primary,
        backup,
        policy=no_breaker(strategy=ErrorStrategy.FALLBACK, max_retries=3),
        sleep=sleep,
    )
    assert (primary.calls, backup.calls, sleep.waits) == (1, 1, [])
    assert (outcome.output, outcome.agent_used, outcome.fallback_used) == (
        "rescued",
        "backup",
        True,
    )


async def test_every_fallback_failing_gives_retries_exhausted_with_the_last_error() -> None:
    primary = ScriptedAgent("primary", [transient(500)])
    first = ScriptedAgent("first", [HTTPStatusFailure(401)])
    second = ScriptedAgent("second", [transient(502)])
    outcome = await recover(
        primary, first, second, policy=no_breaker(strategy=ErrorStrategy.FALLBACK, max_retries=1)
    )
    assert (primary.calls, first.calls, second.calls) == (2, 1, 2)
    error = outcome.error
    assert isinstance(error, RetriesExhausted)
    assert (error.agent, error.attempts) == ("primary", 5)
    assert isinstance(error.last_error, AgentError)
    assert error.last_error.agent == "second"
    assert outcome.fallback_used is True
    assert outcome.agent_used is None
    assert [a.agent for a in outcome.attempts] == ["primary"] * 2 + ["first"] + ["second"] * 2


async def test_refused_attempt_is_not_retried_and_skips_fallbacks() -> None:
    refusal = BudgetExceeded(
        agent="primary", spent_usd=0.4, reserved_usd=0.05, estimate_usd=0.1, limit_usd=0.5
    )
    primary = ScriptedAgent("primary", [transient(500), refusal])
    backup = ScriptedAgent("backup", ["never"])
    registry = BreakerRegistry(BreakerConfig(minimum_calls=2))
    outcome = await recover(
        primary,
        backup,
        policy=ErrorRecoveryPolicy(strategy=ErrorStrategy.FALLBACK, max_retries=3),
        breakers=registry,
    )
    assert outcome.error is refusal
    assert (primary.calls, backup.calls) == (2, 0)
    assert [a.error for a in outcome.attempts] == ["agent_error", "budget_exceeded"]
    assert registry.get("primary").snapshot().failures_in_window == 1  # refusal not counted


async def test_refused_attempt_under_skip_keeps_its_type() -> None:
    refusal = BudgetExceeded(
        agent="a", spent_usd=0.5, reserved_usd=0.0, estimate_usd=0.1, limit_usd=0.5
    )
    outcome = await recover(
        ScriptedAgent("a", [refusal]), policy=no_breaker(strategy=ErrorStrategy.SKIP)
    )
    assert outcome.error is refusal


async def test_call_cancelled_from_an_attempt_ends_the_recovery() -> None:
    cancelled = CallCancelled(reason="quorum reached", started=True)
    primary = ScriptedAgent("primary", [cancelled])
    backup = ScriptedAgent("backup", ["never"])
    outcome = await recover(primary, backup, policy=no_breaker(strategy=ErrorStrategy.FALLBACK))
    assert outcome.error is cancelled
    assert backup.calls == 0


async def test_custom_retry_on_decides_what_is_retried() -> None:
    agent = ScriptedAgent("a", [ValueError("flaky parse"), "parsed"])
    policy = no_breaker(retry_on=lambda exc: isinstance(exc, ValueError))
    outcome = await recover(agent, policy=policy)
    assert (outcome.output, agent.calls) == ("parsed", 2)
    never = ScriptedAgent("b", [transient(500)])
    outcome = await recover(never, policy=no_breaker(retry_on=lambda exc: False))
    assert never.calls == 1
    assert isinstance(outcome.error, AgentError)
    assert outcome.error.retryable is False


async def test_fallbacks_need_the_fallback_strategy() -> None:
    with pytest.raises(ConfigurationError, match="only tried with strategy=FALLBACK"):
        await recover(ScriptedAgent("a", ["x"]), ScriptedAgent("b", ["y"]), policy=no_breaker())


async def test_on_attempt_sees_each_record_with_its_duration() -> None:
    clock = FakeClock()
    agent = ScriptedAgent("a", [TimeoutError(), "ok"], clock=clock, takes_s=2.5)
    seen: list[Attempt] = []
    outcome = await recover(
        agent,
        policy=no_breaker(jitter_s=0.0),
        sleep=FakeSleep(clock),
        on_attempt=seen.append,
        clock=clock,
    )
    assert seen == list(outcome.attempts)
    assert [(a.number, a.wait_before_s, a.duration_s) for a in seen] == [
        (1, 0.0, 2.5),
        (2, 0.5, 2.5),
    ]


async def test_default_registry_is_shared_when_none_is_given() -> None:
    default_breakers.reset()
    try:
        policy = ErrorRecoveryPolicy(max_retries=0, breaker=BreakerConfig(minimum_calls=2))
        agent = ScriptedAgent("shared-default-agent", [transient(500)])
        for _ in range(2):
            await run_with_recovery(
                call_agent, primary=agent, policy=policy, name_of=agent_name, sleep=FakeSleep()
            )
        assert default_breakers.snapshot()["shared-default-agent"].state is BreakerState.OPEN
    finally:
        default_breakers.reset()


# --------------------------------------------------------------------------- breakers


def test_breaker_opens_after_threshold_failures_within_the_window() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("a", BreakerConfig(minimum_calls=3, window_s=10), clock=clock)
    assert breaker.record_failure() is False
    clock.advance(11)  # the first failure leaves the window
    assert breaker.record_failure() is False
    assert breaker.record_failure() is False
    assert breaker.state is BreakerState.CLOSED
    assert breaker.record_failure() is True
    assert breaker.state is BreakerState.OPEN
    assert breaker.try_acquire() is False
    with pytest.raises(CircuitOpen) as caught:
        breaker.acquire()
    assert (caught.value.agent, caught.value.failures, caught.value.retry_in_s) == ("a", 3, 30.0)
    assert breaker.snapshot() == BreakerSnapshot(
        name="a",
        state=BreakerState.OPEN,
        failures_in_window=3,
        calls_in_window=3,
        opened_count=1,
        retry_in_s=30.0,
    )


def test_half_open_admits_limited_probes_and_recovers_or_reopens() -> None:
    clock = FakeClock()
    config = BreakerConfig(minimum_calls=1, cooldown_s=30, half_open_max_calls=1)
    breaker = CircuitBreaker("a", config, clock=clock)
    breaker.record_failure()
    clock.advance(29.5)
    assert breaker.try_acquire() is False
    assert breaker.snapshot().retry_in_s == 0.5
    clock.advance(0.5)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.try_acquire() is True  # the probe
    assert breaker.try_acquire() is False  # a concurrent second probe
    breaker.release_probe()  # the probe was cancelled: no verdict
    assert breaker.try_acquire() is True
    assert breaker.record_failure() is True  # probe failed: open again, new cooldown
    assert breaker.snapshot().retry_in_s == 30.0
    assert breaker.opened_count == 2
    clock.advance(30)
    assert breaker.try_acquire() is True
    breaker.record_success()
    assert breaker.snapshot() == BreakerSnapshot(
        name="a", state=BreakerState.CLOSED, failures_in_window=0, opened_count=2, retry_in_s=0.0
    )


def test_registry_returns_one_breaker_per_name_and_snapshots_all() -> None:
    clock = FakeClock()
    registry = BreakerRegistry(BreakerConfig(minimum_calls=1), clock=clock)
    assert registry.get("a") is registry.get("a", BreakerConfig(minimum_calls=9))
    assert registry.get("a").config.minimum_calls == 1  # first config wins
    registry.get("b").record_failure()
    snapshot = registry.snapshot()
    assert set(snapshot) == {"a", "b"}
    assert snapshot["b"].state is BreakerState.OPEN
    registry.reset()
    assert registry.snapshot() == {}


async def test_open_breaker_sends_calls_straight_to_the_fallback() -> None:
    clock = FakeClock()
    registry = BreakerRegistry(clock=clock)
    policy = ErrorRecoveryPolicy(
        strategy=ErrorStrategy.FALLBACK,
        max_retries=0,
        breaker=BreakerConfig(minimum_calls=3, cooldown_s=30),
    )
    primary = ScriptedAgent("primary", [transient(500)])
    backup = ScriptedAgent("backup", ["from backup"])
    outcomes = [
        await recover(primary, backup, policy=policy, breakers=registry, clock=clock)
        for _ in range(5)
    ]
    assert primary.calls == 3  # calls 4 and 5 never reached it
    assert backup.calls == 5
    assert [o.breaker_opened for o in outcomes] == [0, 0, 1, 0, 0]
    assert all(o.output == "from backup" for o in outcomes)
    assert [(a.agent, a.error, a.duration_s) for a in outcomes[4].attempts] == [
        ("primary", "circuit_open", 0.0),
        ("backup", None, 0.0),
    ]
    assert registry.snapshot()["primary"].opened_count == 1


async def test_after_cooldown_exactly_one_probe_goes_through() -> None:
    clock = FakeClock()
    registry = BreakerRegistry(clock=clock)
    policy = ErrorRecoveryPolicy(
        strategy=ErrorStrategy.FALLBACK,
        max_retries=0,
        breaker=BreakerConfig(minimum_calls=1, cooldown_s=30),
    )
    registry.get("primary", policy.breaker).record_failure()
    clock.advance(30)

    release = asyncio.Event()
    probe_started = asyncio.Event()
    primary_calls = 0

    async def attempt(agent: str) -> str:
        nonlocal primary_calls
        if agent == "backup":
            return "from backup"
        primary_calls += 1
        probe_started.set()
        await release.wait()
        return "from primary"

    def run() -> Any:
        return run_with_recovery(
            attempt,
            primary="primary",
            fallbacks=["backup"],
            policy=policy,
            name_of=str,
            breakers=registry,
            sleep=FakeSleep(),
        )

    async with asyncio.TaskGroup() as group:
        probe = group.create_task(run())
        await probe_started.wait()
        second = await run()  # while the probe is in flight
        assert second.agent_used == "backup"
        assert second.attempts[0].error == "circuit_open"
        release.set()
    assert primary_calls == 1
    assert probe.result().agent_used == "primary"
    assert registry.get("primary").state is BreakerState.CLOSED
    third = await run()
    assert third.agent_used == "primary"


async def test_probe_failure_reopens_the_breaker() -> None:
    clock = FakeClock()
    registry = BreakerRegistry(BreakerConfig(minimum_calls=1, cooldown_s=30), clock=clock)
    primary = ScriptedAgent("primary", [transient(500)])
    policy = ErrorRecoveryPolicy(max_retries=0, breaker=BreakerConfig(minimum_calls=1))
    first = await recover(primary, policy=policy, breakers=registry)
    assert first.breaker_opened == 1
    clock.advance(30)
    probe = await recover(primary, policy=policy, breakers=registry)
    assert (primary.calls, probe.breaker_opened) == (2, 1)
    snap = registry.get("primary").snapshot()
    assert (snap.state, snap.opened_count, snap.retry_in_s) == (BreakerState.OPEN, 2, 30.0)


async def test_open_primary_without_fallback_gives_circuit_open() -> None:
    clock = FakeClock()
    registry = BreakerRegistry(clock=clock)
    config = BreakerConfig(minimum_calls=2, cooldown_s=30)
    breaker = registry.get("primary", config)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(10)
    primary = ScriptedAgent("primary", ["never"])
    outcome = await recover(primary, policy=ErrorRecoveryPolicy(breaker=config), breakers=registry)
    assert primary.calls == 0
    error = outcome.error
    assert isinstance(error, CircuitOpen)
    assert (error.agent, error.failures, error.retry_in_s) == ("primary", 2, 20.0)
    assert [a.error for a in outcome.attempts] == ["circuit_open"]


async def test_a_breaker_opened_mid_call_stops_the_retries_at_once() -> None:
    registry = BreakerRegistry()
    primary = ScriptedAgent("primary", [transient(500)])
    backup = ScriptedAgent("backup", ["from backup"])
    sleep = FakeSleep()
    outcome = await recover(
        primary,
        backup,
        policy=ErrorRecoveryPolicy(
            strategy=ErrorStrategy.FALLBACK,
            max_retries=5,
            breaker=BreakerConfig(minimum_calls=2),
        ),
        breakers=registry,
        sleep=sleep,
    )
    assert primary.calls == 2
    assert len(sleep.waits) == 1  # no sleep before a retry the breaker would refuse
    assert (outcome.agent_used, outcome.breaker_opened) == ("backup", 1)


async def test_request_faults_and_refusals_do_not_count_against_the_breaker() -> None:
    registry = BreakerRegistry()
    policy = ErrorRecoveryPolicy(max_retries=0, breaker=BreakerConfig(minimum_calls=1))
    for exc in (HTTPStatusFailure(400), HTTPStatusFailure(422), _context_500_as_400()):
        await recover(ScriptedAgent("a", [exc]), policy=policy, breakers=registry)
    assert registry.get("a").state is BreakerState.CLOSED
    await recover(ScriptedAgent("a", [HTTPStatusFailure(401)]), policy=policy, breakers=registry)
    assert registry.get("a").state is BreakerState.OPEN  # a bad key is the agent's fault


def _context_500_as_400() -> HTTPStatusFailure:
    exc = HTTPStatusFailure(400)
    exc.args = ("context_length_exceeded",)
    return exc


async def test_two_calls_share_one_registry() -> None:
    registry = BreakerRegistry()
    policy = ErrorRecoveryPolicy(max_retries=1, breaker=BreakerConfig(minimum_calls=3))
    first = await recover(
        ScriptedAgent("agent", [transient(500)]), policy=policy, breakers=registry
    )
    assert first.breaker_opened == 0
    assert registry.get("agent").snapshot().failures_in_window == 2
    other = ScriptedAgent("agent", [transient(500)])
    second = await recover(other, policy=policy, breakers=registry)
    assert (other.calls, second.breaker_opened) == (1, 1)
    # Its retry found the circuit open: it waited for the probe (the fake sleep does not
    # move the breaker's clock), and ended open, naming when the probe comes.
    assert isinstance(second.error, RetriesExhausted)
    assert isinstance(second.error.last_error, CircuitOpen)
    assert second.error.last_error.retry_in_s > 0


# --------------------------------------------------------------------------- cancellation


async def test_cancellation_during_an_attempt_propagates_and_frees_the_probe() -> None:
    clock = FakeClock()
    registry = BreakerRegistry(BreakerConfig(minimum_calls=1, cooldown_s=1), clock=clock)
    registry.get("a").record_failure()
    clock.advance(1)
    started = asyncio.Event()

    async def hang(agent: ScriptedAgent) -> Any:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(
        run_with_recovery(
            hang,
            primary=ScriptedAgent("a", []),
            policy=ErrorRecoveryPolicy(),
            name_of=agent_name,
            breakers=registry,
            sleep=FakeSleep(),
        )
    )
    await started.wait()
    assert registry.get("a").try_acquire() is False  # the hanging call holds the probe
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert registry.get("a").try_acquire() is True  # its probe slot was given back


async def test_cancelled_error_raised_by_an_attempt_is_not_retried() -> None:
    agent = ScriptedAgent("a", [asyncio.CancelledError(), "never"])
    sleep = FakeSleep()
    with pytest.raises(asyncio.CancelledError):
        await recover(agent, policy=ErrorRecoveryPolicy(retry_on=lambda exc: True), sleep=sleep)
    assert (agent.calls, sleep.waits) == (1, [])


async def test_cancellation_during_backoff_propagates() -> None:
    agent = ScriptedAgent("a", [transient(503), "never"])
    sleeping = asyncio.Event()

    async def slow_sleep(seconds: float) -> None:
        sleeping.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(recover(agent, policy=no_breaker(), sleep=slow_sleep))  # type: ignore[arg-type]
    await sleeping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert agent.calls == 1


async def test_keyboard_interrupt_propagates() -> None:
    agent = ScriptedAgent("a", [KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        await recover(agent, policy=ErrorRecoveryPolicy(retry_on=lambda exc: True))
    assert agent.calls == 1


# --------------------------------------------------------------------------- invariants

OUTCOMES = st.sampled_from(["ok", "transient", "outage", "permanent", "refused"])


def _make(kind: str) -> Any:
    return {
        "ok": "output",
        "transient": transient(503),  # backpressure: excused up to backpressure_retries
        "outage": transient(502),
        "permanent": HTTPStatusFailure(400),
        "refused": BudgetExceeded(
            agent="x", spent_usd=1, reserved_usd=0, estimate_usd=1, limit_usd=1
        ),
    }[kind]


@settings(max_examples=150, deadline=None)
@given(
    strategy=st.sampled_from(list(ErrorStrategy)),
    max_retries=st.integers(0, 4),
    scripts=st.lists(st.lists(OUTCOMES, min_size=1, max_size=8), min_size=1, max_size=4),
    threshold=st.one_of(st.none(), st.integers(1, 4)),
    repeats=st.integers(1, 3),
)
def test_attempts_never_exceed_the_maximum(
    strategy: ErrorStrategy,
    max_retries: int,
    scripts: list[list[str]],
    threshold: int | None,
    repeats: int,
) -> None:
    if strategy is not ErrorStrategy.FALLBACK:
        scripts = scripts[:1]
    breaker = None if threshold is None else BreakerConfig(minimum_calls=threshold)
    policy = ErrorRecoveryPolicy(strategy=strategy, max_retries=max_retries, breaker=breaker)
    agents = [
        ScriptedAgent(f"agent{i}", [_make(k) for k in script]) for i, script in enumerate(scripts)
    ]
    registry = BreakerRegistry()
    per_agent = policy.most_attempts_per_agent
    assert per_agent == (1 if strategy is ErrorStrategy.FAIL else 1 + max_retries + 5)
    for _ in range(repeats):  # later calls meet breakers opened by earlier ones
        calls_before = [a.calls for a in agents]
        outcome = asyncio.run(recover(agents[0], *agents[1:], policy=policy, breakers=registry))
        assert len(outcome.attempts) <= per_agent * len(agents)
        assert [a.number for a in outcome.attempts] == list(range(1, len(outcome.attempts) + 1))
        for agent, before in zip(agents, calls_before, strict=True):
            assert agent.calls - before <= per_agent
            # Beyond the backpressure allowance every attempt counts toward max_retries.
            mine = [a for a in outcome.attempts if a.agent == agent.name]
            failures = sum(not a.backpressure for a in mine)
            assert failures <= policy.attempts_per_agent
        assert (outcome.error is None) == (outcome.agent_used is not None)
        if outcome.error is None:
            assert outcome.output == "output"
            assert outcome.attempts[-1].error is None


@settings(max_examples=200)
@given(
    initial=st.floats(0.0, 10.0),
    multiplier=st.floats(1.0, 5.0),
    extra=st.floats(0.0, 100.0),
)
def test_backoff_before_jitter_is_non_decreasing_and_capped(
    initial: float, multiplier: float, extra: float
) -> None:
    cap = initial + extra
    policy = ErrorRecoveryPolicy(
        backoff_initial_s=initial, backoff_multiplier=multiplier, backoff_max_s=cap, jitter_s=0.0
    )
    wait = backoff_wait(policy)
    waits = [wait(state_after(n, transient())) for n in range(1, 40)]
    assert waits[0] == pytest.approx(min(initial, cap))
    assert all(a <= b for a, b in itertools.pairwise(waits))
    assert all(0.0 <= w <= cap for w in waits)


@settings(max_examples=200)
@given(
    attempt_number=st.integers(1, 50),
    jitter=st.floats(0.0, 5.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_jitter_is_additive_and_bounded(attempt_number: int, jitter: float, seed: int) -> None:
    policy = ErrorRecoveryPolicy(jitter_s=jitter)
    base = backoff_wait(dataclasses.replace(policy, jitter_s=0.0))(state_after(attempt_number))
    waited = backoff_wait(policy, rng=random.Random(seed))(state_after(attempt_number))
    assert base <= waited <= base + jitter


@settings(max_examples=200)
@given(
    asked=st.floats(0.0, 1e7),
    cap=st.floats(0.0, 600.0),
    attempt_number=st.integers(1, 20),
)
def test_waits_with_retry_after_never_exceed_the_cap(
    asked: float, cap: float, attempt_number: int
) -> None:
    policy = ErrorRecoveryPolicy(retry_after_cap_s=cap)
    error = AgentError(agent="a", cause_type="X", detail="d", retryable=True, retry_after_s=asked)
    waited = backoff_wait(policy)(state_after(attempt_number, error))
    assert min(asked, cap) <= waited <= min(asked, cap) * (1 + RETRY_AFTER_SPREAD)


def test_an_error_raised_while_handling_a_timeout_is_not_transient() -> None:
    def handler_bug() -> None:
        try:
            raise TimeoutError("slow")
        except TimeoutError:
            {}["missing"]  # a bug in the handler: implicit context, not a cause

    def wrapped() -> None:
        try:
            raise TimeoutError("slow")
        except TimeoutError as cause:
            raise RuntimeError("wrapped") from cause

    with pytest.raises(KeyError) as bug:
        handler_bug()
    assert not is_transient(bug.value)
    with pytest.raises(RuntimeError) as wrap:
        wrapped()
    assert is_transient(wrap.value)  # explicitly raised from a timeout: transient


def test_an_outage_after_busy_good_traffic_opens_the_breaker_at_once() -> None:
    # 1,000 successes in the last 30 s must not outvote the first failures of an outage:
    # the window is the latest 50 calls, so 25 failures in a row reach 50%.
    clock = FakeClock()
    breaker = CircuitBreaker("a", BreakerConfig(), clock=clock)
    for _ in range(1000):
        breaker.record_success()
        clock.advance(0.01)
    opened_after = next(n for n in range(1, 100) if breaker.record_failure())
    assert opened_after == 25
    snap = breaker.snapshot()
    assert (snap.calls_in_window, snap.failures_in_window) == (50, 25)


def test_calls_older_than_the_window_leave_it() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("a", BreakerConfig(minimum_calls=4, window_s=10), clock=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.advance(10.5)  # those three are stale now: one fresh failure is not a rate
    assert breaker.record_failure() is False
    assert breaker.snapshot().calls_in_window == 1


def test_the_window_must_hold_the_minimum() -> None:
    with pytest.raises(ConfigurationError, match="window_calls"):
        BreakerConfig(minimum_calls=30, window_calls=20)


async def test_backpressure_answers_have_their_own_allowance_beside_max_retries() -> None:
    # Four 429s and a 500, then an answer: with max_retries=1 the 429s are excused (the
    # provider did no work and said when to come back) and the 500 uses the one retry.
    script = [transient(429)] * 4 + [transient(500), "done"]
    agent = ScriptedAgent("a", script)
    outcome = await recover(agent, policy=no_breaker(max_retries=1), sleep=FakeSleep())
    assert (outcome.output, agent.calls, outcome.retries) == ("done", 6, 5)
    assert [a.backpressure for a in outcome.attempts] == [True] * 4 + [False, False]
    # Past the allowance a 429 counts like any failure: 5 excused, then 1 + max_retries.
    agent = ScriptedAgent("b", [transient(429)])
    outcome = await recover(agent, policy=no_breaker(max_retries=1), sleep=FakeSleep())
    assert isinstance(outcome.error, RetriesExhausted)
    assert agent.calls == 5 + 2 == no_breaker(max_retries=1).most_attempts_per_agent
    # backpressure_retries=0 counts them like any failure from the first.
    agent = ScriptedAgent("c", [transient(429)])
    policy = no_breaker(max_retries=1, backpressure_retries=0)
    outcome = await recover(agent, policy=policy, sleep=FakeSleep())
    assert agent.calls == 2
    # FAIL means the first failure is final, backpressure included.
    agent = ScriptedAgent("d", [transient(429)])
    policy = no_breaker(strategy=ErrorStrategy.FAIL)
    outcome = await recover(agent, policy=policy, sleep=FakeSleep())
    assert agent.calls == 1 == policy.most_attempts_per_agent


@pytest.mark.parametrize("value", [-1, 1.5, True, "3", None])
def test_backpressure_retries_must_be_a_whole_number(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="backpressure_retries must be an int >= 0"):
        ErrorRecoveryPolicy(backpressure_retries=value)
