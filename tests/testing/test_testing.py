"""Tests of the simulators in ``langgraph_fanout.testing``."""

from __future__ import annotations

import asyncio
import copy
import pickle
import random
import sys

import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain.agents import create_agent
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import ValidationError

from langgraph_fanout.testing import (
    FAILURE_KINDS,
    ScriptExhaustedError,
    SimulatedAPIError,
    SimulatedChatModel,
    bad_request_error,
    count_simulated_tokens,
    heavy_tail_latency,
    lognormal_latency,
    rate_limit_error,
    scripted_agent,
    server_error,
    timeout_error,
    uniform_latency,
)

PROMPTS = [f"question number {i}: what is {i} * {i}?" for i in range(8)]
CHOICES = [f"answer-{i}" for i in range(50)]


class FakeClock:
    """Records requested sleeps instead of waiting; yields to the loop like a real sleep."""

    def __init__(self, yields: random.Random | None = None) -> None:
        self.sleeps: list[float] = []
        self._yields = yields

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        for _ in range(self._yields.randint(0, 5) if self._yields else 1):
            await asyncio.sleep(0)

    def sync_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def _answers(model: SimulatedChatModel, prompts: list[str]) -> dict[str, str]:
    return {p: str(model.invoke(p).content) for p in prompts}


# ---------------------------------------------------------------------------- identity


def test_is_a_chat_model_documented_as_a_simulator() -> None:
    model = SimulatedChatModel(model="sim-x", temperature=0.5, seed=9)

    assert isinstance(model, BaseChatModel)
    assert "SIMULATED" in (SimulatedChatModel.__doc__ or "")
    assert model._llm_type == "simulated-chat-model"
    assert model.model_name == model.model == "sim-x"
    assert model._identifying_params == {
        "model_name": "sim-x",
        "temperature": 0.5,
        "max_tokens": 256,
        "seed": 9,
    }
    assert SimulatedChatModel(model_name="by-name").model_name == "by-name"


def test_invalid_settings_fail_up_front() -> None:
    with pytest.raises(ValidationError, match="unknown failure kind"):
        SimulatedChatModel(failures=["rate-limit"])
    with pytest.raises(ValidationError, match="unknown failure kind"):
        SimulatedChatModel(failure_kind="nope")
    with pytest.raises(ValidationError):
        SimulatedChatModel(failure_rate=1.5)
    with pytest.raises(ValidationError, match="non-empty"):
        SimulatedChatModel(responses=[])
    with pytest.raises(ValidationError):
        SimulatedChatModel(max_tokens=0)
    with pytest.raises(ValueError, match="0 <= low <= high"):
        uniform_latency(2, 1)


# ------------------------------------------------------------------------- determinism


@settings(max_examples=20, deadline=None)
@given(order=st.permutations(PROMPTS))
def test_answers_do_not_depend_on_call_order(order: list[str]) -> None:
    baseline = _answers(SimulatedChatModel(choices=CHOICES, seed=1), PROMPTS)

    assert _answers(SimulatedChatModel(choices=CHOICES, seed=1), order) == baseline


def test_seed_changes_the_answers() -> None:
    one = _answers(SimulatedChatModel(choices=CHOICES, seed=1), PROMPTS)
    two = _answers(SimulatedChatModel(choices=CHOICES, seed=2), PROMPTS)

    assert one != two


async def test_concurrent_answers_match_sequential_ones() -> None:
    baseline = _answers(SimulatedChatModel(choices=CHOICES, seed=5), PROMPTS)
    shuffled = PROMPTS[::-1]
    random.Random(0).shuffle(shuffled)
    clock = FakeClock(yields=random.Random(1))  # completions finish in a scrambled order
    model = SimulatedChatModel(choices=CHOICES, seed=5, latency_s=1.0, sleep=clock.sleep)

    results = await asyncio.gather(*(model.ainvoke(p) for p in shuffled))

    assert {p: r.content for p, r in zip(shuffled, results, strict=True)} == baseline


