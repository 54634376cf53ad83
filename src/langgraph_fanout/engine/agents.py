"""``SubAgent``: one shape for a chat model, any ``Runnable`` and a plain callable.

A sub-agent has a name (used in results, reports, breakers and cache keys), the model id
used for pricing, the worst-case output size when it is known, and one way to call it:
``await agent.ainvoke(input, config)``.

- A chat model gets the rendered prompt as a human message; its output is the ``AIMessage``.
- A ``Runnable`` (a chain, a compiled LangGraph graph such as one from ``create_agent``)
  gets the input as is, except that a string sent to a graph whose state has ``messages``
  becomes ``{"messages": [("user", text)]}``; the graph's final state is returned, or its
  last message when ``last_message=True``.
- A callable ``fn(input)`` or ``fn(input, config)``, sync or async. Sync callables run in a
  worker thread so a blocking client does not stall the event loop.

``config`` (callbacks, tags, metadata, run name) is passed through to the runnable.

Example:
    >>> agent = SubAgent.of(model, name="classifier")
    >>> await agent.ainvoke("Classify: ...", {"tags": ["batch-7"]})
"""

from __future__ import annotations

import hashlib
import inspect
import re
import warnings
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig

from langgraph_fanout.core.checks import (
    MAX_COUNT,
    MAX_USD,
    check_flag,
    check_number,
    check_text,
    check_type,
)
from langgraph_fanout.engine.threads import sync_workers
from langgraph_fanout.errors import ClientRetriesWarning, ConfigurationError
from langgraph_fanout.guards.breaker import ObjectKey
from langgraph_fanout.guards.pricing import Price

AgentLike = Any
"""Anything ``SubAgent.of`` accepts: a SubAgent, chat model, Runnable or callable."""

Kind = Literal["chat_model", "runnable", "callable"]

_SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "seed", "n", "max_tokens", "model_kwargs")
_ENDPOINT_FIELDS = ("openai_api_base", "base_url", "anthropic_api_url", "deployment_name")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SubAgent:
    """A callable sub-agent with the facts the guards need.

    Build one with ``SubAgent.of(obj, ...)``; the constructor takes the same fields.

    Args:
        target: the chat model, Runnable or callable.
        name: a short unique name (defaults to the model id, the runnable's name or the
            function's name).
        model: the model id used for pricing (read from a chat model when not given).
        provider: the provider id used for pricing (``"openai"``, ``"anthropic"``...).
        max_output_tokens: worst-case output size (read from ``max_tokens`` of a chat model).
        price: a price that overrides the price table for this agent.
        last_message: for a graph with ``messages``, return its last message, not the state.
        breaker_key: the circuit breaker to share on purpose (agents with the same key share
            one); by default each distinct agent has its own (see ``circuit_key``).
        cost_per_call_usd: what one call costs, for an agent whose cost cannot be counted
            from tokens (a plain function calling an API): reserved and billed per call.
        max_model_calls: model calls one call of this agent may make (a graph or a chain
            that calls its model several times): its worst case is this many model calls.
    """

    target: Any
    name: str
    kind: Kind
    model: str | None = None
    provider: str | None = None
    max_output_tokens: int | None = None
    price: Price | None = None
    last_message: bool = True
    breaker_key: str | None = None
    cost_per_call_usd: float | None = None
    max_model_calls: int | None = None
    _accepts_config: bool = field(default=False, repr=False)
    _is_async: bool = field(default=False, repr=False)
    _messages_input: bool = field(default=False, repr=False)

    @classmethod
    def of(
        cls,
        obj: AgentLike,
        *,
        name: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        max_output_tokens: int | None = None,
        price: Price | None = None,
        last_message: bool = True,
        breaker_key: str | None = None,
        cost_per_call_usd: float | None = None,
        max_model_calls: int | None = None,
    ) -> SubAgent:
        """Wrap ``obj``; a ``SubAgent`` is returned as is unless a field is overridden.

        Raises:
            ConfigurationError: ``obj`` is not a chat model, Runnable or callable, or a
                field is out of its domain.
        """
        if isinstance(obj, SubAgent):
            overrides = {
                k: v
                for k, v in {
                    "name": name,
                    "model": model,
                    "provider": provider,
                    "max_output_tokens": max_output_tokens,
                    "price": price,
                    "breaker_key": breaker_key,
                    "cost_per_call_usd": cost_per_call_usd,
                    "max_model_calls": max_model_calls,
                }.items()
                if v is not None
            }
            if not overrides:
                return obj
            return cls.of(obj.target, **{**obj._fields(), **overrides})
        check_number(
            "SubAgent max_output_tokens",
            max_output_tokens,
            at_least=1,
            at_most=MAX_COUNT,
            integer=True,
            optional=True,
        )
        check_number(
            "SubAgent cost_per_call_usd",
            cost_per_call_usd,
            at_least=0,
            at_most=MAX_USD,
            optional=True,
        )
        check_number(
            "SubAgent max_model_calls",
            max_model_calls,
            at_least=1,
            at_most=MAX_COUNT,
            integer=True,
            optional=True,
        )
        for option, text in (
            ("name", name),
            ("model", model),
            ("provider", provider),
            ("breaker_key", breaker_key),
        ):
            check_text(f"SubAgent {option}", text, optional=True)
        check_type("SubAgent price", price, Price, optional=True)
        check_flag("SubAgent last_message", last_message)
        if isinstance(obj, BaseChatModel):
            _warn_client_retries(obj)
            model = model or _model_id(obj)
            max_out = max_output_tokens or _int_or_none(getattr(obj, "max_tokens", None))
            if max_out is None:
                max_out = _int_or_none(getattr(obj, "max_completion_tokens", None))
            return cls(
                target=obj,
                name=name or model or type(obj).__name__,
                kind="chat_model",
                model=model,
                provider=provider or _provider_of(obj),
                max_output_tokens=max_out,
                price=price,
                last_message=last_message,
                breaker_key=breaker_key,
                cost_per_call_usd=cost_per_call_usd,
                max_model_calls=max_model_calls,
            )
        if isinstance(obj, Runnable):
            return cls(
                target=obj,
                name=name or obj.get_name(),
                kind="runnable",
                model=model,
                provider=provider,
                max_output_tokens=max_output_tokens,
                price=price,
                last_message=last_message,
                breaker_key=breaker_key,
                cost_per_call_usd=cost_per_call_usd,
                max_model_calls=max_model_calls,
                _messages_input=_takes_messages(obj),
            )
        if callable(obj):
            fn = obj
            is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
                getattr(fn, "__call__", None)  # noqa: B004 - async __call__ objects
            )
            return cls(
                target=fn,
                name=name or str(getattr(fn, "__name__", type(fn).__name__)),
                kind="callable",
                model=model,
                provider=provider,
                max_output_tokens=max_output_tokens,
                price=price,
                last_message=last_message,
                breaker_key=breaker_key,
                cost_per_call_usd=cost_per_call_usd,
                max_model_calls=max_model_calls,
                _accepts_config=_accepts_config(fn),
                _is_async=is_async,
            )
        raise ConfigurationError(
            f"cannot use {type(obj).__name__} as a sub-agent: pass a chat model, a Runnable "
            "(chain or compiled graph) or a callable"
        )

    def _fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "provider": self.provider,
            "max_output_tokens": self.max_output_tokens,
            "price": self.price,
            "last_message": self.last_message,
            "breaker_key": self.breaker_key,
            "cost_per_call_usd": self.cost_per_call_usd,
            "max_model_calls": self.max_model_calls,
        }

    @property
    def accepts_config(self) -> bool:
        """True when the agent takes a ``config`` (chat models, runnables, some callables)."""
        return self.kind != "callable" or self._accepts_config

    def identity(self) -> dict[str, Any]:
        """What makes two calls of this agent the same call (for idempotency keys).

        Stable across processes, so a persistent cache is shared by restarts: a chat
        model by its class, endpoint and sampling parameters; a runnable by its
        structure (``repr``: steps, bound kwargs and tools); a callable by where its
        code is defined. Two different agents that print the same still need distinct
        names.
        """
        ident: dict[str, Any] = {"name": self.name, "model": self.model, "kind": self.kind}
        target = self.target
        if self.kind == "chat_model":
            ident["class"] = f"{type(target).__module__}.{type(target).__qualname__}"
            for attr in _SAMPLING_FIELDS + _ENDPOINT_FIELDS:
                value = getattr(target, attr, None)
                if value is not None:
                    ident[attr] = value if isinstance(value, int | float | str) else str(value)
        elif self.kind == "runnable":
            ident["structure"] = _structure(target)
        else:
            ident["code"] = _code_location(target)
        return ident

    def circuit_key(self) -> Hashable:
        """The key of this agent's circuit breaker: what is called, not a display name.

        ``breaker_key`` when given (agents with the same one share a breaker on purpose);
        a chat model's model and endpoint (two clients of one deployment are one circuit);
        else the object itself (``ObjectKey``): two graphs both named ``LangGraph`` never
        share a breaker.
        """
        if self.breaker_key is not None:
            return self.breaker_key
        if self.kind == "chat_model":
            target = self.target
            endpoint = next(
                (str(v) for a in _ENDPOINT_FIELDS if (v := getattr(target, a, None))), None
            )
            where = endpoint or f"{type(target).__module__}.{type(target).__qualname__}"
            return f"{self.model or self.name}@{where}"
        return ObjectKey(self.name, self.target)

    def prepare(self, prompt: Any) -> Any:
        """Turn a rendered prompt into the input this agent takes (a chat model takes text
        as is: LangChain sends it as one human message, as ``model.ainvoke(text)`` does)."""
        if self.kind == "runnable" and self._messages_input and isinstance(prompt, str):
            return {"messages": [HumanMessage(prompt)]}
        return prompt

    async def ainvoke(self, prompt: Any, config: RunnableConfig | None = None) -> Any:
        """Call the agent once with ``prompt`` (already rendered) and ``config``."""
        value = self.prepare(prompt)
        if self.kind == "callable":
            fn: Callable[..., Any] = self.target
            args = (value, config or {}) if self._accepts_config else (value,)
            if self._is_async:
                return await fn(*args)
            result = await sync_workers.run(fn, *args)
            if inspect.isawaitable(result):
                return await _await(result)
            return result
        runnable: Runnable[Any, Any] = self.target
        out = await runnable.ainvoke(value, config)
        if (
            self.kind == "runnable"
            and self.last_message
            and isinstance(out, Mapping)
            and isinstance(value, Mapping)
            and "messages" in value
        ):
            messages = out.get("messages")
            if isinstance(messages, list) and messages and isinstance(messages[-1], BaseMessage):
                return messages[-1]
        return out


