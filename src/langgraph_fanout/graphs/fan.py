"""LangGraph patterns: fan-out, fan-in, pipelines with parallel branches, and trees.

Each ``create_*_graph`` returns an **uncompiled** ``StateGraph``: compile it with the
checkpointer, store and cache you want, run it with ``ainvoke``/``astream`` (the nodes are
async), or add the compiled graph as a node of your own graph. Every sub-agent call goes
through the one call pipeline, so budget, retries, breakers, cache, rate limits and
screening hold here as in ``dispatch_agents``; the budget and concurrency cap are shared
with whatever the graph runs inside (a dispatch, another of these graphs), so nesting
never multiplies them. LangGraph's own ``max_concurrency`` stays yours.

A failing call never raises out of its node (LangGraph would cancel the siblings in
flight and re-run them on resume): its typed error reaches the state as a result. Results
are kept as checkpoint-safe records (``result_to_record``; ``as_dispatch_result`` turns an
output back into a ``DispatchResult``). With a checkpointer, a run that dies resumes with
the same ``thread_id``: finished items are neither called nor paid for again (LangGraph
saves each finished ``Send`` task's writes as it ends, unless ``durability="exit"``, which
saves nothing before the run ends). Each finished call writes an ``item_done`` event to
``stream_mode="custom"``: ``index``, ``status``, ``done``, ``total``, ``cost_usd_so_far``.

Example:
    >>> graph = create_fan_out_graph(model, template="Classify: {text}",
    ...                              aggregate=majority_vote()).compile()
    >>> out = await graph.ainvoke({"items": [{"text": t} for t in texts]})
    >>> out["aggregate"].winner, out["report"]["spent_usd"]
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, NotRequired, TypedDict, Unpack

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from langgraph_fanout.aggregate.aggregators import aggregator_from, apply_aggregate
from langgraph_fanout.core.checks import check_samples
from langgraph_fanout.core.prompts import PromptTemplate, validate_arguments
from langgraph_fanout.core.report import DispatchReport
from langgraph_fanout.core.results import SubAgentResult
from langgraph_fanout.core.stopping import StopCondition
from langgraph_fanout.core.text import as_text
from langgraph_fanout.engine.agents import AgentLike, SubAgent
from langgraph_fanout.engine.call import Task
from langgraph_fanout.engine.dispatch import Dispatcher, DispatchResult
from langgraph_fanout.engine.options import GuardOptions, Guards
from langgraph_fanout.engine.run import RunController
from langgraph_fanout.engine.spec import DispatchMode
from langgraph_fanout.errors import ConfigurationError, InvalidInputError
from langgraph_fanout.graphs.records import (
    DEFERRED,
    Record,
    deferred_record,
    latest_records,
    merge_records,
    result_to_record,
    results_from_records,
)
from langgraph_fanout.graphs.runs import (
    call_node,
    close_run,
    ensure_run,
    find_run,
    is_agent,
    make_dispatcher,
    run_call,
)
from langgraph_fanout.guards.limits import DispatchResourceLimits

Aggregate = Callable[[Sequence[SubAgentResult]], Any]

_AGGREGATE_PROMPT = "Combine these {count} results into one answer.\n\n{results}"


class GraphTask(TypedDict):
    """One explicit task of a fan-out: which agent (by name) gets which input."""

    agent: str
    input: Any
    key: NotRequired[str]


class FanOutInput(TypedDict, total=False):
    """Input of a fan-out graph: ``items`` for the graph's agent(s), or explicit ``tasks``."""

    items: list[Any]
    tasks: list[GraphTask]


class FanInInput(TypedDict):
    """Input of a fan-in graph: what every collector is called with, one call per source."""

    sources: list[Any]


class FanOutOutput(TypedDict, total=False):
    """Output of fan-out and fan-in graphs.

    Attributes:
        results: one record per call, in input order (see ``result_to_record``).
        aggregate: the aggregator's value (the aggregator agent's output for an agent).
        aggregate_result: the aggregator agent's own call record, if it is an agent.
        report: ``DispatchReport.to_dict()`` of the run.
    """

    results: list[Record]
    aggregate: Any
    aggregate_result: Record | None
    report: dict[str, Any]


