"""Simulators for tests and offline demos: a fake chat model and scripted agents.

Nothing in this module calls a real model. ``SimulatedChatModel`` is a real LangChain
``BaseChatModel`` whose answers, latency, token usage and failures are simulated, so the
whole stack (callbacks, ``create_agent``, LangGraph, our guards) runs offline, fast and
reproducibly. ``scripted_agent`` is the smaller tool for engine tests that need no model.

Failure factories build exceptions that look like what a provider SDK raises
(``openai.RateLimitError`` with a real 429 response and ``retry-after`` header, ...), so
retry classification can be tested. ``openai`` is imported lazily and only by those
factories; without it they return ``SimulatedAPIError`` (or ``TimeoutError``), which carry
the same ``status_code`` and ``response.headers``.

Example:
    >>> model = SimulatedChatModel(choices=["yes", "no"], seed=7, latency_s=0.2)
    >>> model.invoke("Is the sky blue?").content in {"yes", "no"}
    True
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Self, TypeAlias

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from langgraph_fanout.errors import ConfigurationError

__all__ = [
    "FAILURE_KINDS",
    "SAMPLE_INDEX_KEY",
    "SIMULATED_MODEL_PRICES",
    "FailureSpec",
    "LatencyModel",
    "ScriptExhaustedError",
    "ScriptedAgent",
    "SimulatedAPIError",
    "SimulatedChatModel",
    "SimulatedResponse",
    "bad_request_error",
    "count_simulated_tokens",
    "heavy_tail_latency",
    "lognormal_latency",
    "rate_limit_error",
    "scripted_agent",
    "server_error",
    "timeout_error",
    "uniform_latency",
]

SAMPLE_INDEX_KEY: Final = "sample_index"
"""Call kwarg or ``config["metadata"]`` key that marks a sample (voter) index."""

SIMULATED_MODEL_PRICES: Final[Mapping[str, tuple[float, float]]] = {
    "simulated-small": (0.15, 0.60),
    "simulated-large": (2.50, 10.00),
}
"""Made-up prices (input, output) in USD per million tokens, for offline cost demos."""

_TOKENS_PER_MESSAGE: Final = 4
_TOKENS_PER_REPLY: Final = 3
_FAKE_URL: Final = "https://api.openai.com/v1/chat/completions"

LatencyModel: TypeAlias = Callable[[random.Random], float]
"""A latency distribution: draws seconds from the per-call RNG it is given."""

FailureSpec: TypeAlias = BaseException | str | Callable[[], BaseException] | None
"""One scripted failure: an exception, a kind name (``FAILURE_KINDS``), a factory, or None."""


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class SimulatedResponse:
    """The ``response`` of a ``SimulatedAPIError``: a status code and HTTP-like headers."""

    status_code: int
    headers: Mapping[str, str]


class SimulatedAPIError(Exception):
    """A provider-like HTTP error used when ``openai`` is not installed.

    Carries what retry classifiers look at: ``status_code``, ``response.headers``
    (``retry-after`` when given), ``retry_after_s`` and ``is_retryable`` (408, 409, 429, 5xx).

    Args:
        status_code: the simulated HTTP status.
        retry_after_s: the simulated ``retry-after`` header, in seconds.
        message: overrides the default message.

    Example:
        >>> SimulatedAPIError(429, retry_after_s=2).response.headers["retry-after"]
        '2'
    """

    def __init__(
        self, status_code: int, retry_after_s: float | None = None, message: str | None = None
    ) -> None:
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.is_retryable = status_code in (408, 409, 429) or status_code >= 500
        self.response = SimulatedResponse(status_code, _retry_headers(retry_after_s))
        self.message = message or f"Error code: {status_code} - simulated provider error"
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status_code, self.retry_after_s, self.message))


class ScriptExhaustedError(RuntimeError):
    """A scripted model or agent was called more times than it has scripted outputs.

    Args:
        what: which script ran out (``"responses"``, ``"outputs"``).
        length: how many items the script has.
    """

    def __init__(self, what: str, length: int) -> None:
        self.what = what
        self.length = length
        super().__init__(
            f"simulated {what} exhausted: all {length} scripted items were used "
            "(script more, or pass cycle=True to repeat them)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.length))


def _retry_headers(retry_after_s: float | None) -> dict[str, str]:
    headers = {"x-request-id": "req_simulated", "content-type": "application/json"}
    if retry_after_s is not None:
        seconds = float(retry_after_s)
        headers["retry-after"] = str(int(seconds)) if seconds.is_integer() else str(seconds)
        headers["retry-after-ms"] = str(round(seconds * 1000))
    return headers


def _openai_status_error(
    status: int, kind: str, message: str, retry_after_s: float | None
) -> Exception | None:
    """Build the ``openai`` error for ``status``, or None when openai is not installed."""
    try:
        import openai
    except ImportError:
        return None
    try:  # openai>=3 sends through httpx2, older versions through httpx
        import httpx2 as http
    except ImportError:  # pragma: no cover - depends on the installed openai
        import httpx as http  # type: ignore[no-redef]
    body = {"message": message, "type": kind, "param": None, "code": kind}
    response = http.Response(
        status,
        headers=_retry_headers(retry_after_s),
        json={"error": body},
        request=http.Request("POST", _FAKE_URL),
    )
    text = f"Error code: {status} - {{'error': {body!r}}}"
    cls: type[openai.APIStatusError]
    if status == 429:
        cls = openai.RateLimitError
    elif status == 400:
        cls = openai.BadRequestError
    elif status >= 500:
        cls = openai.InternalServerError
    else:
        cls = openai.APIStatusError
    return cls(text, response=response, body=body)


def rate_limit_error(retry_after_s: float | None = None) -> Exception:
    """A 429 as the provider SDK raises it: ``openai.RateLimitError`` with a real response.

    Args:
        retry_after_s: sets the ``retry-after`` (and ``retry-after-ms``) response header.

    Example:
        >>> rate_limit_error(2).response.headers["retry-after"]
        '2'
    """
    msg = "Rate limit reached (simulated)."
    return _openai_status_error(429, "rate_limit_exceeded", msg, retry_after_s) or (
        SimulatedAPIError(429, retry_after_s)
    )


def server_error(status: int = 500, *, retry_after_s: float | None = None) -> Exception:
    """A 5xx as the provider SDK raises it: ``openai.InternalServerError``.

    Args:
        status: the HTTP status, 500 to 599.
        retry_after_s: sets the ``retry-after`` header (503s often carry one).

    Raises:
        ValueError: if ``status`` is not a 5xx.
    """
    if not 500 <= status <= 599:
        raise ConfigurationError(f"server_error status must be 500..599, got {status}")
    msg = "The server had an error while processing your request (simulated)."
    return _openai_status_error(status, "server_error", msg, retry_after_s) or (
        SimulatedAPIError(status, retry_after_s)
    )


def bad_request_error(message: str = "Invalid request (simulated).") -> Exception:
    """A 400 as the provider SDK raises it: ``openai.BadRequestError`` (not retryable).

    Args:
        message: the error message in the body.
    """
    return _openai_status_error(400, "invalid_request_error", message, None) or (
        SimulatedAPIError(400, None, message)
    )


def timeout_error() -> Exception:
    """A request timeout: ``openai.APITimeoutError``, or a plain ``TimeoutError`` without openai."""
    try:
        import openai
    except ImportError:
        return TimeoutError("Request timed out (simulated).")
    try:
        import httpx2 as http
    except ImportError:  # pragma: no cover - depends on the installed openai
        import httpx as http  # type: ignore[no-redef]
    return openai.APITimeoutError(request=http.Request("POST", _FAKE_URL))


_FAILURE_FACTORIES: Final[Mapping[str, Callable[[], Exception]]] = {
    "rate_limit": rate_limit_error,
    "server_error": server_error,
    "timeout": timeout_error,
    "bad_request": bad_request_error,
}
FAILURE_KINDS: Final = tuple(_FAILURE_FACTORIES)
"""Names accepted wherever a ``FailureSpec`` is: each builds a fresh error per call."""


def _check_failure_spec(spec: object) -> None:
    if isinstance(spec, str) and spec not in _FAILURE_FACTORIES:
        raise ConfigurationError(f"unknown failure kind {spec!r}; use one of {FAILURE_KINDS}")


def _make_failure(spec: FailureSpec) -> BaseException | None:
    if spec is None or isinstance(spec, BaseException):
        return spec
    if isinstance(spec, str):
        return _FAILURE_FACTORIES[spec]()
    return spec()


# -------------------------------------------------------------------------- latency


@dataclass(frozen=True, slots=True, kw_only=True)
class _UniformLatency:
    low: float
    high: float

    def __call__(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True, slots=True, kw_only=True)
class _LognormalLatency:
    median: float
    sigma: float

    def __call__(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.median), self.sigma)


@dataclass(frozen=True, slots=True, kw_only=True)
class _StragglerLatency:
    base: float
    slow: float
    p_slow: float

    def __call__(self, rng: random.Random) -> float:
        return self.slow if rng.random() < self.p_slow else self.base


def uniform_latency(low: float, high: float) -> LatencyModel:
    """Latency drawn uniformly from ``[low, high]`` seconds.

    Example:
        >>> SimulatedChatModel(latency=uniform_latency(0.1, 0.5))
    """
    if not 0 <= low <= high:
        raise ConfigurationError(f"uniform_latency needs 0 <= low <= high, got {low}, {high}")
    return _UniformLatency(low=low, high=high)


def lognormal_latency(median: float, sigma: float = 0.5) -> LatencyModel:
    """Log-normal latency around ``median`` seconds (the usual shape of API latency).

    Args:
        median: the median latency in seconds (> 0).
        sigma: the spread of ``log(latency)``; 0 means always ``median``.
    """
    if median <= 0 or sigma < 0:
        raise ConfigurationError(f"lognormal_latency needs median > 0, sigma >= 0; got {median}")
    return _LognormalLatency(median=median, sigma=sigma)


def heavy_tail_latency(base: float, slow: float, p_slow: float) -> LatencyModel:
    """Mostly ``base`` seconds, but a straggler taking ``slow`` seconds with probability ``p_slow``.

    Example:
        >>> heavy_tail_latency(0.2, 5.0, p_slow=0.05)  # 1 call in 20 is a straggler
    """
    if base < 0 or slow < 0 or not 0 <= p_slow <= 1:
        raise ConfigurationError("heavy_tail_latency needs base, slow >= 0 and 0 <= p_slow <= 1")
    return _StragglerLatency(base=base, slow=slow, p_slow=p_slow)


# --------------------------------------------------------------------------- tokens


def count_simulated_tokens(text: str) -> int:
    """The simulator's token count of ``text``: one token per 4 characters, rounded up.

    This is a cheap stand-in for a tokenizer, not a real count.
    """
    return -(-len(text) // 4)


def _tool_calls_tokens(message: BaseMessage) -> int:
    calls = getattr(message, "tool_calls", None) or []
    return sum(
        count_simulated_tokens(call["name"] + json.dumps(call["args"], sort_keys=True))
        for call in calls
    )


def _input_tokens(messages: Sequence[BaseMessage], tools: Sequence[Any] | None) -> int:
    total = _TOKENS_PER_REPLY
    for message in messages:
        total += _TOKENS_PER_MESSAGE + count_simulated_tokens(message.text)
        total += _tool_calls_tokens(message)
    if tools:
        total += count_simulated_tokens(json.dumps(list(tools), sort_keys=True, default=str))
    return total


def _conversation_digest(messages: Sequence[BaseMessage]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for message in messages:
        h.update(f"{message.type}\x1f{message.text}\x1e".encode())
    return h.digest()


def _derived_rng(seed: int, purpose: str, k: int, digest: bytes) -> random.Random:
    material = f"{seed}\x1f{purpose}\x1f{k}\x1f".encode() + digest
    return random.Random(int.from_bytes(hashlib.blake2b(material, digest_size=8).digest()))


def _prompt_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return messages[-1].text


# ---------------------------------------------------------------------------- model


class _CallState:
    """A model's mutable call state; a copied model starts afresh, like a new endpoint."""

    __slots__ = ("calls", "in_flight", "lock", "next_response", "peak_in_flight", "prompts", "seen")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.next_response = 0
        self.seen: dict[bytes | tuple[bytes, int], int] = {}
        self.prompts: list[str] = []

    def reset(self) -> None:
        with self.lock:
            self.calls = self.next_response = 0
            self.peak_in_flight = self.in_flight
            self.seen.clear()
            self.prompts.clear()

    def __copy__(self) -> _CallState:
        return _CallState()

    def __deepcopy__(self, memo: dict[int, Any]) -> _CallState:
        return _CallState()