async def _await(value: Awaitable[Any]) -> Any:
    return await value


_WARNED_RETRIES: set[tuple[str, str | None]] = set()


def _warn_client_retries(model: BaseChatModel) -> None:
    if "max_retries" not in type(model).model_fields:
        return
    retries = getattr(model, "max_retries", None)
    key = (type(model).__name__, _model_id(model))
    if retries == 0 or key in _WARNED_RETRIES:
        return
    _WARNED_RETRIES.add(key)
    shown = "the client's default" if retries is None else str(retries)
    warnings.warn(
        f"{key[0]}({key[1]!r}) retries on its own ({shown} retries): our recovery policy "
        "already retries transient errors with backoff and Retry-After; pass max_retries=0",
        ClientRetriesWarning,
        stacklevel=3,
    )


def _model_id(model: BaseChatModel) -> str | None:
    for attr in ("model_name", "model", "model_id", "deployment_name"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def _provider_of(model: BaseChatModel) -> str | None:
    module = type(model).__module__
    for provider in ("openai", "anthropic", "google", "mistralai", "groq", "bedrock"):
        if provider in module:
            return provider
    return None


def _code_location(fn: Any) -> str:
    """Where a callable's code lives: distinct functions (lambdas too) differ, and the
    value is the same in every process."""
    target = inspect.unwrap(fn) if callable(fn) else fn
    code = getattr(target, "__code__", None)
    if code is None:
        call = getattr(type(target), "__call__", None)  # noqa: B004 - callable objects
        code = getattr(call, "__code__", None)
        owner = type(target)
    else:
        owner = target
    name = f"{getattr(owner, '__module__', '?')}.{getattr(owner, '__qualname__', '?')}"
    if code is None:
        return name
    # Two lambdas on one line share a location: their bytecode tells them apart.
    return f"{name}@{code.co_filename}:{code.co_firstlineno}#{_code_digest(code)[:12]}"


def _code_digest(code: Any) -> str:
    """A digest of a code object that is the same in every process: nested code objects
    (generator expressions, inner functions) by their own digest, never by their repr,
    which holds a memory address."""
    consts = [
        f"code:{_code_digest(c)}" if hasattr(c, "co_code") else repr(c) for c in code.co_consts
    ]
    material = code.co_code + repr((consts, code.co_names)).encode()
    return hashlib.sha256(material).hexdigest()


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _structure(runnable: Any) -> str:
    """A runnable's shape, the same in every process: its repr without memory addresses,
    and for a compiled graph (whose repr is only its class) its nodes and edges."""
    text = _ADDRESS.sub("", repr(runnable))
    get_graph = getattr(runnable, "get_graph", None)
    if "object>" in text and callable(get_graph):
        try:
            graph = get_graph()
            nodes = sorted(graph.nodes)
            edges = sorted((e.source, e.target) for e in graph.edges)
            text = f"{text} nodes={nodes} edges={edges}"
        except Exception:
            pass
    return text


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _accepts_config(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    if "config" in params:
        return True
    positional = [
        p
        for p in params.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2


def _takes_messages(runnable: Runnable[Any, Any]) -> bool:
    """True for graphs whose input state has a ``messages`` channel (agents, chat graphs)."""
    try:
        schema = runnable.get_input_jsonschema()
    except Exception:
        return False
    props = schema.get("properties", {})
    return isinstance(props, Mapping) and "messages" in props