class FanState(FanOutInput, FanOutOutput, total=False):
    """State of fan-out and fan-in graphs (internal keys included)."""

    sources: list[Any]
    run_key: str
    started_at: float
    finished: Annotated[list[Record], merge_records]


def as_dispatch_result(output: Mapping[str, Any]) -> DispatchResult:
    """Turn a fan-out or fan-in graph's output back into a ``DispatchResult``.

    Example:
        >>> result = as_dispatch_result(await graph.ainvoke({"items": items}))
        >>> result.outputs, result.failures, result.report.spent_usd
    """
    results = tuple(results_from_records(output.get("results") or ()))
    report = DispatchReport(**(output.get("report") or {}))
    return DispatchResult(results, report, output.get("aggregate"))


# -- fan-out and fan-in -------------------------------------------------------------------


class _FanGraph:
    """Nodes of a fan-out (or fan-in): ``prepare`` -> ``Send`` per call -> ``collect``."""

    def __init__(
        self,
        *,
        name: str,
        dispatcher: Dispatcher,
        agents: Sequence[SubAgent],
        template: str | None,
        samples: int,
        aggregator: AgentLike | None,
        aggregate_prompt: str,
        fan_in: bool,
    ) -> None:
        if not agents:
            raise ConfigurationError("give at least one agent")
        check_samples(samples)
        self.name = name
        self.dispatcher = dispatcher
        self.rotation = tuple(a.name for a in agents)
        self.agents: dict[str, SubAgent] = dict(dispatcher.agents)
        for agent in agents:
            if self.agents.get(agent.name, agent) is not agent:
                raise ConfigurationError(
                    f"two agents are named {agent.name!r}: give them distinct names "
                    "(SubAgent.of(obj, name=...))"
                )
            self.agents[agent.name] = agent
        self.template = None if template is None else PromptTemplate.parse(template)
        self.samples = samples
        self.fan_in = fan_in
        self.aggregate: Aggregate | None = dispatcher.aggregate
        self.aggregator = None if aggregator is None else dispatcher.resolve(aggregator)
        self.aggregate_prompt = PromptTemplate.parse(aggregate_prompt)
        extra = self.aggregate_prompt.names - {"results", "count"}
        if extra:
            raise ConfigurationError(
                f"aggregate_prompt may use {{results}} and {{count}} only, not {sorted(extra)}"
            )

    def build(self) -> StateGraph[FanState, None, Any, FanOutOutput]:
        input_schema: type[Any] = FanInInput if self.fan_in else FanOutInput
        graph = StateGraph(FanState, input_schema=input_schema, output_schema=FanOutOutput)
        graph.add_node("prepare", self.prepare)
        graph.add_node("call_agent", self.call_agent)
        graph.add_node("collect", self.collect)
        graph.add_edge(START, "prepare")
        graph.add_conditional_edges("prepare", self.route, ["call_agent", "collect"])
        graph.add_edge("call_agent", "collect")
        graph.add_conditional_edges("collect", self.route_again, ["call_agent", END])
        return graph

    # planning ---------------------------------------------------------------------------

    def plan(self, state: FanState) -> list[Record]:
        """The calls of this input, as ``Send`` payloads (without the run key).

        Raises:
            InvalidInputError: names every bad item; nothing was called.
        """
        problems: list[tuple[int, str]] = []
        calls: list[tuple[str, Any, str | None]] = []
        if self.fan_in:
            sources = state.get("sources")
            if not isinstance(sources, list | tuple):
                raise InvalidInputError(problems=[(-1, "input needs 'sources': a list")])
            calls = [(agent, source, None) for source in sources for agent in self.rotation]
        else:
            items, tasks = state.get("items"), state.get("tasks")
            if (items is None) == (tasks is None):
                raise InvalidInputError(
                    problems=[(-1, "input needs either 'items' or 'tasks' (a list), not both")]
                )
            if items is not None:
                if not isinstance(items, list | tuple):
                    raise InvalidInputError(problems=[(-1, "'items' must be a list")])
                n = len(self.rotation)
                calls = [(self.rotation[i % n], item, None) for i, item in enumerate(items)]
            else:
                calls, problems = self._tasks(tasks)
        if self.template is not None:
            bad = {i for i, _ in problems}
            problems += [
                p
                for p in validate_arguments(self.template, [c[1] for c in calls])
                if p[0] not in bad
            ]
        if problems:
            raise InvalidInputError(problems=sorted(problems))
        return [
            {"index": i * self.samples + s, "agent": agent, "input": value, "sample": s, "key": key}
            for i, (agent, value, key) in enumerate(calls)
            for s in range(self.samples)
        ]

    def _tasks(self, tasks: Any) -> tuple[list[tuple[str, Any, str | None]], list[tuple[int, str]]]:
        if not isinstance(tasks, list | tuple):
            raise InvalidInputError(problems=[(-1, "'tasks' must be a list")])
        calls: list[tuple[str, Any, str | None]] = []
        problems: list[tuple[int, str]] = []
        for i, task in enumerate(tasks):
            if not isinstance(task, Mapping) or "input" not in task:
                problems.append((i, "a task is a mapping with 'agent' and 'input'"))
                calls.append(("", None, None))
                continue
            agent = task.get("agent")
            if agent not in self.agents:
                known = sorted(self.agents)
                problems.append((i, f"unknown agent {agent!r} (known: {known})"))
            calls.append((str(agent), task["input"], task.get("key")))
        return calls, problems

    def sends(self, state: FanState, indices: Sequence[int] | None = None) -> list[Send]:
        key = state["run_key"]
        plan = self.plan(state)
        chosen = plan if indices is None else [plan[i] for i in indices]
        return [Send("call_agent", {**p, "run_key": key}) for p in chosen]

    def route(self, state: FanState) -> list[Send] | str:
        sends = self.sends(state)
        return sends or "collect"

    def route_again(self, state: FanState) -> list[Send] | str:
        pending = self._pending(state, len(self.plan(state)))
        return self.sends(state, pending) if pending else END

    @staticmethod
    def _pending(state: FanState, total: int) -> list[int]:
        latest = latest_records(state.get("finished") or ())
        return [i for i in range(total) if i not in latest or latest[i]["status"] == DEFERRED]

    # nodes ------------------------------------------------------------------------------

    async def prepare(self, state: FanState) -> dict[str, Any]:
        plan = self.plan(state)
        key = uuid.uuid4().hex
        await ensure_run(
            key, name=self.name, dispatcher=self.dispatcher, total=len(plan), recovered=()
        )
        return {
            "run_key": key,
            "started_at": time.time(),
            "finished": {"reset": True},
            "results": [],
            "aggregate": None,
            "aggregate_result": None,
            "report": {},
        }

    async def call_agent(self, state: Any, config: RunnableConfig) -> dict[str, Any]:
        payload: Mapping[str, Any] = state  # a Send payload, not the graph state
        index, sample = payload["index"], payload["sample"]
        agent = self.agents[payload["agent"]]
        run = find_run(payload["run_key"])
        if run is None:
            # Resumed in a process that has no state for this run: the collecting node
            # rebuilds it from the checkpointed results and sends this item again.
            return {"finished": [deferred_record(index, agent.name, sample)]}
        value = payload["input"]
        template = self.template
        task = Task(
            index=index,
            agent=agent,
            prompt=value if template is None else template.render(value),
            arguments=value if template is not None else None,
            template=template,
            sample=sample,
            question=index // self.samples if self.samples > 1 else None,
            key=payload.get("key"),
        )
        async with call_node(payload["run_key"]):
            result = await run_call(run, task, config=config)
        return {"finished": [result_to_record(result)]}

    async def collect(self, state: FanState, config: RunnableConfig) -> dict[str, Any]:
        key = state["run_key"]
        total = len(self.plan(state))
        latest = latest_records(state.get("finished") or ())
        done = [r for r in latest.values() if r["status"] != DEFERRED]
        run = await ensure_run(
            key, name=self.name, dispatcher=self.dispatcher, total=total, recovered=done
        )
        if self._pending(state, total):
            return {}  # route_again sends them to the rebuilt run
        records = [latest[i] for i in range(total)]
        results = results_from_records(records)
        update: dict[str, Any] = {"results": records}
        try:
            outcomes = await self._aggregate(run, results, update, config)
            report = run.report(
                outcomes, wall_time_s=time.time() - state.get("started_at", time.time())
            )
        except BaseException as exc:
            await close_run(key, failed=exc)
            raise
        await close_run(key)
        update["report"] = report.to_dict()
        run.check_outcome(report, tuple(results))
        return update

    async def _aggregate(
        self,
        run: RunController,
        results: list[SubAgentResult],
        update: dict[str, Any],
        config: RunnableConfig,
    ) -> list[SubAgentResult]:
        """Aggregate into ``update``; return every call of the run (an aggregator agent's too)."""
        if self.aggregator is not None:
            prompt = self.aggregate_prompt.render(
                {"results": _render_results(results), "count": len(results)}
            )
            task = Task(index=len(results), agent=self.aggregator, prompt=prompt)
            outcome = await run_call(run, task, config=config, progress=False)
            update["aggregate"] = outcome.output
            update["aggregate_result"] = result_to_record(outcome)
            return [*results, outcome]
        if self.aggregate is not None:
            update["aggregate"] = apply_aggregate(self.aggregate, results)
        return results


