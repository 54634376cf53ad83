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

import asyncio
import contextvars
import json
from collections.abc import Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar, cast

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, Field, ValidationError, create_model, model_validator
from pydantic.v1 import ValidationError as ValidationErrorV1

from .agents import AgentLike
from .aggregate import aggregator_from
from .call import Task
from .delegation import (
    A2AClient,
    AgentDelegationRequest,
    AgentRegistry,
    DelegationResult,
    output_text,
)
from .dispatch import DispatchResult
from .errors import BudgetExceeded, ConfigurationError, DispatchFailed, InvalidInputError
from .ledger import CostLedger
from .limits import DispatchResourceLimits
from .prompts import PromptTemplate
from .recovery import ErrorRecoveryPolicy
from .report import DispatchReport
from .results import SubAgentResult
from .voting import EarlyRule, Vote, majority_vote

__all__ = [
    "AggregateName",
    "DelegateInput",
    "DelegateTool",
    "DispatchInput",
    "DispatchTool",
    "VoteInput",
    "VoteTool",
    "create_delegate_tool",
    "create_dispatch_tool",
    "create_vote_tool",
    "explain_validation_error",
]

T = TypeVar("T")

AggregateName: TypeAlias = Literal[
    "collect_all", "majority_vote", "best_result", "first_success", "mean", "median"
]
"""Aggregations a model may ask the dispatch tool for."""

Agents: TypeAlias = A2AClient | AgentRegistry | Mapping[str, AgentLike] | AgentLike
"""What a tool calls: a client (shares its budget), a registry, a mapping, or one agent."""

_ToolOutput: TypeAlias = tuple[str, Any]
_FAILURES_SHOWN = 5
_ERROR_CHARS = 160


# --------------------------------------------------------------------------- argument schemas


class DispatchInput(BaseModel):
    """Arguments of the dispatch tool (the tool narrows ``agent`` to its registry's names)."""

    instruction: str = Field(
        min_length=1,
        description=(
            "What each sub-agent must do. Put {item} where the item goes, or {name} fields "
            "of dict items; without any field the item is appended. Write {{ and }} for "
            "literal braces."
        ),
    )
    items: list[str | dict[str, Any]] = Field(
        min_length=1,
        description="The items: one sub-agent call each (strings, or objects with the fields).",
    )
    agent: str | None = Field(
        default=None, description="Which agent runs the items (the tool's default if omitted)."
    )
    aggregate: AggregateName | None = Field(
        default=None,
        description=(
            "How to combine the results: collect_all (every output, the default), "
            "majority_vote, best_result, first_success (stops at the first), mean, median."
        ),
    )
    key: str | None = Field(
        default=None,
        description="JSON field to read from each output for the aggregate (e.g. 'category').",
    )


class DelegateInput(BaseModel):
    """Arguments of the delegate tool (the tool narrows ``agent`` to its registry's names)."""

    agent: str = Field(description="The agent to hand the task to.")
    task: str = Field(min_length=1, description="What the agent must do, in full sentences.")
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Named inputs the task needs (documents, data, earlier results).",
    )


class VoteInput(BaseModel):
    """Arguments of the vote tool."""

    question: str = Field(min_length=1, description="The question every voter answers.")
    options: list[str] | None = Field(
        default=None,
        description="The allowed answers; voters are told to answer with exactly one.",
    )
    context: str | None = Field(
        default=None, description="Material the question is about (a document, a message)."
    )


def explain_validation_error(error: ValidationError | ValidationErrorV1) -> str:
    """Turn invalid tool arguments into a message the model can act on.

    Example:
        >>> explain_validation_error(error)
        "invalid arguments, nothing was run: agent: Input should be 'a' or 'b'. Fix ..."
    """
    problems = []
    for detail in error.errors()[:6]:
        where = ".".join(str(part) for part in detail["loc"]) or "arguments"
        problems.append(f"{where}: {detail['msg']}")
    return (
        f"invalid arguments, nothing was run: {'; '.join(problems)}. "
        "Fix them and call the tool again."
    )


def _one_of(names: Sequence[str]) -> Any:
    """``Literal[names]``: the JSON schema then lists them as an enum the model picks from."""
    return Literal.__getitem__(tuple(names))


# --------------------------------------------------------------------------- shared base