def test_repeated_prompt_draws_fresh_samples_reproducibly() -> None:
    def draws(model: SimulatedChatModel) -> list[str]:
        return [str(model.invoke("vote: A or B?").content) for _ in range(6)]

    first = draws(SimulatedChatModel(choices=CHOICES, seed=3))

    assert first == draws(SimulatedChatModel(choices=CHOICES, seed=3))
    assert len(set(first)) > 1  # distinct samples, not one cached answer


def test_sample_index_pins_the_answer() -> None:
    reference = SimulatedChatModel(choices=CHOICES, seed=3)
    sequential = [str(reference.invoke("same").content) for _ in range(4)]
    model = SimulatedChatModel(choices=CHOICES, seed=3)

    by_kwarg = model.invoke("same", sample_index=2).content
    by_metadata = model.invoke("same", config={"metadata": {"sample_index": 2}}).content

    assert by_kwarg == by_metadata == sequential[2]


def test_answer_callable_gets_prompt_and_rng() -> None:
    model = SimulatedChatModel(answer=lambda text, rng: f"{text.upper()}:{rng.randint(0, 9)}")

    content = str(model.invoke([SystemMessage("be terse"), HumanMessage("hi")]).content)

    assert content.startswith("HI:")
    assert (
        content
        == SimulatedChatModel(answer=model.answer)
        .invoke([SystemMessage("be terse"), HumanMessage("hi")])
        .content
    )


def test_default_answer_is_marked_simulated() -> None:
    assert SimulatedChatModel().invoke("ping").content == "Simulated answer to: ping"


# ------------------------------------------------------------------ scripts and failures


def test_scripted_responses_in_order_then_exhausted() -> None:
    model = SimulatedChatModel(responses=["a", AIMessage("b")])

    assert [model.invoke("x").content, model.invoke("y").content] == ["a", "b"]
    with pytest.raises(ScriptExhaustedError, match="all 2 scripted items") as info:
        model.invoke("z")
    assert (info.value.what, info.value.length) == ("responses", 2)
    assert model.calls == 3


def test_cycled_responses_repeat() -> None:
    model = SimulatedChatModel(responses=["a", "b"], cycle_responses=True)

    assert [m.content for m in model.batch(["1", "2", "3"], config={"max_concurrency": 1})] == [
        "a",
        "b",
        "a",
    ]


def test_scripted_failures_in_order_consume_no_response() -> None:
    model = SimulatedChatModel(responses=["a", "b"], failures=["rate_limit", None, "server_error"])

    with pytest.raises(openai.RateLimitError):
        model.invoke("x")
    assert model.invoke("x").content == "a"
    with pytest.raises(openai.InternalServerError):
        model.invoke("x")
    assert model.invoke("x").content == "b"
    assert model.calls == 4


def test_scripted_failure_accepts_instances_and_factories() -> None:
    boom = RuntimeError("boom")
    model = SimulatedChatModel(failures=[boom, lambda: server_error(503)])

    with pytest.raises(RuntimeError) as first:
        model.invoke("x")
    with pytest.raises(openai.InternalServerError) as second:
        model.invoke("x")

    assert first.value is boom
    assert second.value.status_code == 503


def test_failure_rate_is_seeded_per_prompt() -> None:
    def failing(model: SimulatedChatModel) -> set[str]:
        out = set()
        for prompt in PROMPTS:
            try:
                model.invoke(prompt)
            except openai.APITimeoutError:
                out.add(prompt)
        return out

    first = failing(SimulatedChatModel(failure_rate=0.5, failure_kind="timeout", seed=4))

    assert first == failing(SimulatedChatModel(failure_rate=0.5, failure_kind="timeout", seed=4))
    assert 0 < len(first) < len(PROMPTS)
    assert failing(SimulatedChatModel(failure_rate=1.0, failure_kind="timeout")) == set(PROMPTS)
    assert failing(SimulatedChatModel(failure_rate=0.0, failure_kind="timeout")) == set()


def test_retrying_a_randomly_failed_prompt_can_succeed() -> None:
    model = SimulatedChatModel(failure_rate=0.5, seed=0)
    outcomes = []
    for _ in range(20):
        try:
            model.invoke("same prompt")
            outcomes.append("ok")
        except openai.RateLimitError:
            outcomes.append("429")

    assert {"ok", "429"} == set(outcomes)