def _render_results(results: Sequence[SubAgentResult]) -> str:
    lines = []
    for r in results:
        body = as_text(r.output) if r.ok else f"(failed: {r.error_kind})"
        lines.append(f"[{r.index + 1}] {r.agent_used or r.agent}: {body}")
    return "\n\n".join(lines)


def _agents_of(dispatcher: Dispatcher, agent: AgentLike | Sequence[AgentLike]) -> list[SubAgent]:
    if isinstance(agent, Sequence) and not isinstance(agent, str):
        return [dispatcher.resolve(a) for a in agent]
    return [dispatcher.resolve(agent)]


def _fan_graph(
    agents: AgentLike | Sequence[AgentLike],
    *,
    fan_in: bool,
    template: str | None,
    aggregate: Aggregate | str | AgentLike | None,
    aggregate_prompt: str,
    limits: DispatchResourceLimits | None,
    mode: DispatchMode | str,
    stop: StopCondition | None,
    samples: int,
    registry: Mapping[str, AgentLike] | None,
    name: str,
    guards: Guards | None,
    options: GuardOptions,
) -> StateGraph[FanState, None, Any, FanOutOutput]:
    agent_aggregate = aggregate if is_agent(aggregate) else None
    function = None if aggregate is None or agent_aggregate is not None else aggregate
    dispatcher = make_dispatcher(
        limits=limits,
        agents=registry,
        guards=guards,
        options=options,
        mode=mode,
        stop=stop,
        aggregate=None if function is None else aggregator_from(function),
        name=name,
    )
    return _FanGraph(
        name=name,
        dispatcher=dispatcher,
        agents=_agents_of(dispatcher, agents),
        template=template,
        samples=samples,
        aggregator=agent_aggregate,
        aggregate_prompt=aggregate_prompt,
        fan_in=fan_in,
    ).build()