class _FanoutTool(BaseTool):
    """What the three tools share: the client, the output format, sync over async."""

    default_name: ClassVar[str]
    client: A2AClient
    """Runs the calls; its shared run is the budget of every call of this tool."""
    max_content_chars: int = Field(default=4000, ge=200)
    """Most characters of the content string (the artifact always has everything)."""
    max_item_chars: int = Field(default=600, ge=40)
    """Most characters shown per output in the content string."""

    @model_validator(mode="before")
    @classmethod
    def _tool_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {
            "response_format": "content_and_artifact",
            "handle_tool_error": True,
            "handle_validation_error": explain_validation_error,
            **data,
        }
        client = data.get("client")
        if isinstance(client, A2AClient):
            if not client.registry:
                raise ConfigurationError("the tool needs at least one registered agent")
            data.setdefault("name", cls.default_name)
            data.setdefault("description", cls._describe(client, data))
            data.setdefault("args_schema", cls._schema(client, data))
        return data

    @classmethod
    def _describe(cls, client: A2AClient, data: Mapping[str, Any]) -> str:
        raise NotImplementedError

    @classmethod
    def _schema(cls, client: A2AClient, data: Mapping[str, Any]) -> type[BaseModel]:
        raise NotImplementedError

    @property
    def ledger(self) -> CostLedger:
        """The budget of this tool's run."""
        return self.client.ledger

    def reset_budget(self) -> None:
        """Start a new run: a fresh budget and agent count for the next calls."""
        self.client.reset()

    def _run(
        self, *args: Any, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> _ToolOutput:
        return _blocking(self._call(_child_config(run_manager), *args, **kwargs))

    async def _arun(
        self, *args: Any, run_manager: AsyncCallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> _ToolOutput:
        return await self._call(_child_config(run_manager), *args, **kwargs)

    async def _call(self, config: RunnableConfig | None, *args: Any, **kwargs: Any) -> _ToolOutput:
        """One call of the tool with its validated arguments."""
        raise NotImplementedError


def _blocking(call: Coroutine[Any, Any, T]) -> T:
    """Run a tool call from its sync ``invoke``.

    LangChain runs sync tools in worker threads with no loop: a fresh loop there is fine.
    A sync call made inside a running loop (a sync agent in a notebook) runs on a fresh
    loop in a worker thread instead of failing. The context goes along either way, so the
    engine still finds a dispatch the call is nested in.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call)
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="langgraph-fanout-sync") as pool:
        return pool.submit(context.run, asyncio.run, call).result()


def _child_config(
    run_manager: CallbackManagerForToolRun | AsyncCallbackManagerForToolRun | None,
) -> RunnableConfig | None:
    # Only the callbacks (with their inherited tags and metadata) go down to sub-agents.
    # The agent's ``configurable`` does not: each sub-agent is a run of its own, and
    # several calls of one graph under the parent's checkpoint namespace would collide.
    if run_manager is None:
        return None
    return {"callbacks": run_manager.get_child()}


def _registry_lines(client: A2AClient) -> str:
    registry = client.registry
    described = ((name, registry.description(name)) for name in registry)
    return ", ".join(f"{name} ({text})" if text else name for name, text in described)


def _budget_sentence(client: A2AClient) -> str:
    cap = client.limits.max_total_cost_usd
    return f" Budget for the whole run: ${cap:.4f}." if cap is not None else ""


# --------------------------------------------------------------------------- dispatch tool


class DispatchTool(_FanoutTool):
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
            f"Agents: {_registry_lines(client)}.{_budget_sentence(client)}"
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
                _one_of(list(client.registry)) | None,
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
    ) -> _ToolOutput:
        if len(items) > self.max_items:
            raise ToolException(
                f"too many items: {len(items)} > {self.max_items}; split them over several calls"
            )
        template, arguments = _template_and_arguments(instruction, items)
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
            return head + _failure_line(exc.results), exc
        return self._dispatch_content(result, spec), result

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

    def _dispatch_content(self, result: DispatchResult, spec: str | None) -> str:
        report = result.report
        refusal = _budget_refusal(result.results, report)
        if refusal is not None:
            return refusal
        lines = [_status_line(report, result.results)]
        aggregate = result.aggregate
        if spec is None or spec == "collect_all":
            lines.extend(self._per_item(result.results))
            return self._fit(lines)
        if isinstance(aggregate, Vote):
            lines.append(_vote_line(aggregate))
        elif isinstance(aggregate, SubAgentResult):
            text = _clip(output_text(aggregate.output), self.max_item_chars)
            lines.append(f"{spec}: [{aggregate.index}] {text}")
        elif isinstance(aggregate, int | float):
            lines.append(f"{spec}: {aggregate:.6g}")
        elif aggregate is None:
            lines.append(f"{spec}: no answer (no successful output had a value)")
        else:
            lines.append(f"{spec}: {_clip(output_text(aggregate), self.max_item_chars)}")
        if result.failures:
            lines.append(_failure_line(result.results))
        return self._fit(lines)

    def _per_item(self, results: Sequence[SubAgentResult]) -> list[str]:
        return [
            f"[{r.index}] {_clip(output_text(r.output), self.max_item_chars)}"
            if r.ok
            else f"[{r.index}] failed ({r.error_kind}): {_short(r.error)}"
            for r in results
        ]

    def _fit(self, lines: list[str]) -> str:
        kept: list[str] = []
        used = 0
        for position, line in enumerate(lines):
            if used + len(line) + 1 > self.max_content_chars and kept:
                kept.append(f"... {len(lines) - position} more line(s) in the artifact")
                break
            kept.append(line)
            used += len(line) + 1
        return "\n".join(kept)


def _template_and_arguments(instruction: str, items: Sequence[Any]) -> tuple[str, list[Any]]:
    """The engine's template and argument sets for the model's instruction and items."""
    try:
        parsed = PromptTemplate.parse(instruction)
    except InvalidInputError as exc:
        raise ToolException(
            f"invalid instruction: {exc.message}. Use {{item}} or plain {{name}} fields and "
            "write {{ and }} for literal braces."
        ) from None
    if not parsed.fields:  # no field: the item goes after the instruction
        return instruction + "\n\n{item}", [{"item": _item_text(item)} for item in items]
    arguments: list[Any] = []
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            arguments.append(dict(item))
        elif parsed.names == {"item"}:
            arguments.append({"item": item})
        else:
            raise ToolException(
                f"item {index} is a string but the instruction uses the fields "
                f"{sorted(parsed.names)}: pass objects with those fields, or use {{item}}"
            )
    return instruction, arguments


def _item_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    return json.dumps(item, ensure_ascii=False, sort_keys=True, default=str)


# --------------------------------------------------------------------------- delegate tool


class DelegateTool(_FanoutTool):
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
            f"left. Agents: {_registry_lines(client)}.{_budget_sentence(client)}"
        )

    @classmethod
    def _schema(cls, client: A2AClient, data: Mapping[str, Any]) -> type[BaseModel]:
        schema: type[BaseModel] = create_model(
            "DelegateToAgentInput",
            __base__=DelegateInput,
            __doc__="Hand one task to a named agent.",
            agent=(_one_of(list(client.registry)), Field(description="The agent to ask.")),
        )
        return schema

    async def _call(
        self,
        config: RunnableConfig | None,
        agent: str,
        task: str,
        context: dict[str, Any] | None = None,
    ) -> _ToolOutput:
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
        return _delegation_content(result, self.client, self.max_content_chars), result


def _delegation_content(result: DelegationResult, client: A2AClient, limit: int) -> str:
    ledger = client.active_ledger()
    budget = _ledger_text(ledger)
    attempts = len(result.attempts)
    if result.success:
        who = result.agent_used or result.agent_id
        if result.fallback_used:
            who = f"{who} (fallback for {result.agent_id})"
        head = f"{who} answered; {attempts} attempt(s), ${result.cost_usd:.4f}{budget}"
        return head + "\n" + _clip(result.text, max(40, limit - len(head) - 1))
    if isinstance(result.error, BudgetExceeded):
        return _refusal_text(result.error, ledger.spent_usd, ledger.limit_usd)
    tried = ", ".join(result.errors) or "none"
    return (
        f"delegation to {result.agent_id!r} failed ({result.error_kind}): "
        f"{_short(result.error)}; attempt errors: {tried}; ${result.cost_usd:.4f}{budget}"
    )


# --------------------------------------------------------------------------- vote tool


class VoteTool(_FanoutTool):
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
            f"where agreement matters; give `options` to fix the answers.{_budget_sentence(client)}"
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
    ) -> _ToolOutput:
        template = _vote_template(question, options, with_context=context is not None)
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
            )
            for position, name in enumerate(names)
            for sample in range(self.n)
        ]
        vote = majority_vote(self.key, early=self.early)
        try:
            result = await self.client.run_tasks(tasks, aggregate=vote, config=config)
        except DispatchFailed as exc:
            return f"vote failed ({exc.reason}). " + _failure_line(exc.results), exc
        return _vote_content(result), result


def _check_voters(voters: Sequence[str], client: A2AClient) -> None:
    unknown = [v for v in voters if v not in client.registry]
    if unknown:
        raise ConfigurationError(f"unknown voters {unknown} (known: {sorted(client.registry)})")


def _vote_template(
    question: str, options: Sequence[str] | None, *, with_context: bool
) -> PromptTemplate:
    text = question
    if options:
        text += "\n\nAnswer with exactly one of: " + ", ".join(options)
    if not with_context:
        return PromptTemplate(text, (text,), ())
    # Built directly: the question is the model's own text, braces included, and the
    # context is the one untrusted argument (screened by the pipeline).
    return PromptTemplate(text, (text + "\n\nContext:\n", ""), ("context",))


def _vote_content(result: DispatchResult) -> str:
    report = result.report
    refusal = _budget_refusal(result.results, report)
    if refusal is not None:
        return refusal
    vote = result.aggregate
    decided = isinstance(vote, Vote) and vote.winner is not None
    lines = [_vote_line(vote) if decided else "no valid votes"]
    lines.append(_status_line(report, result.results))
    if result.failures:
        lines.append(_failure_line(result.results))
    return "\n".join(lines)


def _vote_line(vote: Vote) -> str:
    notes = [f"{vote.share:.0%}"]
    if vote.tie:
        notes.append("tie broken by the first voter")
    if vote.decided_early:
        notes.append(f"decided early, {vote.not_voted} voter(s) not needed")
    counts = ", ".join(f"{answer}: {weight:g}" for answer, weight in list(vote.counts.items())[:6])
    winner = _clip(output_text(vote.winner), 200)
    return f"vote: {winner} ({vote.support}/{vote.voters} votes, {'; '.join(notes)}); {counts}"


# --------------------------------------------------------------------------- content helpers


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _short(error: Any) -> str:
    return _clip(str(error), _ERROR_CHARS)


def _status_line(report: DispatchReport, results: Sequence[SubAgentResult]) -> str:
    failed = report.inputs - report.succeeded
    line = f"{report.succeeded}/{report.inputs} ok"
    if failed:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(report.failures_by_kind.items()))
        line += f"; {failed} failed ({kinds})"
    line += f"; spent ${report.spent_usd:.4f}"
    if report.budget_usd is not None:
        left = max(0.0, report.budget_usd - report.total_spent_usd)
        line += (
            f" (run: ${report.total_spent_usd:.4f} of ${report.budget_usd:.4f}, ${left:.4f} left)"
        )
    refused = [r.error for r in results if isinstance(r.error, BudgetExceeded)]
    if refused and report.budget_usd is not None:
        line += (
            f"; {len(refused)} refused by the budget (one call needs up to "
            f"${max(e.estimate_usd for e in refused):.4f})"
        )
    if report.stop_reason:
        line += f"; stopped early: {report.stop_reason}"
    return line


def _failure_line(results: Sequence[SubAgentResult]) -> str:
    failed = [r for r in results if not r.ok]
    shown = "; ".join(
        f"[{r.index}] {r.error_kind}: {_short(r.error)}" for r in failed[:_FAILURES_SHOWN]
    )
    more = f" (+{len(failed) - _FAILURES_SHOWN} more)" if len(failed) > _FAILURES_SHOWN else ""
    return f"failed: {shown}{more}" if failed else "failed: none"


def _budget_refusal(results: Sequence[SubAgentResult], report: DispatchReport) -> str | None:
    """The refusal message when the budget refused every input (nothing ran)."""
    if not results or not all(isinstance(r.error, BudgetExceeded) for r in results):
        return None
    error = cast(BudgetExceeded, results[0].error)
    return _refusal_text(error, report.total_spent_usd, report.budget_usd)


def _refusal_text(error: BudgetExceeded, spent: float, limit: float | None) -> str:
    cap = error.limit_usd if limit is None else limit
    return (
        "refused: the cost budget of this run cannot cover the call, nothing was run. "
        f"Spent ${spent:.4f} of ${cap:.4f}, ${max(0.0, cap - spent):.4f} left; one call needs "
        f"up to ${error.estimate_usd:.4f}. Answer with the results you already have."
    )


def _ledger_text(ledger: CostLedger) -> str:
    if ledger.limit_usd is None:
        return ""
    left = max(0.0, ledger.limit_usd - ledger.spent_usd)
    return f"; run: ${ledger.spent_usd:.4f} of ${ledger.limit_usd:.4f}, ${left:.4f} left"


# --------------------------------------------------------------------------- factories


def _client(
    agents: Agents,
    *,
    limits: DispatchResourceLimits | None,
    policy: ErrorRecoveryPolicy | None,
    ledger: CostLedger | None,
    options: Mapping[str, Any],
) -> A2AClient:
    if not isinstance(agents, A2AClient):
        registry = AgentRegistry.of(agents)
        return A2AClient(registry, limits=limits, policy=policy, ledger=ledger, **options)
    named = {"limits": limits, "policy": policy, "ledger": ledger}
    given = [k for k, v in named.items() if v is not None] + sorted(options)
    if given:
        raise ConfigurationError(f"configure the A2AClient instead of passing {given} with it")
    return agents


def _tool_fields(name: str | None, description: str | None) -> dict[str, Any]:
    fields = {"name": name, "description": description}
    return {k: v for k, v in fields.items() if v is not None}


def create_dispatch_tool(
    agents: Agents,
    *,
    limits: DispatchResourceLimits | None = None,
    policy: ErrorRecoveryPolicy | None = None,
    ledger: CostLedger | None = None,
    name: str | None = None,
    description: str | None = None,
    default_agent: str | None = None,
    aggregate: AggregateName | None = "collect_all",
    max_items: int = 100,
    **options: Any,
) -> DispatchTool:
    """A tool that runs one instruction over many items with sub-agents in parallel.

    Args:
        agents: an ``A2AClient`` (shares its budget), an ``AgentRegistry``, a mapping of
            names to agents, or one agent.
        limits / policy / ledger: the run's limits (shared by every call of the tool), its
            retry/fallback policy (``fallback_tools`` are registry names), a ledger to share.
        name / description: override ``dispatch_agents`` and the generated description.
        default_agent: agent used when the model names none.
        aggregate: aggregation used when the model asks for none.
        max_items: most items per call.
        **options: other ``A2AClient`` options (``prices``, ``screening``, ``cache``,
            ``rate_limiter``, ``breakers``, ``sleep``, ``rng``, ``config``).

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
    client = _client(agents, limits=limits, policy=policy, ledger=ledger, options=options)
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
    policy: ErrorRecoveryPolicy | None = None,
    ledger: CostLedger | None = None,
    timeout: float | None = None,
    name: str | None = None,
    description: str | None = None,
    **options: Any,
) -> DelegateTool:
    """A tool that hands one task to a named agent (``A2AClient.delegate`` underneath).

    Args:
        registry: an ``A2AClient``, an ``AgentRegistry``, a mapping, or one agent.
        limits / policy / ledger / **options: as for ``create_dispatch_tool``.
        timeout: seconds each attempt may run.
        name / description: override ``delegate_to_agent`` and the generated description.

    Raises:
        ConfigurationError: no agent, an unknown fallback, or options with a client.

    Example:
        >>> tool = create_delegate_tool({"researcher": model, "backup_agent": backup},
        ...     policy=ErrorRecoveryPolicy(strategy=ErrorStrategy.FALLBACK,
        ...                                fallback_tools=["backup_agent"]), timeout=30)
    """
    client = _client(registry, limits=limits, policy=policy, ledger=ledger, options=options)
    return DelegateTool(client=client, timeout=timeout, **_tool_fields(name, description))


def create_vote_tool(
    agents: Agents,
    *,
    n: int | None = None,
    voters: Sequence[str] | None = None,
    key: str | None = None,
    early: EarlyRule | None = "exact",
    limits: DispatchResourceLimits | None = None,
    policy: ErrorRecoveryPolicy | None = None,
    ledger: CostLedger | None = None,
    name: str | None = None,
    description: str | None = None,
    **options: Any,
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
        limits / policy / ledger / **options: as for ``create_dispatch_tool``.
        name / description: override ``ask_ensemble`` and the generated description.

    Raises:
        ConfigurationError: no agent, an unknown voter, ``n < 1``.

    Example:
        >>> tool = create_vote_tool(model, n=5)
        >>> tool.invoke({"question": "Is this spam?", "options": ["yes", "no"],
        ...              "context": email})[0]
        'vote: no (4/5 votes, 80%); no: 4, yes: 1\\n...'
    """
    client = _client(agents, limits=limits, policy=policy, ledger=ledger, options=options)
    names = tuple(voters) if voters is not None else tuple(client.registry)
    if n is None:
        n = 5 if len(names) == 1 else 1
    if n < 1:
        raise ConfigurationError(f"n must be >= 1, got {n}")
    _check_voters(names, client)
    return VoteTool(
        client=client, voters=names, n=n, key=key, early=early, **_tool_fields(name, description)
    )