# --------------------------------------------------------------------- provider errors


def test_rate_limit_error_looks_like_openai() -> None:
    error = rate_limit_error(retry_after_s=3)

    assert isinstance(error, openai.RateLimitError)
    assert isinstance(error, openai.APIStatusError)
    assert error.status_code == 429
    assert error.response.status_code == 429
    assert error.response.headers["retry-after"] == "3"
    assert error.response.headers["retry-after-ms"] == "3000"
    assert error.body == {
        "message": "Rate limit reached (simulated).",
        "type": "rate_limit_exceeded",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert str(error).startswith("Error code: 429")
    assert "retry-after" not in rate_limit_error().response.headers


def test_other_provider_errors_classify_by_type_and_status() -> None:
    server = server_error(503, retry_after_s=0.5)
    bad = bad_request_error("context too long")

    assert isinstance(server, openai.InternalServerError)
    assert server.status_code == 503
    assert server.response.headers["retry-after"] == "0.5"
    assert isinstance(bad, openai.BadRequestError)
    assert bad.status_code == 400
    assert "context too long" in str(bad)
    assert isinstance(timeout_error(), openai.APITimeoutError)
    with pytest.raises(ValueError, match=r"500\.\.599"):
        server_error(404)


def test_failure_kinds_cover_every_factory() -> None:
    model = SimulatedChatModel(failures=list(FAILURE_KINDS))
    raised = []
    for _ in FAILURE_KINDS:
        with pytest.raises(Exception) as info:
            model.invoke("x")
        raised.append(type(info.value))

    assert raised == [
        openai.RateLimitError,
        openai.InternalServerError,
        openai.APITimeoutError,
        openai.BadRequestError,
    ]


def test_without_openai_factories_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # makes `import openai` fail

    limited = rate_limit_error(2)
    server = server_error(502)
    bad = bad_request_error()

    assert isinstance(limited, SimulatedAPIError)
    assert (limited.status_code, limited.retry_after_s, limited.is_retryable) == (429, 2, True)
    assert limited.response.headers["retry-after"] == "2"
    assert isinstance(server, SimulatedAPIError)
    assert (server.status_code, server.is_retryable) == (502, True)
    assert isinstance(bad, SimulatedAPIError)
    assert (bad.status_code, bad.is_retryable) == (400, False)
    assert type(timeout_error()) is TimeoutError


def test_simulator_errors_pickle() -> None:
    error = pickle.loads(pickle.dumps(SimulatedAPIError(503, 1.5, "down")))
    exhausted = pickle.loads(pickle.dumps(ScriptExhaustedError("outputs", 3)))

    assert (error.status_code, error.retry_after_s, str(error)) == (503, 1.5, "down")
    assert error.response.headers["retry-after"] == "1.5"
    assert (exhausted.what, exhausted.length) == ("outputs", 3)


# ------------------------------------------------------------------------------- usage


def test_usage_and_response_metadata_follow_the_documented_rule() -> None:
    model = SimulatedChatModel(model="sim-usage", responses=["abcdefgh"])
    prompt = "hello world"  # 11 chars -> 3 tokens

    message = model.invoke(prompt)

    assert count_simulated_tokens(prompt) == 3
    assert message.usage_metadata == {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}
    assert message.response_metadata["model_name"] == "sim-usage"
    assert message.response_metadata["finish_reason"] == "stop"
    assert model.get_num_tokens_from_messages([HumanMessage(prompt)]) == 10
    assert model.get_num_tokens("abcdefgh") == 2


async def test_usage_is_counted_by_the_usage_callback() -> None:
    model = SimulatedChatModel(model="sim-billing", usage_override=(100, 7))
    handler = UsageMetadataCallbackHandler()

    model.invoke("a", config={"callbacks": [handler]})
    await model.ainvoke("b", config={"callbacks": [handler]})
    model.batch(["c", "d"], config={"callbacks": [handler]})

    assert handler.usage_metadata["sim-billing"] == {
        "input_tokens": 400,
        "output_tokens": 28,
        "total_tokens": 428,
    }


def test_scripted_usage_is_kept_unless_overridden() -> None:
    usage = {"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}
    scripted = AIMessage("hi", usage_metadata=usage, response_metadata={"model_name": "other"})

    kept = SimulatedChatModel(responses=[scripted]).invoke("x")
    forced = SimulatedChatModel(responses=[scripted], usage_override=(5, 6)).invoke("x")

    assert kept.usage_metadata == usage
    assert kept.response_metadata["model_name"] == "other"
    assert forced.usage_metadata == {"input_tokens": 5, "output_tokens": 6, "total_tokens": 11}


def test_output_never_exceeds_max_tokens() -> None:
    model = SimulatedChatModel(responses=["x" * 100], max_tokens=5)

    message = model.invoke("long please")

    assert message.content == "x" * 20
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == 5
    assert message.response_metadata["finish_reason"] == "length"


def test_stop_sequences_cut_the_answer() -> None:
    model = SimulatedChatModel(responses=["one. two. three."])

    assert model.invoke("count", stop=[". t"]).content == "one"


# ----------------------------------------------------------------------------- latency


async def test_fixed_latency_goes_through_the_injected_sleeps() -> None:
    clock = FakeClock()
    model = SimulatedChatModel(latency_s=0.25, sleep=clock.sleep, sync_sleep=clock.sync_sleep)

    await model.ainvoke("a")
    model.invoke("b")

    assert clock.sleeps == [0.25, 0.25]


async def test_latency_distribution_is_seeded() -> None:
    async def delays(seed: int) -> list[float]:
        clock = FakeClock()
        model = SimulatedChatModel(
            latency=lognormal_latency(0.8, sigma=0.6), seed=seed, sleep=clock.sleep
        )
        await asyncio.gather(*(model.ainvoke(p) for p in PROMPTS))
        return sorted(clock.sleeps)

    first = await delays(11)

    assert first == await delays(11)
    assert first != await delays(12)
    assert len(set(first)) == len(PROMPTS)


def test_latency_helpers_draw_within_their_shape() -> None:
    rng = random.Random(0)
    uniform = [uniform_latency(0.1, 0.3)(rng) for _ in range(200)]
    straggler = [heavy_tail_latency(0.2, 5.0, p_slow=0.1)(rng) for _ in range(1000)]

    assert all(0.1 <= d <= 0.3 for d in uniform)
    assert lognormal_latency(0.8, sigma=0)(rng) == pytest.approx(0.8)
    assert set(straggler) == {0.2, 5.0}
    assert 50 < straggler.count(5.0) < 150
    assert heavy_tail_latency(0.2, 5.0, p_slow=1.0)(rng) == 5.0


# ------------------------------------------------------------------- sync, async, batch


async def test_sync_async_and_batch_agree() -> None:
    model = SimulatedChatModel(choices=CHOICES, seed=8)
    expected = [str(SimulatedChatModel(choices=CHOICES, seed=8).invoke(p).content) for p in PROMPTS]

    sync_batch = [str(m.content) for m in model.batch(PROMPTS)]
    model.reset()
    async_batch = [str(m.content) for m in await model.abatch(PROMPTS)]
    model.reset()
    single = str((await model.ainvoke(PROMPTS[0])).content)

    assert sync_batch == async_batch == expected
    assert single == expected[0]
    assert model.calls == 1


async def test_peak_in_flight_counts_concurrency() -> None:
    barrier = asyncio.Barrier(5)

    async def rendezvous(_: float) -> None:
        await barrier.wait()  # every call must be in flight together to pass

    model = SimulatedChatModel(latency_s=1.0, sleep=rendezvous)
    async with asyncio.timeout(10):  # a safety net against a hang, not a timing assertion
        await asyncio.gather(*(model.ainvoke(f"p{i}") for i in range(5)))

    assert model.peak_in_flight == 5
    assert model.in_flight == 0
    assert model.calls == 5


async def test_failed_calls_leave_flight() -> None:
    model = SimulatedChatModel(failures=["rate_limit"])

    with pytest.raises(openai.RateLimitError):
        await model.ainvoke("x")

    assert (model.calls, model.in_flight, model.peak_in_flight) == (1, 0, 1)


def test_prompts_are_recorded_only_on_request_and_reset() -> None:
    quiet = SimulatedChatModel()
    loud = SimulatedChatModel(record_prompts=True)
    quiet.invoke("a")
    loud.invoke([SystemMessage("sys"), HumanMessage("b")])
    loud.invoke("c")

    assert quiet.prompts == []
    assert loud.prompts == ["b", "c"]
    loud.reset()
    assert (loud.prompts, loud.calls, loud.peak_in_flight) == ([], 0, 0)


def test_a_copy_starts_with_fresh_state() -> None:
    model = SimulatedChatModel(responses=["a", "b"])
    model.invoke("x")

    shallow = model.model_copy(update={"max_tokens": 5})
    deep = copy.deepcopy(model)

    assert (shallow.calls, deep.calls, shallow.max_tokens) == (0, 0, 5)
    assert [shallow.invoke("y").content, deep.invoke("y").content] == ["a", "a"]
    assert model.invoke("z").content == "b"
    assert model.calls == 2


# --------------------------------------------------------------------------- tool calls


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_create_agent_runs_a_scripted_tool_call_then_answers() -> None:
    model = SimulatedChatModel(
        responses=[
            AIMessage("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "call_1"}]),
            "The sum is 5.",
        ],
        record_prompts=True,
    )
    agent = create_agent(model, tools=[add])

    state = agent.invoke({"messages": [HumanMessage("What is 2 + 3?")]})

    kinds = [type(m).__name__ for m in state["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    tool_message = state["messages"][2]
    assert isinstance(tool_message, ToolMessage)
    assert (tool_message.content, tool_message.tool_call_id) == ("5", "call_1")
    assert state["messages"][1].response_metadata["finish_reason"] == "tool_calls"
    assert state["messages"][-1].content == "The sum is 5."
    assert model.calls == 2


async def test_scripted_tool_calls_get_ids_and_must_name_bound_tools() -> None:
    call = AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 1}, "id": None}])
    wrong = AIMessage("", tool_calls=[{"name": "multiply", "args": {}, "id": "c"}])
    model = SimulatedChatModel(responses=[call, wrong])
    bound = model.bind_tools([add], tool_choice="auto")

    message = await bound.ainvoke("1 + 1?")
    with pytest.raises(ValueError, match="'multiply' names a tool that is not bound"):
        await bound.ainvoke("1 * 1?")

    assert message.tool_calls[0]["id"]
    assert message.tool_calls[0]["id"].startswith("call_sim_")
    assert call.tool_calls[0]["id"] is None  # the script itself is never mutated


# ------------------------------------------------------------------------ scripted agents


async def test_scripted_agent_outputs_failures_and_latency() -> None:
    clock = FakeClock()
    agent = scripted_agent(
        ["a", ValueError("bad output"), "c"],
        latency_s=0.5,
        failures=[None, "rate_limit"],
        sleep=clock.sleep,
    )

    assert await agent("in-1") == "a"
    with pytest.raises(openai.RateLimitError):
        await agent("in-2")
    with pytest.raises(ValueError, match="bad output"):
        await agent("in-3")
    assert await agent("in-4") == "c"
    with pytest.raises(ScriptExhaustedError):
        await agent("in-5")
    assert agent.calls == 5
    assert agent.inputs == ["in-1", "in-2", "in-3", "in-4", "in-5"]
    assert clock.sleeps == [0.5] * 4


async def test_scripted_agent_callable_outputs_are_order_independent() -> None:
    async def double(x: int) -> int:
        return 2 * x

    agent = scripted_agent(double, name="doubler")
    sync_agent = scripted_agent(str.upper)

    assert await asyncio.gather(*(agent(i) for i in [3, 1, 2])) == [6, 2, 4]
    assert await sync_agent("hi") == "HI"
    assert agent.__name__ == "doubler"


def test_scripted_agent_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="non-empty list or a callable"):
        scripted_agent("abc")
    with pytest.raises(ValueError, match="latency_s"):
        scripted_agent(["a"], latency_s=-1)
    with pytest.raises(ValueError, match="unknown failure kind"):
        scripted_agent(["a"], failures=["oops"])