def create_fan_out_graph(
    agent: AgentLike | Sequence[AgentLike],
    *,
    template: str | None = None,
    aggregate: Aggregate | str | AgentLike | None = None,
    aggregate_prompt: str = _AGGREGATE_PROMPT,
    limits: DispatchResourceLimits | None = None,
    mode: DispatchMode | str = DispatchMode.PARTIAL,
    stop: StopCondition | None = None,
    samples: int = 1,
    agents: Mapping[str, AgentLike] | None = None,
    name: str = "fan_out",
    guards: Guards | None = None,
    **options: Unpack[GuardOptions],
) -> StateGraph[FanState, None, Any, FanOutOutput]:
    """A graph that calls the agent once per item, in parallel (one ``Send`` each).

    Input ``{"items": [...]}`` (given to the agents in turn) or ``{"tasks": [{"agent":
    name, "input": ...}, ...]}``; output ``results`` (records, input order), ``aggregate``
    and ``report`` (see ``FanOutOutput``). The run follows the same rules as
    ``dispatch_agents`` with the same arguments (one run controller): a decided vote,
    ``stop=``, all-or-nothing and ``max_failure_rate`` stop it, and the calls not made end
    as ``cancelled`` records.

    Args:
        agent: a chat model, Runnable, callable or ``SubAgent``, or several (items go to
            them in turn; tasks name them).
        template: a prompt with ``{name}`` fields; each item is then a mapping of them.
        aggregate: applied to the results: a callable such as ``majority_vote()``, an
            aggregator name (``"majority_vote:category"``), or an agent (a ``SubAgent``,
            chat model or Runnable) called once with the results rendered into
            ``aggregate_prompt``.
        aggregate_prompt: the prompt of an aggregator agent (``{results}``, ``{count}``).
        limits: ``DispatchResourceLimits``; shared with the enclosing run when nested.
        mode: ``"partial"`` (default) or ``"all_or_nothing"`` (the last node raises
            ``DispatchFailed`` once every call has ended; no sibling is made to raise).
        stop: a stop condition such as ``stop_after_successes(3)``.
        samples: calls per item (distinct samples, e.g. voters).
        agents: agents by name (for tasks and fallbacks).
        name: shown in progress events.
        guards / **options: the guards, as for ``dispatch_agents`` (``policy``, ``cache``,
            ``hedge``, ``prices``, ``ledger``...).

    Raises:
        ConfigurationError: a bad argument (nothing is built).

    Example:
        >>> graph = create_fan_out_graph(model, template="Summarize: {text}").compile()
        >>> out = await graph.ainvoke({"items": [{"text": t} for t in docs]})
    """
    return _fan_graph(
        agent,
        fan_in=False,
        template=template,
        aggregate=aggregate,
        aggregate_prompt=aggregate_prompt,
        limits=limits,
        mode=mode,
        stop=stop,
        samples=samples,
        registry=agents,
        name=name,
        guards=guards,
        options=options,
    )


