"""Delegation: hand one task to a named agent through the call pipeline, under shared limits.

The seed's API, on local agents::

    AgentRegistry          name -> SubAgent (chat model, Runnable, callable, or a RemoteAgent)
    AgentDelegationRequest agent_id, task, context, timeout
    A2AClient              delegate(request) / execute_with_recovery(request, policy=...)
                           and dispatch(template, arguments) for the tools
    DelegationResult       output, success, error, cost_usd, attempts, agent_used, duration_s

Every delegation is a one-input dispatch of the engine (budget reservation, retries,
fallbacks by registry name, breakers, cache, screening). All the calls of one client draw
from one ``SharedRun`` (``Dispatcher(run=...)``): one budget, one agent count, one
concurrency cap per event loop. Inside a sub-agent of another dispatch the engine draws
from that dispatch's run instead, so nesting never multiplies a limit.

A request's prompt (context values are untrusted: screened for prompt injection, never
parsed as template fields; keys sorted so equal contexts give equal prompts and cache keys)::

    <task>

    Context:
    - <key>: <value, as text or JSON>

Example:
    >>> client = A2AClient({"backup_agent": backup, "researcher": researcher},
    ...                    limits=DispatchResourceLimits(max_total_cost_usd=0.50))
    >>> policy = ErrorRecoveryPolicy(strategy=ErrorStrategy.FALLBACK,
    ...                              fallback_tools=["backup_agent"], max_retries=2)
    >>> request = AgentDelegationRequest(agent_id="researcher", task="Summarize",
    ...                                  context={"doc": text}, timeout=30)
    >>> result = await client.execute_with_recovery(request, policy=policy)
    >>> result.success, result.agent_used, result.cost_usd
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .agents import AgentLike, SubAgent
from .call import Task
from .dispatch import Dispatcher, DispatchResult, run_sync
from .errors import CallError, ConfigurationError
from .ledger import CostLedger
from .limits import DispatchResourceLimits, SharedRun, current_scope
from .prompts import PromptTemplate
from .ratelimit import RateLimiter
from .recovery import ErrorRecoveryPolicy
from .results import Attempt, SubAgentResult

__all__ = [
    "A2AClient",
    "AgentDelegationRequest",
    "AgentRegistry",
    "DelegationResult",
    "RemoteAgent",
    "SharedLimits",
    "delegate",
    "output_text",
    "render_value",
]

# Dispatcher options the client owns itself: passing them through would bypass its limits.
_OWNED_OPTIONS = frozenset(
    {"agent", "agents", "aggregate", "ledger", "limits", "mode", "policy", "rate_limiter"}
    | {"run", "stop"}
)


# --------------------------------------------------------------------------- registry


@runtime_checkable
class RemoteAgent(Protocol):
    """Extension point for agents that live elsewhere (an A2A server, an HTTP endpoint).

    Anything with a ``name`` and ``async ainvoke(prompt, config)`` can be registered and is
    guarded like a local agent. No network code ships here. Its cost is known only if the
    models it calls report usage through LangChain callbacks in this process (the pipeline
    has no hook yet for an agent that reports its own cost).
    """

    name: str

    async def ainvoke(self, input: str, config: RunnableConfig | None = None) -> Any: ...


class AgentRegistry(Mapping[str, SubAgent]):
    """Named agents that delegations, fallbacks and tools refer to.

    Args:
        agents: initial ``name -> agent`` (chat model, Runnable, callable, ``SubAgent`` or
            ``RemoteAgent``).
        descriptions: optional ``name -> what the agent is good at`` (shown by the tools).

    Raises:
        ConfigurationError: a name is empty, an agent cannot be wrapped, or a description
            names no agent.

    Example:
        >>> registry = AgentRegistry({"researcher": model})
        >>> registry.register("backup_agent", cheaper_model, description="fallback")
        >>> sorted(registry)
        ['backup_agent', 'researcher']
    """

    def __init__(
        self,
        agents: Mapping[str, AgentLike] | None = None,
        *,
        descriptions: Mapping[str, str] | None = None,
    ) -> None:
        self._agents: dict[str, SubAgent] = {}
        self._descriptions: dict[str, str] = {}
        self._lock = threading.Lock()
        descriptions = dict(descriptions or {})
        for name, agent in (agents or {}).items():
            self.register(name, agent, description=descriptions.pop(name, None))
        if descriptions:
            raise ConfigurationError(
                f"descriptions given for unknown agents: {sorted(descriptions)}"
            )

    @classmethod
    def of(cls, agents: AgentRegistry | Mapping[str, AgentLike] | AgentLike) -> AgentRegistry:
        """A registry as is, a mapping as a registry, or one agent under its own name."""
        if isinstance(agents, AgentRegistry):
            return agents
        if isinstance(agents, Mapping):
            return cls(agents)
        single = _as_sub_agent(agents, None)
        return cls({single.name: single})

    def register(
        self, name: str, agent: AgentLike, *, description: str | None = None, replace: bool = False
    ) -> SubAgent:
        """Add ``agent`` under ``name`` and return it as a ``SubAgent``.

        Raises:
            ConfigurationError: the name is empty or taken (without ``replace``), or the
                agent cannot be wrapped.
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"an agent name must be a non-empty str, got {name!r}")
        sub = _as_sub_agent(agent, name)
        with self._lock:
            if name in self._agents and not replace:
                raise ConfigurationError(
                    f"agent {name!r} is already registered; pass replace=True to replace it"
                )
            self._agents[name] = sub
            if description:
                self._descriptions[name] = description
            else:
                self._descriptions.pop(name, None)
        return sub

    def description(self, name: str) -> str | None:
        """What ``name`` is good at, if it was said."""
        return self._descriptions.get(name)

    def resolve(self, name: str) -> SubAgent:
        """The agent called ``name``.

        Raises:
            ConfigurationError: no agent has that name (the message lists the known ones).
        """
        try:
            return self._agents[name]
        except KeyError:
            known = sorted(self._agents) or "none"
            raise ConfigurationError(f"unknown agent {name!r} (known: {known})") from None

    def __getitem__(self, name: str) -> SubAgent:
        return self._agents[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._agents))

    def __len__(self) -> int:
        return len(self._agents)

    def __repr__(self) -> str:
        return f"AgentRegistry({sorted(self._agents)})"


