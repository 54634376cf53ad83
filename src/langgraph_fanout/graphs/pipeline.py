"""Pipeline graphs: sequential stages with parallel branches at chosen points.

See ``graphs/fan.py``'s docstring for what every graph of this package
guarantees (one call pipeline, shared limits, typed errors in the state, durable resume,
``item_done`` progress events). Every node reads the whole state, so a node that finds no
run state in this process (a resumed run) rebuilds it from the records already there.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict, Unpack

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from langgraph_fanout.core.results import SubAgentResult
from langgraph_fanout.engine.agents import AgentLike, SubAgent
from langgraph_fanout.engine.call import Task
from langgraph_fanout.engine.dispatch import Dispatcher
from langgraph_fanout.engine.options import GuardOptions, Guards
from langgraph_fanout.engine.run import RunController
from langgraph_fanout.errors import ConfigurationError
from langgraph_fanout.graphs.records import (
    Record,
    latest_records,
    merge_records,
    result_from_record,
    result_to_record,
)
from langgraph_fanout.graphs.runs import (
    call_node,
    check_limits,
    close_run,
    ensure_run,
    make_dispatcher,
    node_name,
    prompt_for,
    run_call,
)
from langgraph_fanout.guards.limits import DispatchResourceLimits

Combine = Callable[[Sequence[SubAgentResult]], Any]


@dataclass(frozen=True, slots=True)
class Parallel:
    """A branch point of a pipeline: the agents run in parallel on the same input.

    Build it with ``parallel(*agents, combine=...)``.

    Attributes:
        agents: the branches.
        combine: turns the branches' results (branch order, failures included) into the
            value passed on; ``None``: ``{agent name: output}`` of the branches that succeeded.
    """

    agents: tuple[AgentLike, ...]
    combine: Combine | None = None


def parallel(*agents: AgentLike, combine: Combine | None = None) -> Parallel:
    """A pipeline stage whose agents run in parallel; the stage fails only if all fail.

    Example:
        >>> create_pipeline_graph([validator, parallel(geo, company, news), writer])
    """
    return Parallel(agents=agents, combine=combine)


class PipelineInput(TypedDict):
    """Input of a pipeline graph: what its first stage gets."""

    input: Any


class PipelineOutput(TypedDict, total=False):
    """Output of a pipeline graph.

    Attributes:
        output: the last stage's output (``None`` if a stage failed).
        status: ``"ok"``, or ``"error"`` when a stage failed (later stages did not run).
        error: the record of the call that failed the pipeline, if one did.
        results: every call's record (stage order, then branch order), with ``stage`` and
            ``branch`` keys.
        report: ``DispatchReport.to_dict()`` of the run.
    """

    output: Any
    status: str
    error: Record | None
    results: list[Record]
    report: dict[str, Any]


class PipelineState(PipelineInput, PipelineOutput, total=False):
    """State of a pipeline graph (internal keys included)."""

    run_key: str
    started_at: float
    current: Any
    failed: bool
    finished: Annotated[list[Record], merge_records]


@dataclass(frozen=True, slots=True)
class _Slot:
    index: int
    stage: int
    branch: int | None
    agent: SubAgent
    node: str


class _PipelineGraph:
    def __init__(self, stages: Sequence[Any], *, dispatcher: Dispatcher, name: str) -> None:
        if isinstance(stages, str | bytes) or not isinstance(stages, Sequence) or not stages:
            raise ConfigurationError("stages must be a non-empty list of agents or parallel(...)")
        self.dispatcher = dispatcher
        self.name = name
        # Per stage: its slots and, for a branch point, its combine function.
        self.stages: list[tuple[list[_Slot], Combine | None, bool]] = []
        index = 0
        for i, stage in enumerate(stages):
            if isinstance(stage, list | tuple):
                stage = Parallel(agents=tuple(stage))
            branches = isinstance(stage, Parallel)
            members = stage.agents if isinstance(stage, Parallel) else (stage,)
            if not members:
                raise ConfigurationError(f"stage {i} has no agents")
            slots = []
            for j, member in enumerate(members):
                agent = dispatcher.resolve(member)
                label = f"stage{i}_{j}_{agent.name}" if branches else f"stage{i}_{agent.name}"
                slots.append(_Slot(index, i, j if branches else None, agent, node_name(label)))
                index += 1
            combine = stage.combine if isinstance(stage, Parallel) else None
            if branches and combine is None:
                names = [s.agent.name for s in slots]
                if len(set(names)) != len(names):
                    raise ConfigurationError(
                        f"stage {i} has two branches named alike ({names}): name them "
                        "distinctly or give combine="
                    )
            self.stages.append((slots, combine, branches))
        self.total = index

    def build(self) -> StateGraph[PipelineState, None, PipelineInput, PipelineOutput]:
        graph = StateGraph(PipelineState, input_schema=PipelineInput, output_schema=PipelineOutput)
        graph.add_node("prepare", self.prepare)
        graph.add_node("finish", self.finish)
        graph.add_edge(START, "prepare")
        previous = "prepare"
        for i, (slots, combine, branches) in enumerate(self.stages):
            for slot in slots:
                graph.add_node(slot.node, self._call_node(slot, branches))
            entry = [s.node for s in slots]
            exit_node = entry[0]
            if branches:
                exit_node = node_name(f"stage{i}_join")
                graph.add_node(exit_node, self._join_node(slots, combine))
                graph.add_edge(entry, exit_node)
            if previous == "prepare":
                for node in entry:
                    graph.add_edge("prepare", node)
            else:
                graph.add_conditional_edges(previous, _go_on(entry), [*entry, "finish"])
            previous = exit_node
        graph.add_edge(previous, "finish")
        graph.add_edge("finish", END)
        return graph

    async def _run(self, state: PipelineState) -> RunController:
        done = list(latest_records(state.get("finished") or ()).values())
        return await ensure_run(
            state["run_key"],
            name=self.name,
            dispatcher=self.dispatcher,
            total=self.total,
            recovered=done,
        )

    async def prepare(self, state: PipelineState) -> dict[str, Any]:
        key = uuid.uuid4().hex
        await ensure_run(
            key, name=self.name, dispatcher=self.dispatcher, total=self.total, recovered=()
        )
        return {
            "run_key": key,
            "started_at": time.time(),
            "current": state.get("input"),
            "failed": False,
            "finished": {"reset": True},
            "output": None,
            "status": "ok",
            "error": None,
        }

    def _call_node(self, slot: _Slot, branches: bool) -> Any:
        async def call_stage(state: PipelineState, config: RunnableConfig) -> dict[str, Any]:
            run = await self._run(state)
            prompt = prompt_for(slot.agent, state.get("current"))
            task = Task(index=slot.index, agent=slot.agent, prompt=prompt)
            async with call_node(state["run_key"]):
                result = await run_call(run, task, config=config)
            record = result_to_record(result, stage=slot.stage, branch=slot.branch)
            update: dict[str, Any] = {"finished": [record]}
            if not branches:
                if result.ok:
                    update["current"] = result.output
                else:
                    update.update(failed=True, error=record)
            return update

        return call_stage

    def _join_node(self, slots: list[_Slot], combine: Combine | None) -> Any:
        async def join(state: PipelineState) -> dict[str, Any]:
            latest = latest_records(state.get("finished") or ())
            records = [latest[s.index] for s in slots]
            results = [result_from_record(r) for r in records]
            if not any(r.ok for r in results):
                return {"failed": True, "error": records[0]}
            if combine is None:
                return {"current": {r.agent: r.output for r in results if r.ok}}
            async with call_node(state["run_key"]):
                return {"current": combine(results)}

        return join

    async def finish(self, state: PipelineState) -> dict[str, Any]:
        run = await self._run(state)
        records = sorted(latest_records(state.get("finished") or ()).values(), key=_index)
        results = [result_from_record(r) for r in records]
        report = run.report(results, wall_time_s=time.time() - state.get("started_at", time.time()))
        await close_run(state["run_key"])
        failed = bool(state.get("failed"))
        return {
            "output": None if failed else state.get("current"),
            "status": "error" if failed else "ok",
            "results": records,
            "report": report.to_dict(),
        }


def _index(record: Mapping[str, Any]) -> int:
    return int(record["index"])


def _go_on(entry: list[str]) -> Callable[[PipelineState], list[str] | str]:
    def route(state: PipelineState) -> list[str] | str:
        return "finish" if state.get("failed") else entry

    return route


def create_pipeline_graph(
    stages: Sequence[AgentLike | Parallel | Sequence[AgentLike]],
    *,
    limits: DispatchResourceLimits | None = None,
    agents: Mapping[str, AgentLike] | None = None,
    name: str = "pipeline",
    guards: Guards | None = None,
    **options: Unpack[GuardOptions],
) -> StateGraph[PipelineState, None, PipelineInput, PipelineOutput]:
    """A graph of sequential stages, with parallel branches where a stage is a list.

    Each stage gets the previous stage's output (a message is passed on as its text; a
    chat model gets any other non-text value as JSON text); a branch point's ``combine``
    turns its branches' results into the value passed on. A failed stage ends the
    pipeline with ``status="error"`` and the failing call's record; a failed branch does
    not cancel its siblings. Every stage is a node, so a resumed run calls again only the
    stages and branches that had not finished. Input ``{"input": ...}``; output
    ``output``, ``status``, ``error``, ``results``, ``report`` (see ``PipelineOutput``).

    Args:
        stages: agents (a stage each) and branch points (``parallel(a, b, combine=f)`` or
            a list of agents). A Runnable such as ``prompt | model`` makes a stage's prompt.
        limits / agents / name / guards / **options: as for ``create_fan_out_graph``.

    Raises:
        ConfigurationError: a bad argument (nothing is built).

    Example:
        >>> graph = create_pipeline_graph(
        ...     [validator, parallel(geo, company, news, combine=merge), writer]
        ... ).compile()
        >>> (await graph.ainvoke({"input": record}))["output"]
    """
    check_limits(limits, graph="pipeline")
    dispatcher = make_dispatcher(
        limits=limits, agents=agents, guards=guards, options=options, name=name
    )
    return _PipelineGraph(stages, dispatcher=dispatcher, name=name).build()
