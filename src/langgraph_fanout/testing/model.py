"""``SimulatedChatModel``: a real LangChain chat model whose answers are simulated.

Nothing here calls a real model: answers, latency, token usage and failures are
simulated, so the whole stack (callbacks, ``create_agent``, LangGraph, our guards) runs
offline, fast and reproducibly.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Self

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from langgraph_fanout.errors import ConfigurationError
from langgraph_fanout.testing.calls import (
    _CallState,
    _conversation_digest,
    _derived_rng,
    _outcome,
    _Plan,
    _prompt_text,
    _sample_index,
)
from langgraph_fanout.testing.failures import (
    FailureSpec,
    ScriptExhaustedError,
    _check_failure_spec,
    _make_failure,
)
from langgraph_fanout.testing.latency import LatencyModel
from langgraph_fanout.testing.tokens import (
    _input_tokens,
    _tool_calls_tokens,
    count_simulated_tokens,
)


class SimulatedChatModel(BaseChatModel):
    """A SIMULATED chat model for tests and offline demos; it is not a real model.

    Answers come, in this order of precedence, from ``responses`` (scripted, in call
    order), ``answer(prompt, rng)``, a seeded choice among ``choices``, or the default
    ``"Simulated answer to: <prompt>"``. Every call sleeps its latency (``latency`` or
    ``latency_s``) through the injectable ``sleep``/``sync_sleep``, may fail as scripted in
    ``failures`` or at random with ``failure_rate``, and returns an ``AIMessage`` with
    simulated ``usage_metadata`` (``count_simulated_tokens``: 4 characters per token, plus
    4 per message and 3 per reply; output never above ``max_tokens``, the text is cut and
    ``finish_reason`` is ``"length"``) unless ``usage_override`` gives exact counts.

    Determinism: for a given ``seed``, the answer, latency, random failure and generated
    tool-call ids of a call depend only on ``(seed, conversation, k)``, where the
    conversation is every message's type and text, and ``k`` is the call's sample index
    (kwarg or ``config["metadata"]["sample_index"]``) when given, else the number of
    earlier calls on this instance with the same conversation (a 16-byte digest per
    distinct conversation is kept to count them). So concurrent scheduling
    never moves an answer from one prompt to another; calls with the same conversation in
    flight together receive the same set of answers, in arrival order. ``responses`` and
    ``failures`` are consumed in arrival order (a failed call consumes no response), so
    they are exact for sequential calls only. ``reset()`` starts everything over; a copy
    (``model_copy``, ``deepcopy``) starts with fresh counters and scripts.

    Example:
        >>> model = SimulatedChatModel(
        ...     responses=["4"], failures=["rate_limit"], usage_override=(10, 2)
        ... )
        >>> model.invoke("2+2?")  # raises openai.RateLimitError (429)
        >>> model.invoke("2+2?").usage_metadata["total_tokens"]
        12
    """

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    model_name: str = Field(default="simulated-small", alias="model")
    """Shown as ``response_metadata["model_name"]``; also the pricing id."""
    max_tokens: int | None = Field(default=256, ge=1)
    """Maximum output tokens: simulated outputs never report more (worst case for budgets)."""
    temperature: float = Field(default=0.0, ge=0.0)
    """Informational only (reported to tracing and cache keys); ``seed`` drives randomness."""
    seed: int = 0
    latency_s: float = Field(default=0.0, ge=0.0)
    """Fixed latency per call, in seconds; ignored when ``latency`` is set."""
    latency: LatencyModel | None = None
    """Latency distribution, e.g. ``lognormal_latency(0.8)``; drawn from the per-call RNG."""
    sleep: Callable[[float], Awaitable[None]] = Field(default=asyncio.sleep, exclude=True)
    """Awaited with each async call's latency (inject a fake clock here)."""
    sync_sleep: Callable[[float], None] = Field(default=time.sleep, exclude=True)
    """Called with each sync call's latency when it is positive."""
    responses: Sequence[str | AIMessage] | None = None
    """Scripted answers; an ``AIMessage`` may carry ``tool_calls`` to drive an agent."""
    cycle_responses: bool = False
    """Repeat ``responses`` when used up instead of raising ``ScriptExhaustedError``."""
    answer: Callable[[str, random.Random], str] | None = None
    """Computes an answer from the last human message text and the per-call RNG."""
    choices: Sequence[str] | None = None
    """Seeded choice among these answers (e.g. votes)."""
    failures: Sequence[FailureSpec] = ()
    """Scripted failures by call index, e.g. ``["rate_limit", None]``: first call 429."""
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    """Probability that a call without a scripted failure fails with ``failure_kind``."""
    failure_kind: FailureSpec = "rate_limit"
    usage_override: tuple[int, int] | None = None
    """Exact ``(input_tokens, output_tokens)`` for every call, ``max_tokens`` not applied."""
    record_prompts: bool = False
    """Keep every prompt text in ``prompts`` (off by default: memory grows per call)."""

    _state: _CallState = PrivateAttr(default_factory=_CallState)

    @field_validator("failures")
    @classmethod
    def _check_failures(cls, value: Sequence[FailureSpec]) -> Sequence[FailureSpec]:
        for spec in value:
            _check_failure_spec(spec)
        return value

    @field_validator("failure_kind")
    @classmethod
    def _check_failure_kind(cls, value: FailureSpec) -> FailureSpec:
        _check_failure_spec(value)
        return value

    @field_validator("choices", "responses")
    @classmethod
    def _check_not_empty(cls, value: Sequence[Any] | None) -> Sequence[Any] | None:
        if value is not None and (isinstance(value, str) or len(value) == 0):
            raise ConfigurationError("responses/choices must be a non-empty list of items")
        return value

    @field_validator("usage_override")
    @classmethod
    def _check_usage(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 0:
            raise ConfigurationError(f"usage_override counts must be >= 0, got {value}")
        return value

    # ------------------------------------------------------------------ observability

    @property
    def model(self) -> str:
        """Alias of ``model_name``."""
        return self.model_name

    @property
    def calls(self) -> int:
        """How many times the model was called (failed calls included)."""
        return self._state.calls

    @property
    def in_flight(self) -> int:
        """Calls started and not yet finished."""
        return self._state.in_flight

    @property
    def peak_in_flight(self) -> int:
        """The largest ``in_flight`` seen since creation or ``reset()``."""
        return self._state.peak_in_flight

    @property
    def prompts(self) -> list[str]:
        """The prompt texts received, in arrival order (empty unless ``record_prompts``)."""
        with self._state.lock:
            return list(self._state.prompts)

    def __copy__(self) -> Self:
        copied = super().__copy__()
        copied._state = _CallState()  # a copy is a new simulated endpoint
        return copied

    def reset(self) -> None:
        """Forget calls, recorded prompts and script positions (calls in flight stay counted)."""
        self._state.reset()

    # ------------------------------------------------------------------ BaseChatModel

    @property
    def _llm_type(self) -> str:
        return "simulated-chat-model"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "simulated"
        return params

    def get_num_tokens(self, text: str) -> int:
        """The simulated token count of ``text`` (see ``count_simulated_tokens``)."""
        return count_simulated_tokens(text)

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Exactly the ``input_tokens`` a call with these messages will report."""
        formatted = [convert_to_openai_tool(t) for t in tools] if tools else None
        return _input_tokens(messages, formatted)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools like a real model; scripted tool calls must name a bound tool.

        Example:
            >>> agent = create_agent(SimulatedChatModel(responses=[...]), tools=[search])
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        plan = self._plan(messages, stop, _sample_index(kwargs, run_manager), kwargs)
        self._enter()
        try:
            if plan.delay_s > 0:
                self.sync_sleep(plan.delay_s)
            return _outcome(plan)
        finally:
            self._exit()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        plan = self._plan(messages, stop, _sample_index(kwargs, run_manager), kwargs)
        self._enter()
        try:
            await self.sleep(plan.delay_s)  # even 0 yields, as network I/O would
            return _outcome(plan)
        finally:
            self._exit()

    # ------------------------------------------------------------------ internals

    def _enter(self) -> None:
        with self._state.lock:
            self._state.in_flight += 1
            self._state.peak_in_flight = max(self._state.peak_in_flight, self._state.in_flight)

    def _exit(self) -> None:
        with self._state.lock:
            self._state.in_flight -= 1

    def _plan(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        sample_index: int | None,
        kwargs: Mapping[str, Any],
    ) -> _Plan:
        if not messages:
            raise ValueError("SimulatedChatModel needs at least one message")
        digest = _conversation_digest(messages)
        prompt = _prompt_text(messages)
        with self._state.lock:
            call_index = self._state.calls
            self._state.calls += 1
            occurrence = self._state.seen.get(digest, 0)
            self._state.seen[digest] = occurrence + 1
            if self.record_prompts:
                self._state.prompts.append(prompt)
            k = occurrence if sample_index is None else sample_index
            # A repeat of the same sample is a retry: its failure draw is a fresh one (a
            # transient failure is transient), while its answer stays the sample's answer.
            repeat = self._state.seen.get((digest, k), 0)
            self._state.seen[(digest, k)] = repeat + 1
            scripted = self.failures[call_index] if call_index < len(self.failures) else None
            failing = scripted is not None or (
                self.failure_rate > 0
                and _derived_rng(self.seed, f"failure/{repeat}", k, digest).random()
                < self.failure_rate
            )
            scripted_response: str | AIMessage | None = None
            if not failing and self.responses is not None:
                position = self._state.next_response
                if position >= len(self.responses) and not self.cycle_responses:
                    raise ScriptExhaustedError("responses", len(self.responses))
                scripted_response = self.responses[position % len(self.responses)]
                self._state.next_response += 1
        latency_rng = _derived_rng(self.seed, "latency", k, digest)
        delay = self.latency(latency_rng) if self.latency is not None else self.latency_s
        if failing:
            error = _make_failure(scripted if scripted is not None else self.failure_kind)
            return _Plan(delay_s=max(0.0, delay), error=error, result=None)
        rng = _derived_rng(self.seed, "answer", k, digest)
        if scripted_response is None:
            scripted_response = self._compute_answer(prompt, rng)
        result = self._result(scripted_response, messages, stop, kwargs, rng)
        return _Plan(delay_s=max(0.0, delay), error=None, result=result)

    def _compute_answer(self, prompt: str, rng: random.Random) -> str:
        if self.answer is not None:
            return self.answer(prompt, rng)
        if self.choices is not None:
            return rng.choice(list(self.choices))
        return f"Simulated answer to: {prompt}"

    def _result(
        self,
        scripted: str | AIMessage,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: Mapping[str, Any],
        rng: random.Random,
    ) -> ChatResult:
        tools = kwargs.get("tools")
        message = AIMessage(content=scripted) if isinstance(scripted, str) else scripted
        message = message.model_copy(deep=True)
        finish_reason = "tool_calls" if message.tool_calls else "stop"
        if message.tool_calls:
            _check_tool_names(message, tools)
            message.tool_calls = [
                {**call, "id": call.get("id") or f"call_sim_{rng.getrandbits(64):016x}"}
                for call in message.tool_calls
            ]
        if isinstance(message.content, str) and stop:
            cuts = [message.content.find(s) for s in stop if s and s in message.content]
            if cuts:
                message.content = message.content[: min(cuts)]
        output = count_simulated_tokens(message.text) + _tool_calls_tokens(message)
        output = max(1, output)
        if self.max_tokens is not None and output > self.max_tokens:
            output = self.max_tokens
            finish_reason = "length"
            if isinstance(message.content, str):
                message.content = message.content[: self.max_tokens * 4]
        input_ = _input_tokens(messages, tools)
        usage = message.usage_metadata
        if self.usage_override is not None or usage is None:
            if self.usage_override is not None:
                input_, output = self.usage_override
            usage = UsageMetadata(
                input_tokens=input_, output_tokens=output, total_tokens=input_ + output
            )
        message.usage_metadata = usage
        message.response_metadata = {
            "model_name": self.model_name,
            "finish_reason": finish_reason,
            **message.response_metadata,
        }
        return ChatResult(
            generations=[
                ChatGeneration(message=message, generation_info={"finish_reason": finish_reason})
            ],
            llm_output={
                "model_name": self.model_name,
                "token_usage": {
                    "prompt_tokens": usage["input_tokens"],
                    "completion_tokens": usage["output_tokens"],
                    "total_tokens": usage["total_tokens"],
                },
                "simulated": True,
            },
        )


def _check_tool_names(message: AIMessage, tools: Sequence[Any] | None) -> None:
    if not tools:
        return
    bound = {
        (tool.get("function") or {}).get("name") or tool.get("name")
        for tool in tools
        if isinstance(tool, Mapping)
    }
    for call in message.tool_calls:
        if call["name"] not in bound:
            raise ValueError(
                f"scripted tool call {call['name']!r} names a tool that is not bound "
                f"(bound: {sorted(str(name) for name in bound)})"
            )
