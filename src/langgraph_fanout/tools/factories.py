"""LangChain tools that let an existing agent fan out, delegate and vote, under one budget.

- ``create_dispatch_tool``: one instruction over many items, in parallel, aggregated.
- ``create_delegate_tool``: one task to one named agent (``A2AClient.delegate``).
- ``create_vote_tool``: an ensemble answers one question; returns the majority vote.

Each returns ``content_and_artifact``: a short content string the model can act on
(counts, the answer or aggregate, failures in one line, spent and remaining budget) and
the full ``DispatchResult``/``DelegationResult`` as the artifact. Bad arguments come back
as an error ``ToolMessage`` the model can correct, never as an exception that ends the
run; a budget refusal says what was spent and what remains.

The budget is for the run, not per call: every call of a tool draws from its client's
``SharedRun`` (one ledger, agent count and concurrency cap), and so do dispatches nested
inside its sub-agents. Pass one ``client=`` to several tools to share one budget; call
``reset_budget()`` (or build new tools) to start the next run.

Example:
    >>> tool = create_dispatch_tool(
    ...     {"classifier": model}, limits=DispatchResourceLimits(max_total_cost_usd=0.05)
    ... )
    >>> agent = create_agent(orchestrator_model, tools=[tool])
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Unpack

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import ToolException
from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from langgraph_fanout.aggregate.aggregators import aggregator_from
from langgraph_fanout.aggregate.voting import EarlyRule, majority_vote
from langgraph_fanout.core.checks import MAX_SECONDS, check_number, check_text, shown
from langgraph_fanout.delegation.client import A2AClient
from langgraph_fanout.delegation.requests import AgentDelegationRequest
from langgraph_fanout.engine.call import Task
from langgraph_fanout.engine.ensemble import one_vote
from langgraph_fanout.engine.options import GuardOptions, Guards
from langgraph_fanout.errors import ConfigurationError, DispatchFailed, InvalidInputError
from langgraph_fanout.guards.limits import DispatchResourceLimits
from langgraph_fanout.guards.recovery import ErrorRecoveryPolicy
from langgraph_fanout.tools.base import Agents, FanoutTool, ToolOutput, client_for
from langgraph_fanout.tools.content import (
    budget_sentence,
    delegation_content,
    dispatch_content,
    failure_line,
    registry_lines,
    vote_content,
)
from langgraph_fanout.tools.inputs import (
    AggregateName,
    DelegateInput,
    DispatchInput,
    VoteInput,
    explain_validation_error,
    one_of,
    template_and_arguments,
    vote_template,
)

# --------------------------------------------------------------------------- dispatch tool


class DispatchTool(FanoutTool):
    """Runs one instruction over many items with sub-agents in parallel.

    Build it with ``create_dispatch_tool``; see the module docstring for the budget.
    """

    default_name: ClassVar[str] = "dispatch_agents"
    default_agent: str | None = None
    """Agent used when the model names none (the only agent when there is one)."""
    default_aggregate: AggregateName | None = "collect_all"
    """Aggregation used when the model asks for none."""
    max_items: int = Field(default=100, ge=1)
    """Most items per call (also in the schema the model sees)."""

    @classmethod
    def _describe(cls, client: A2AClient, data: Mapping[str, Any]) -> str:
        return (
            "Run sub-agents in parallel: the same instruction on each item, one call per "
            f"item (at most {data.get('max_items', 100)} items). Returns a one-line summary "
            "(ok/failed counts, cost, budget left) and the outputs or their aggregate. "
            f"Agents: {registry_lines(client)}.{budget_sentence(client)}"
        )

    @classmethod
    def _schema(cls, client: A2AClient, data: Mapping[str, Any]) -> type[BaseModel]:
        limit = int(data.get("max_items", 100))
        schema: type[BaseModel] = create_model(
            "DispatchAgentsInput",
            __base__=DispatchInput,
            __doc__="Run one instruction on many items with sub-agents in parallel.",
            items=(
                list[str | dict[str, Any]],
                Field(
                    min_length=1,
                    max_length=limit,
                    description=f"The items (1 to {limit}): one sub-agent call each.",
                ),
            ),
            agent=(
                one_of(list(client.registry)) | None,
                Field(default=None, description="Which agent runs the items."),
            ),
        )
        return schema

    async def _call(
        self,
        config: RunnableConfig | None,
        instruction: str,
        items: list[Any],
        agent: str | None = None,
        aggregate: str | None = None,
        key: str | None = None,
    ) -> ToolOutput:
        if len(items) > self.max_items:
            raise ToolException(
                f"too many items: {len(items)} > {self.max_items}; split them over several calls"
            )
        template, arguments = template_and_arguments(instruction, items)
        name = self._agent_name(agent)
        spec = aggregate or self.default_aggregate
        try:
            aggregator = None if spec is None else aggregator_from(f"{spec}:{key}" if key else spec)
        except ConfigurationError as exc:
            raise ToolException(f"invalid aggregate: {exc}") from None
        try:
            result = await self.client.dispatch(
                template, arguments, agent=name, aggregate=aggregator, config=config
            )
        except InvalidInputError as exc:
            raise ToolException(
                f"{exc.message}. Use {{item}} for string items, or give every dict item the "
                "fields the instruction names."
            ) from None
        except DispatchFailed as exc:
            ok = sum(1 for r in exc.results if r.ok)
            head = f"dispatch failed ({exc.reason}): {ok}/{len(exc.results)} ok. "
            return head + failure_line(exc.results), exc
        content = dispatch_content(
            result,
            spec,
            max_item_chars=self.max_item_chars,
            max_content_chars=self.max_content_chars,
        )
        return content, result

    def _agent_name(self, agent: str | None) -> str:
        known = sorted(self.client.registry)
        if agent is not None:
            if agent not in self.client.registry:
                raise ToolException(f"unknown agent {agent!r}; choose one of {known}")
            return agent
        if self.default_agent is not None:
            return self.default_agent
        if len(known) == 1:
            return known[0]
        raise ToolException(f"name the agent: one of {known}")


# --------------------------------------------------------------------------- delegate tool


class DelegateTool(FanoutTool):
    """Delegates one task to a named agent. Build it with ``create_delegate_tool``."""

    default_name: ClassVar[str] = "delegate_to_agent"
    timeout: float | None = Field(default=None, gt=0)
    """Seconds each attempt may run (the request's ``timeout``)."""
    policy: ErrorRecoveryPolicy | None = None
    """Overrides the client's recovery policy for this tool's delegations."""

    @classmethod
    def _describe(cls, client: A2AClient, data: Mapping[str, Any]) -> str:
        return (
            "Hand one task to a specialised agent and get its answer. Put the documents or "
            "data it needs in `context`. Returns the answer with its cost and the budget "
            f"left. Agents: {registry_lines(client)}.{budget_sentence(client)}"
        )

    @classmethod
    def _schema(cls, client: A2AClient, data: Mapping[str, Any]) -> type[BaseModel]:
        schema: type[BaseModel] = create_model(
            "DelegateToAgentInput",
            __base__=DelegateInput,
            __doc__="Hand one task to a named agent.",
            agent=(one_of(list(client.registry)), Field(description="The agent to ask.")),
        )
        return schema

    async def _call(
        self,
        config: RunnableConfig | None,
        agent: str,
        task: str,
        context: dict[str, Any] | None = None,
    ) -> ToolOutput:
        if agent not in self.client.registry:
            known = sorted(self.client.registry)
            raise ToolException(f"unknown agent {agent!r}; choose one of {known}")
        try:
            request = AgentDelegationRequest(
                agent_id=agent, task=task, context=context or {}, timeout=self.timeout
            )
        except ValidationError as exc:
            raise ToolException(explain_validation_error(exc)) from None
        result = await self.client.delegate(request, policy=self.policy, config=config)
        return delegation_content(result, self.client, self.max_content_chars), result


# --------------------------------------------------------------------------- vote tool


class VoteTool(FanoutTool):
    """Asks an ensemble one question and returns the majority vote.

    Build it with ``create_vote_tool``.
    """

    default_name: ClassVar[str] = "ask_ensemble"
    voters: tuple[str, ...] = ()
    """Registry names of the voting agents (every registered agent when empty)."""
    n: int = Field(default=1, ge=1)
    """Samples per voting agent (distinct calls: the cache key holds the sample index)."""
    key: str | None = None
    """JSON field of each answer to vote on (``None``: the whole answer)."""
    early: EarlyRule | None = "exact"
    """Stop asking once the vote is decided (``None``: always ask every voter)."""

    @classmethod
    def _describe(cls, client: A2AClient, data: Mapping[str, Any]) -> str:
        voters = len(data.get("voters") or client.registry) * int(data.get("n", 1))
        return (
            f"Ask an ensemble of {voters} voters the same question and get the majority "
            "answer with its vote counts. Use it for classifications and yes/no questions "
            f"where agreement matters; give `options` to fix the answers.{budget_sentence(client)}"
        )

    @classmethod
    def _schema(cls, client: A2AClient, data: Mapping[str, Any]) -> type[BaseModel]:
        return VoteInput

    @model_validator(mode="after")
    def _known_voters(self) -> VoteTool:
        _check_voters(self.voters, self.client)
        return self

    async def _call(
        self,
        config: RunnableConfig | None,
        question: str,
        options: list[str] | None = None,
        context: str | None = None,
    ) -> ToolOutput:
        template = vote_template(question, options, with_context=context is not None)
        arguments = None if context is None else {"context": context}
        prompt = template.render(arguments or {})
        names = self.voters or tuple(self.client.registry)
        tasks = [
            Task(
                index=position * self.n + sample,
                agent=self.client.registry.resolve(name),
                prompt=prompt,
                arguments=arguments,
                template=template if arguments is not None else None,
                sample=sample,
                question=0,
            )
            for position, name in enumerate(names)
            for sample in range(self.n)
        ]
        vote = majority_vote(self.key, early=self.early)
        try:
            result = one_vote(await self.client.run_tasks(tasks, aggregate=vote, config=config))
        except DispatchFailed as exc:
            return f"vote failed ({exc.reason}). " + failure_line(exc.results), exc
        return vote_content(result), result


def _check_voters(voters: Sequence[str], client: A2AClient) -> None:
    unknown = [v for v in voters if v not in client.registry]
    if unknown:
        raise ConfigurationError(f"unknown voters {unknown} (known: {sorted(client.registry)})")


def _check_choice(option: str, value: object, choices: tuple[Any, ...]) -> None:
    """``value`` is one of ``choices`` or ``None``."""
    if value is not None and not (isinstance(value, str) and value in choices):
        raise ConfigurationError(
            f"{option} must be one of {', '.join(map(repr, choices))} or None, got {shown(value)}"
        )


def _tool_fields(name: str | None, description: str | None) -> dict[str, Any]:
    check_text("the tool's name", name, optional=True)
    check_text("the tool's description", description, optional=True)
    fields = {"name": name, "description": description}
    return {k: v for k, v in fields.items() if v is not None}


def create_dispatch_tool(
    agents: Agents,
    *,
    limits: DispatchResourceLimits | None = None,
    name: str | None = None,
    description: str | None = None,
    default_agent: str | None = None,
    aggregate: AggregateName | None = "collect_all",
    max_items: int = 100,
    guards: Guards | None = None,
    **options: Unpack[GuardOptions],
) -> DispatchTool:
    """A tool that runs one instruction over many items with sub-agents in parallel.

    Args:
        agents: an ``A2AClient`` (shares its budget), an ``AgentRegistry``, a mapping of
            names to agents, or one agent.
        limits: the run's limits (shared by every call of the tool).
        name / description: override ``dispatch_agents`` and the generated description.
        default_agent: agent used when the model names none.
        aggregate: aggregation used when the model asks for none.
        max_items: most items per call.
        guards / **options: the guards (``Guards`` or its fields): ``policy`` (its
            ``fallback_tools`` are registry names), ``ledger`` to share, ``prices``,
            ``screening``, ``cache``, ``rate_limiter``, ``breakers``, ``hedge``...

    Raises:
        ConfigurationError: no agent, an unknown ``default_agent`` or fallback, or options
            passed together with a client.

    Example:
        >>> tool = create_dispatch_tool({"classifier": model},
        ...     limits=DispatchResourceLimits(max_total_cost_usd=0.05))
        >>> msg = tool.invoke({"type": "tool_call", "id": "1", "name": tool.name,
        ...                    "args": {"instruction": "Classify: {item}", "items": ["a", "b"]}})
        >>> msg.content, msg.artifact.report.succeeded
    """
    check_text("default_agent", default_agent, optional=True)
    _check_choice("aggregate", aggregate, typing.get_args(AggregateName))
    check_number("max_items", max_items, at_least=1, at_most=100_000, integer=True)
    client = client_for(agents, limits=limits, guards=guards, options=options)
    if default_agent is not None and default_agent not in client.registry:
        raise ConfigurationError(
            f"default_agent {default_agent!r} is not registered (known: {sorted(client.registry)})"
        )
    return DispatchTool(
        client=client,
        default_agent=default_agent,
        default_aggregate=aggregate,
        max_items=max_items,
        **_tool_fields(name, description),
    )


def create_delegate_tool(
    registry: Agents,
    *,
    limits: DispatchResourceLimits | None = None,
    timeout: float | None = None,
    name: str | None = None,
    description: str | None = None,
    guards: Guards | None = None,
    **options: Unpack[GuardOptions],
) -> DelegateTool:
    """A tool that hands one task to a named agent (``A2AClient.delegate`` underneath).

    Args:
        registry: an ``A2AClient``, an ``AgentRegistry``, a mapping, or one agent.
        limits / guards / **options: as for ``create_dispatch_tool``.
        timeout: seconds each attempt may run.
        name / description: override ``delegate_to_agent`` and the generated description.

    Raises:
        ConfigurationError: no agent, an unknown fallback, or options with a client.

    Example:
        >>> tool = create_delegate_tool({"researcher": model, "backup_agent": backup},
        ...     policy=ErrorRecoveryPolicy(strategy=ErrorStrategy.FALLBACK,
        ...                                fallback_tools=["backup_agent"]), timeout=30)
    """
    check_number("timeout", timeout, above=0, at_most=MAX_SECONDS, optional=True)
    client = client_for(registry, limits=limits, guards=guards, options=options)
    return DelegateTool(client=client, timeout=timeout, **_tool_fields(name, description))


def create_vote_tool(
    agents: Agents,
    *,
    n: int | None = None,
    voters: Sequence[str] | None = None,
    key: str | None = None,
    early: EarlyRule | None = "exact",
    limits: DispatchResourceLimits | None = None,
    name: str | None = None,
    description: str | None = None,
    guards: Guards | None = None,
    **options: Unpack[GuardOptions],
) -> VoteTool:
    """A tool that asks an ensemble one question and returns the majority vote.

    Args:
        agents: one model (asked ``n`` times, 5 by default), or several agents (each asked
            ``n`` times, once by default), as a client, registry or mapping.
        n: samples per voting agent; distinct calls, never one cached answer.
        voters: registry names that vote (all by default).
        key: JSON field of each answer to vote on.
        early: ``"exact"`` stops once the leader cannot be overtaken, ``"adaptive"`` once
            it is very likely to stay ahead, ``None`` asks everyone.
        limits / guards / **options: as for ``create_dispatch_tool``.
        name / description: override ``ask_ensemble`` and the generated description.

    Raises:
        ConfigurationError: no agent, an unknown voter, ``n < 1``.

    Example:
        >>> tool = create_vote_tool(model, n=5)
        >>> tool.invoke({"question": "Is this spam?", "options": ["yes", "no"],
        ...              "context": email})[0]
        'vote: no (4/5 votes, 80%); no: 4, yes: 1\\n...'
    """
    check_number("n", n, at_least=1, at_most=10_000, integer=True, optional=True)
    check_text("key", key, optional=True)
    _check_choice("early", early, typing.get_args(EarlyRule))
    if voters is not None and (
        isinstance(voters, str)
        or not isinstance(voters, Sequence)
        or not all(isinstance(v, str) for v in voters)
    ):
        raise ConfigurationError(f"voters must be a list of agent names, got {shown(voters)}")
    client = client_for(agents, limits=limits, guards=guards, options=options)
    names = tuple(voters) if voters is not None else tuple(client.registry)
    if n is None:
        n = 5 if len(names) == 1 else 1
    _check_voters(names, client)
    return VoteTool(
        client=client, voters=names, n=n, key=key, early=early, **_tool_fields(name, description)
    )