def _as_sub_agent(agent: AgentLike, name: str | None) -> SubAgent:
    local = isinstance(agent, SubAgent | Runnable) or callable(agent)
    if not local and isinstance(agent, RemoteAgent):
        remote = agent

        async def call_remote(prompt: Any, config: RunnableConfig) -> Any:
            return await remote.ainvoke(prompt, config)

        return SubAgent.of(call_remote, name=name or remote.name)
    return SubAgent.of(agent, name=name)


# --------------------------------------------------------------------------- request / result


class AgentDelegationRequest(BaseModel):
    """One task for one named agent.

    Args:
        agent_id: the agent's name in the registry.
        task: what to do (the instruction; not screened).
        context: named inputs for the task (untrusted: screened, never parsed as fields).
        timeout: seconds each attempt may run (``max_agent_duration_s`` for this request).

    Example:
        >>> AgentDelegationRequest(agent_id="validator", task="validate",
        ...                        context={"item": item}, timeout=30).render()
        'validate\\n\\nContext:\\n- item: ...'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_id: str = Field(min_length=1)
    task: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @field_validator("context")
    @classmethod
    def _string_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in value if not isinstance(k, str) or not k.strip()]
        if bad:
            raise ValueError(f"context keys must be non-empty strings, got {bad!r}")
        return value

    def template(self) -> PromptTemplate:
        """The prompt as a template whose fields are the context keys (task kept verbatim)."""
        keys = sorted(self.context)
        if not keys:
            return PromptTemplate(self.task, (self.task,), ())
        literals = [f"{self.task}\n\nContext:\n- {keys[0]}: "]
        literals.extend(f"\n- {key}: " for key in keys[1:])
        literals.append("")
        # Built, not parsed: neither the task nor the keys are templates (braces stay text).
        return PromptTemplate(self.task, tuple(literals), tuple(keys))

    def arguments(self) -> dict[str, str]:
        """The context values as the text spliced into the prompt."""
        return {key: render_value(value) for key, value in self.context.items()}

    def render(self) -> str:
        """The prompt the agent receives."""
        return self.template().render(self.arguments())

    def to_task(self, agent: SubAgent, *, index: int = 0) -> Task:
        """This request as a pipeline ``Task`` for ``agent``."""
        template = self.template()
        arguments = self.arguments()
        return Task(
            index=index,
            agent=agent,
            prompt=template.render(arguments),
            arguments=arguments if arguments else None,
            template=template if arguments else None,
        )


def render_value(value: Any) -> str:
    """A context value as prompt text: strings as they are, messages and results by their
    text, anything else as JSON (``str`` for what JSON cannot hold)."""
    if isinstance(value, str):
        return value
    if isinstance(value, DelegationResult | BaseMessage):
        return value.text
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, DelegationResult | BaseMessage):
        return value.text
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def output_text(output: Any) -> str:
    """An agent's output as text: a message's text, a string, else JSON."""
    if isinstance(output, str):
        return output
    if isinstance(output, BaseMessage):
        return output.text
    if isinstance(output, SubAgentResult):
        return output_text(output.output)
    return json.dumps(output, ensure_ascii=False, default=_json_default)


@dataclass(frozen=True, slots=True, kw_only=True)
class DelegationResult:
    """How one delegation ended.

    Attributes:
        agent_id: the agent the request was addressed to.
        output: the output (an ``AIMessage`` for a chat model), ``None`` on failure.
        success: whether there is an output.
        error: the typed error (``None`` on success).
        cost_usd: committed cost of every attempt.
        attempts: every attempt, retries and fallbacks included.
        agent_used: the agent that produced the output (a fallback's name after a fallback).
        duration_s: time spent calling.
        flags: screening flags (injection markers found in the context, redactions).
        result: the pipeline's full ``SubAgentResult``.
    """

    agent_id: str
    output: Any
    success: bool
    error: CallError | None
    cost_usd: float
    attempts: tuple[Attempt, ...]
    agent_used: str | None
    duration_s: float
    flags: tuple[str, ...]
    result: SubAgentResult

    @classmethod
    def from_result(cls, request: AgentDelegationRequest, result: SubAgentResult) -> Self:
        """Build it from the pipeline's result for ``request``."""
        return cls(
            agent_id=request.agent_id,
            output=result.output,
            success=result.ok,
            error=result.error,
            cost_usd=result.cost_usd,
            attempts=result.attempts,
            agent_used=result.agent_used,
            duration_s=result.duration_s,
            flags=result.flags,
            result=result,
        )

    @property
    def text(self) -> str:
        """The output as text ("" on failure)."""
        return output_text(self.output) if self.success else ""

    @property
    def errors(self) -> tuple[str, ...]:
        """The error kind of every failed attempt, in order."""
        return tuple(a.error for a in self.attempts if a.error is not None)

    @property
    def error_kind(self) -> str | None:
        return None if self.error is None else self.error.kind

    @property
    def fallback_used(self) -> bool:
        return self.result.fallback_used

    def __str__(self) -> str:
        return self.text if self.success else f"<failed: {self.error}>"


# --------------------------------------------------------------------------- shared limits


class SharedLimits:
    """The ``SharedRun`` of one agent run, held so that it can be reset.

    One budget, agent count and rate limiter for every call, threads included.
    ``max_concurrent`` holds per event loop: slots belong to one loop, so each loop draws
    from its own view (``SharedRun.on_another_loop``); a sync tool call runs its own loop.

    Args:
        limits: what the run may use.
        ledger: a ledger to share; its cap is the budget (a new ledger when not given).
        rate_limiter: a rate limiter to share (one from the limits' rates when not given).

    Raises:
        ConfigurationError: ``ledger`` has a cap other than ``limits.max_total_cost_usd``.

    Example:
        >>> shared = SharedLimits(DispatchResourceLimits(max_total_cost_usd=0.5))
        >>> shared.ledger.remaining_usd
        0.5
    """

    def __init__(
        self,
        limits: DispatchResourceLimits,
        *,
        ledger: CostLedger | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        if ledger is not None and ledger.limit_usd != limits.max_total_cost_usd:
            if limits.max_total_cost_usd is not None:
                raise ConfigurationError(
                    f"ledger limit {ledger.limit_usd!r} differs from "
                    f"limits.max_total_cost_usd={limits.max_total_cost_usd!r}: pass one of them"
                )
            # Descriptions, reports and the unpriced-model check read the budget from here.
            limits = dataclasses.replace(limits, max_total_cost_usd=ledger.limit_usd)
        self.limits = limits
        self.run = SharedRun.create(limits, ledger=ledger, limiter=rate_limiter)
        self._lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedRun] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def ledger(self) -> CostLedger:
        return self.run.ledger

    @property
    def rate_limiter(self) -> RateLimiter | None:
        return self.run.limiter

    @property
    def agents_started(self) -> int:
        """Calls started so far (retries and fallbacks included)."""
        return self.run.agents_started

    def here(self) -> SharedRun:
        """The run for the running event loop: shared budget, count and limiter; own slots."""
        loop = asyncio.get_running_loop()
        with self._lock:
            run = self._loops.get(loop)
            if run is None:
                run = self._loops[loop] = self.run.on_another_loop()
            return run

    def reset(self) -> None:
        """Start a new run: a fresh ledger with the same cap and a zero agent count.

        A ledger passed in is no longer used afterwards; the rate limiter is kept, and so
        are the slots of each loop (calls still in flight hold some).
        """
        with self._lock:
            self.run = SharedRun.create(self.limits, limiter=self.run.limiter)
            for loop, old in list(self._loops.items()):
                self._loops[loop] = view = self.run.on_another_loop()
                view.concurrency = old.concurrency


# --------------------------------------------------------------------------- client


class A2AClient:
    """Delegates tasks to registered agents through the pipeline, under shared limits.

    Args:
        registry: the agents (an ``AgentRegistry`` is used live; a mapping is copied).
        limits: limits of the whole run, shared by every call of this client.
        policy: default recovery policy (``fallback_tools`` are registry names).
        ledger: a ledger to share with other clients or dispatchers.
        rate_limiter: a rate limiter to share.
        **options: other ``Dispatcher`` options: ``prices``, ``screening``, ``cache``,
            ``cache_mode``, ``breakers``, ``sleep``, ``rng``, ``hedge``, ``config``.

    Raises:
        ConfigurationError: an option is unknown or owned by the client, or a fallback
            name is not registered.

    Example:
        >>> client = A2AClient({"researcher": model})
        >>> await client.delegate(AgentDelegationRequest(agent_id="researcher", task="..."))
    """

    def __init__(
        self,
        registry: AgentRegistry | Mapping[str, AgentLike] | None = None,
        *,
        limits: DispatchResourceLimits | None = None,
        policy: ErrorRecoveryPolicy | None = None,
        ledger: CostLedger | None = None,
        rate_limiter: RateLimiter | None = None,
        **options: Any,
    ) -> None:
        owned = sorted(_OWNED_OPTIONS.intersection(options))
        if owned:
            raise ConfigurationError(
                f"A2AClient sets {owned} itself: pass registry=, limits=, policy=, ledger= "
                "or rate_limiter= instead"
            )
        self.registry = AgentRegistry.of(registry) if registry is not None else AgentRegistry()
        limits = limits if limits is not None else DispatchResourceLimits()
        if not isinstance(limits, DispatchResourceLimits):
            raise ConfigurationError(
                f"limits must be a DispatchResourceLimits, got {type(limits).__name__}"
            )
        self.policy = policy
        self.options = dict(options)
        self.shared = SharedLimits(limits, ledger=ledger, rate_limiter=rate_limiter)
        self.limits = self.shared.limits  # a capped ledger sets the budget
        self._dispatcher(None, policy=policy)  # bad options and unknown fallbacks fail here

    @property
    def ledger(self) -> CostLedger:
        """The run's cost ledger (replaced by ``reset``)."""
        return self.shared.ledger

    def active_ledger(self) -> CostLedger:
        """The ledger a call made here draws from: a parent dispatch's when nested in one."""
        scope = current_scope()
        return self.ledger if scope is None else scope.run.ledger

    def reset(self) -> None:
        """Start a new run: a fresh budget and agent count (breakers and cache are kept)."""
        self.shared.reset()

    def register(self, name: str, agent: AgentLike, *, description: str | None = None) -> SubAgent:
        """Register an agent (see ``AgentRegistry.register``)."""
        return self.registry.register(name, agent, description=description)

    def _dispatcher(
        self,
        run: SharedRun | None,
        *,
        policy: ErrorRecoveryPolicy | None,
        limits: DispatchResourceLimits | None = None,
        aggregate: Callable[[Sequence[SubAgentResult]], Any] | None = None,
        config: RunnableConfig | None = None,
    ) -> Dispatcher:
        options = dict(self.options)
        base_config = options.pop("config", None)
        return Dispatcher(
            agents=self.registry,
            limits=limits if limits is not None else self.limits,
            aggregate=aggregate,
            config=_merge_config(base_config, config),
            policy=policy if policy is not None else self.policy,
            run=run,
            **options,
        )

    # -- delegation -------------------------------------------------------------------

    async def delegate(
        self,
        request: AgentDelegationRequest | Mapping[str, Any],
        *,
        policy: ErrorRecoveryPolicy | None = None,
        config: RunnableConfig | None = None,
    ) -> DelegationResult:
        """Run ``request`` on its agent and return how it ended (failures are results).

        Args:
            request: the request (or a dict of its fields).
            policy: overrides the client's recovery policy for this request.
            config: passed to the agent (callbacks, tags, metadata).

        Raises:
            ConfigurationError: unknown agent or fallback name, or an invalid request.
        """
        request = _as_request(request)
        agent = self.registry.resolve(request.agent_id)
        # One input: min_success_count is a dispatch's notion, not a delegation's.
        limits = dataclasses.replace(self.limits, min_success_count=None)
        if request.timeout is not None:
            limits = dataclasses.replace(limits, max_agent_duration_s=request.timeout)
        dispatcher = self._dispatcher(
            self.shared.here(), policy=policy, limits=limits, config=config
        )
        done = await dispatcher.run_tasks([request.to_task(agent)])
        return DelegationResult.from_result(request, done.results[0])

    async def execute_with_recovery(
        self,
        request: AgentDelegationRequest | Mapping[str, Any],
        *,
        policy: ErrorRecoveryPolicy | None = None,
        config: RunnableConfig | None = None,
    ) -> DelegationResult:
        """The seed's name for ``delegate``: retries, then ``policy.fallback_tools`` in order.

        Example:
            >>> policy = ErrorRecoveryPolicy(strategy=ErrorStrategy.FALLBACK,
            ...                              fallback_tools=["backup_agent"], max_retries=2)
            >>> result = await executor.execute_with_recovery(request, policy=policy)
        """
        return await self.delegate(request, policy=policy, config=config)

    def delegate_sync(
        self,
        request: AgentDelegationRequest | Mapping[str, Any],
        *,
        policy: ErrorRecoveryPolicy | None = None,
        config: RunnableConfig | None = None,
    ) -> DelegationResult:
        """The sync twin of ``delegate``, for code with no event loop.

        Raises:
            SyncInAsyncError: called inside a running event loop (use ``await delegate``).
        """
        return run_sync(
            self.delegate(request, policy=policy, config=config), "delegate_sync", "delegate"
        )

    async def delegate_all(
        self,
        requests: Iterable[AgentDelegationRequest | Mapping[str, Any]],
        *,
        policy: ErrorRecoveryPolicy | None = None,
        config: RunnableConfig | None = None,
    ) -> list[DelegationResult]:
        """Delegate several requests concurrently; results in request order.

        Same as the seed's ``asyncio.gather(*(client.delegate(r) for r in requests))``,
        which works as well: both are bounded by the shared limits.
        """
        async with asyncio.TaskGroup() as group:
            pending = [
                group.create_task(self.delegate(r, policy=policy, config=config)) for r in requests
            ]
        return [p.result() for p in pending]

    # -- dispatch (used by the tools) ----------------------------------------------------

    async def dispatch(
        self,
        template: str | None,
        arguments: Iterable[Any],
        *,
        agent: str | AgentLike | None = None,
        samples: int = 1,
        aggregate: Callable[[Sequence[SubAgentResult]], Any] | None = None,
        policy: ErrorRecoveryPolicy | None = None,
        config: RunnableConfig | None = None,
    ) -> DispatchResult:
        """``Dispatcher.run`` on the registry's agents, under the shared limits.

        Raises:
            InvalidInputError: bad template or arguments (nothing was called).
            DispatchFailed: ``min_success_count`` not met, or the aggregate failed.
            ConfigurationError: unknown agent.
        """
        dispatcher = self._dispatcher(
            self.shared.here(), policy=policy, aggregate=aggregate, config=config
        )
        sub = self._agent(agent)
        tasks = dispatcher.tasks_from(template, arguments, agent=sub, samples=samples)
        return await dispatcher.run_tasks(tasks)

    async def run_tasks(
        self,
        tasks: Sequence[Task],
        *,
        aggregate: Callable[[Sequence[SubAgentResult]], Any] | None = None,
        policy: ErrorRecoveryPolicy | None = None,
        config: RunnableConfig | None = None,
    ) -> DispatchResult:
        """``Dispatcher.run_tasks`` (heterogeneous agents), under the shared limits."""
        dispatcher = self._dispatcher(
            self.shared.here(), policy=policy, aggregate=aggregate, config=config
        )
        return await dispatcher.run_tasks(tasks)

    def _agent(self, agent: str | AgentLike | None) -> SubAgent:
        if agent is None:
            if len(self.registry) == 1:
                return next(iter(self.registry.values()))
            known = sorted(self.registry) or "none"
            raise ConfigurationError(f"name the agent to call (known: {known})")
        if isinstance(agent, str):
            return self.registry.resolve(agent)
        return SubAgent.of(agent)

    def __repr__(self) -> str:
        ledger = self.ledger
        return (
            f"A2AClient(agents={sorted(self.registry)}, spent_usd={ledger.spent_usd:.6g}, "
            f"limit_usd={ledger.limit_usd!r}, agents_started={self.shared.agents_started})"
        )


def _as_request(request: AgentDelegationRequest | Mapping[str, Any]) -> AgentDelegationRequest:
    if isinstance(request, AgentDelegationRequest):
        return request
    if isinstance(request, Mapping):
        try:
            return AgentDelegationRequest.model_validate(dict(request))
        except ValueError as exc:
            raise ConfigurationError(f"invalid delegation request: {exc}") from None
    raise ConfigurationError(
        f"expected an AgentDelegationRequest or a dict, got {type(request).__name__}"
    )


def _merge_config(
    base: RunnableConfig | None, extra: RunnableConfig | None
) -> RunnableConfig | None:
    if not base:
        return extra
    if not extra:
        return base
    merged: dict[str, Any] = {**base, **extra}
    tags = [*(base.get("tags") or []), *(extra.get("tags") or [])]
    if tags:
        merged["tags"] = tags
    metadata = {**(base.get("metadata") or {}), **(extra.get("metadata") or {})}
    if metadata:
        merged["metadata"] = metadata
    return merged  # type: ignore[return-value]


async def delegate(
    request: AgentDelegationRequest | Mapping[str, Any],
    *,
    agents: AgentRegistry | Mapping[str, AgentLike],
    policy: ErrorRecoveryPolicy | None = None,
    limits: DispatchResourceLimits | None = None,
    **options: Any,
) -> DelegationResult:
    """Delegate one request with a one-off client (limits not shared with later calls).

    Example:
        >>> result = await delegate({"agent_id": "researcher", "task": "..."},
        ...                         agents={"researcher": model})
    """
    client = A2AClient(agents, limits=limits, policy=policy, **options)
    return await client.delegate(request)