@dataclass(frozen=True, slots=True)
class _Plan:
    delay_s: float
    error: BaseException | None
    result: ChatResult | None


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


def _outcome(plan: _Plan) -> ChatResult:
    if plan.error is not None:
        raise plan.error
    assert plan.result is not None
    return plan.result


def _sample_index(
    kwargs: Mapping[str, Any],
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
) -> int | None:
    value = kwargs.get(SAMPLE_INDEX_KEY)
    if value is None and run_manager is not None:
        value = run_manager.metadata.get(SAMPLE_INDEX_KEY)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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


# --------------------------------------------------------------------------- agents


class ScriptedAgent:
    """A scripted async agent for engine tests that need no chat model.

    Build one with ``scripted_agent``; call it with ``await agent(input)``.
    """

    def __init__(
        self,
        outputs: Sequence[Any] | Callable[[Any], Any],
        *,
        latency_s: float,
        failures: Sequence[FailureSpec],
        cycle: bool,
        sleep: Callable[[float], Awaitable[None]],
        name: str,
    ) -> None:
        if isinstance(outputs, str) or (not callable(outputs) and len(outputs) == 0):
            raise ConfigurationError("outputs must be a non-empty list or a callable")
        if latency_s < 0:
            raise ConfigurationError(f"latency_s must be >= 0, got {latency_s}")
        for spec in failures:
            _check_failure_spec(spec)
        self.__name__ = name
        self._outputs = outputs
        self._latency_s = latency_s
        self._failures = tuple(failures)
        self._cycle = cycle
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_output = 0
        self.calls = 0
        """How many times the agent was called (failed calls included)."""
        self.inputs: list[Any] = []
        """Every input received, in arrival order."""

    def __repr__(self) -> str:
        return f"ScriptedAgent(name={self.__name__!r}, calls={self.calls})"

    async def __call__(self, input: Any) -> Any:
        """Sleep ``latency_s``, then raise the scripted failure or return the next output."""
        with self._lock:
            index = self.calls
            self.calls += 1
            self.inputs.append(input)
            failure = _make_failure(self._failures[index] if index < len(self._failures) else None)
            output: Any = None
            if failure is None and not callable(self._outputs):
                position = self._next_output
                if position >= len(self._outputs) and not self._cycle:
                    raise ScriptExhaustedError("outputs", len(self._outputs))
                output = self._outputs[position % len(self._outputs)]
                self._next_output += 1
        await self._sleep(self._latency_s)
        if failure is not None:
            raise failure
        if callable(self._outputs):
            output = self._outputs(input)
            if inspect.isawaitable(output):
                output = await output
        if isinstance(output, BaseException):
            raise output
        return output


def scripted_agent(
    outputs: Sequence[Any] | Callable[[Any], Any],
    *,
    latency_s: float = 0.0,
    failures: Sequence[FailureSpec] = (),
    cycle: bool = False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    name: str = "scripted_agent",
) -> ScriptedAgent:
    """An async agent whose outputs and failures are scripted (a simulator, no model).

    Args:
        outputs: outputs in call order (an exception item is raised), or ``fn(input)``
            (sync or async) computing the output, which keeps results independent of order.
        latency_s: seconds awaited through ``sleep`` on every call.
        failures: failures by call index, like ``SimulatedChatModel.failures``; a failed
            call consumes no output.
        cycle: repeat ``outputs`` when used up instead of raising ``ScriptExhaustedError``.
        sleep: the async sleep to await (inject a fake clock here).
        name: the agent's ``__name__``.

    Example:
        >>> agent = scripted_agent(str.upper, failures=["rate_limit"])
        >>> await agent("hi")  # raises openai.RateLimitError
        >>> await agent("hi")
        'HI'
    """
    return ScriptedAgent(
        outputs, latency_s=latency_s, failures=failures, cycle=cycle, sleep=sleep, name=name
    )
