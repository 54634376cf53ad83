"""Delegation: hand one task to a named agent through the call pipeline, under shared limits.

The seed's API, on local agents (the registry lives in ``engine/registry.py``, the request
and result in ``delegation/requests.py``; every name is importable from the package)::

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

A request's prompt (the task, then its context as ``- key: value`` lines) is described in
``delegation/requests.py``.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Unpack

from langchain_core.runnables import RunnableConfig

from langgraph_fanout.core.results import SubAgentResult
from langgraph_fanout.delegation.requests import (
    AgentDelegationRequest,
    DelegationResult,
)
from langgraph_fanout.engine.agents import AgentLike, SubAgent
from langgraph_fanout.engine.call import Task
from langgraph_fanout.engine.dispatch import Dispatcher, DispatchResult, run_sync
from langgraph_fanout.engine.options import GuardOptions, Guards
from langgraph_fanout.engine.registry import AgentRegistry
from langgraph_fanout.errors import ConfigurationError
from langgraph_fanout.guards.ledger import CostLedger
from langgraph_fanout.guards.limits import (
    DispatchResourceLimits,
    SharedLimits,
    SharedRun,
    current_scope,
)
from langgraph_fanout.guards.recovery import ErrorRecoveryPolicy

# --------------------------------------------------------------------------- client


class A2AClient:
    """Delegates tasks to registered agents through the pipeline, under shared limits.

    Args:
        registry: the agents (an ``AgentRegistry`` is used live; a mapping is copied).
        limits: limits of the whole run, shared by every call of this client.
        config: a ``RunnableConfig`` every call gets (merged with a call's own).
        guards / **options: the guards (``Guards`` or its fields): ``policy`` is the
            default recovery policy (``fallback_tools`` are registry names); ``ledger``
            and ``rate_limiter`` are shared by every call of the client.

    Raises:
        ConfigurationError: a bad option, a fallback name that is not registered, or
            ``ledger=`` and ``limits=`` with different budgets.

    Example:
        >>> client = A2AClient({"researcher": model})
        >>> await client.delegate(AgentDelegationRequest(agent_id="researcher", task="..."))
    """

    def __init__(
        self,
        registry: AgentRegistry | Mapping[str, AgentLike] | None = None,
        *,
        limits: DispatchResourceLimits | None = None,
        config: RunnableConfig | None = None,
        guards: Guards | None = None,
        **options: Unpack[GuardOptions],
    ) -> None:
        self.registry = AgentRegistry.of(registry) if registry is not None else AgentRegistry()
        limits = limits if limits is not None else DispatchResourceLimits()
        if not isinstance(limits, DispatchResourceLimits):
            raise ConfigurationError(
                f"limits must be a DispatchResourceLimits, got {type(limits).__name__}"
            )
        self.guards = Guards.of(guards, options)
        self.policy = self.guards.policy
        self.config = config
        self.shared = SharedLimits(
            limits, ledger=self.guards.ledger, rate_limiter=self.guards.rate_limiter
        )
        # The calls draw from the shared run, which holds the ledger and the limiter.
        self._call_guards = dataclasses.replace(self.guards, ledger=None, rate_limiter=None)
        self.limits = self.shared.limits  # a capped ledger sets the budget
        self._dispatcher(None, policy=None)  # unknown fallbacks fail here

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
        return Dispatcher(
            agents=self.registry,
            limits=limits if limits is not None else self.limits,
            aggregate=aggregate,
            config=_merge_config(self.config, config),
            run=run,
            guards=self._call_guards
            if policy is None
            else dataclasses.replace(self._call_guards, policy=policy),
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
    limits: DispatchResourceLimits | None = None,
    guards: Guards | None = None,
    **options: Unpack[GuardOptions],
) -> DelegationResult:
    """Delegate one request with a one-off client (limits not shared with later calls).

    Example:
        >>> result = await delegate({"agent_id": "researcher", "task": "..."},
        ...                         agents={"researcher": model})
    """
    client = A2AClient(agents, limits=limits, guards=guards, **options)
    return await client.delegate(request)