def create_fan_in_graph(
    collectors: AgentLike | Sequence[AgentLike],
    *,
    aggregator: Aggregate | str | AgentLike,
    template: str | None = None,
    aggregate_prompt: str = _AGGREGATE_PROMPT,
    limits: DispatchResourceLimits | None = None,
    mode: DispatchMode | str = DispatchMode.PARTIAL,
    stop: StopCondition | None = None,
    agents: Mapping[str, AgentLike] | None = None,
    name: str = "fan_in",
    guards: Guards | None = None,
    **options: Unpack[GuardOptions],
) -> StateGraph[FanState, None, Any, FanOutOutput]:
    """A graph that runs every collector on every source in parallel, then aggregates.

    Input ``{"sources": [...]}``; output as ``create_fan_out_graph`` (results ordered by
    source, then collector).

    Args:
        collectors: one agent, or several (each is called with every source).
        aggregator: a function of the results (``collect_all()``, ``majority_vote()``, an
            aggregator name) or an agent, called once with the collected outputs rendered
            into ``aggregate_prompt``; its failure is a typed error in ``aggregate_result``.
        template: a prompt with ``{name}`` fields; each source is then a mapping of them.
        aggregate_prompt: the prompt of an aggregator agent (``{results}``, ``{count}``).
        limits / mode / stop / agents / name / guards / **options: as for
            ``create_fan_out_graph``.

    Raises:
        ConfigurationError: a bad argument (nothing is built).

    Example:
        >>> graph = create_fan_in_graph([web, news, docs], aggregator=writer).compile()
        >>> (await graph.ainvoke({"sources": ["solid-state batteries"]}))["aggregate"]
    """
    if aggregator is None:
        raise ConfigurationError("a fan-in needs an aggregator (a function or an agent)")
    return _fan_graph(
        collectors,
        fan_in=True,
        template=template,
        aggregate=aggregator,
        aggregate_prompt=aggregate_prompt,
        limits=limits,
        mode=mode,
        stop=stop,
        samples=1,
        registry=agents,
        name=name,
        guards=guards,
        options=options,
    )
