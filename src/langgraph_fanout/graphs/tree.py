"""Tree graphs: recursive divide and conquer with parallel subtasks.

The whole tree is solved inside one node: a task is split,
its parts are solved in parallel (``asyncio.TaskGroup``), and their outputs combined;
only leaf solves (and agent splits or combines) are sub-agent calls, each through the
call pipeline, so every call of the tree shares one budget and one concurrency cap (the
enclosing dispatch's when nested) while the recursion itself holds no slot.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict, Unpack

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from langgraph_fanout.core.checks import check_number
from langgraph_fanout.core.results import Status, SubAgentResult
from langgraph_fanout.core.text import as_text
from langgraph_fanout.engine.agents import AgentLike, SubAgent
from langgraph_fanout.engine.call import Task
from langgraph_fanout.engine.dispatch import Dispatcher
from langgraph_fanout.engine.options import GuardOptions, Guards
from langgraph_fanout.engine.run import RunController
from langgraph_fanout.errors import AgentError, ConfigurationError
from langgraph_fanout.graphs.records import Record, result_to_record
from langgraph_fanout.graphs.runs import (
    check_limits,
    close_run,
    ensure_run,
    is_agent,
    make_dispatcher,
    prompt_for,
    run_call,
)
from langgraph_fanout.guards.limits import DispatchResourceLimits


class TreeInput(TypedDict):
    """Input of a tree graph: the root task."""

    task: Any


class TreeOutput(TypedDict, total=False):
    """Output of a tree graph.

    Attributes:
        result: the combined output of the root (``None`` if it failed).
        status: ``"ok"`` or ``"error"``.
        error: the record of the first call that failed the root, if one did.
        report: ``DispatchReport.to_dict()`` of every call of the tree.
        leaves: tasks solved as leaves.
        depth_reached: the deepest level solved (the root is level 0).
    """

    result: Any
    status: str
    error: Record | None
    report: dict[str, Any]
    leaves: int
    depth_reached: int


class TreeState(TreeInput, TreeOutput, total=False):
    """State of a tree graph."""


class _TreeRun:
    """One tree solved inside one node: subtasks recurse in parallel, every call shares
    the run's budget and concurrency slots, and nothing raises for a failed call."""

    def __init__(self, tree: _TreeGraph, run: RunController, config: RunnableConfig) -> None:
        self.tree = tree
        self.run = run
        self.config = config
        self.calls: list[SubAgentResult] = []
        self.started = 0
        self.leaves = 0
        self.depth_reached = 0

    async def call(self, agent: SubAgent, value: Any) -> SubAgentResult:
        task = Task(index=self.started, agent=agent, prompt=prompt_for(agent, value))
        self.started += 1
        result = await run_call(self.run, task, config=self.config)
        self.calls.append(result)
        return result

    async def solve(self, task: Any, depth: int) -> SubAgentResult:
        tree = self.tree
        if depth < tree.max_depth:
            parts = await self.split(task)
            if isinstance(parts, SubAgentResult):
                return parts
            if parts:
                async with asyncio.TaskGroup() as group:
                    handles = [group.create_task(self.solve(p, depth + 1)) for p in parts]
                children = [h.result() for h in handles]
                for child in children:
                    if not child.ok:
                        return child
                return await self.combine(task, [c.output for c in children])
        self.leaves += 1
        self.depth_reached = max(self.depth_reached, depth)
        return await self.call(tree.leaf, task)

    async def split(self, task: Any) -> Sequence[Any] | SubAgentResult:
        split = self.tree.split
        if isinstance(split, SubAgent):
            result = await self.call(split, task)
            if not result.ok:
                return result
            parts = result.output
        else:
            parts = split(task)
        if parts is None:
            return ()
        if isinstance(parts, str | bytes | Mapping) or not isinstance(parts, Sequence):
            name = str(getattr(split, "name", getattr(split, "__name__", "split")))
            return SubAgentResult.from_error(
                index=-1,
                agent=name,
                error=AgentError(
                    agent=name,
                    cause_type="InvalidOutput",
                    detail=f"split must return a list of subtasks, got {type(parts).__name__}",
                ),
            )
        return parts

    async def combine(self, task: Any, outputs: list[Any]) -> SubAgentResult:
        combine = self.tree.combine
        if isinstance(combine, SubAgent):
            if combine.kind == "chat_model":
                answers = "\n".join(f"{i + 1}. {as_text(o)}" for i, o in enumerate(outputs))
                prompt: Any = (
                    f"Combine the answers to the parts of this task into one answer.\n\n"
                    f"Task: {as_text(task)}\n\nAnswers:\n{answers}"
                )
            else:
                prompt = {"task": task, "parts": outputs}
            return await self.call(combine, prompt)
        return SubAgentResult(
            index=-1, agent="combine", status=Status.OK, output=combine(task, outputs)
        )


class _TreeGraph:
    def __init__(
        self,
        solve: AgentLike,
        *,
        split: Callable[[Any], Sequence[Any] | None] | AgentLike,
        combine: Callable[[Any, list[Any]], Any] | AgentLike,
        max_depth: int,
        dispatcher: Dispatcher,
        name: str,
    ) -> None:
        check_number(
            "create_tree_graph max_depth", max_depth, at_least=0, at_most=1000, integer=True
        )
        for what, fn in (("split", split), ("combine", combine)):
            if not (is_agent(fn) or callable(fn)):
                raise ConfigurationError(f"{what} must be a function or an agent, got {fn!r}")
        self.leaf = dispatcher.resolve(solve)
        self.split: Any = dispatcher.resolve(split) if is_agent(split) else split
        self.combine: Any = dispatcher.resolve(combine) if is_agent(combine) else combine
        self.max_depth = max_depth
        self.dispatcher = dispatcher
        self.name = name

    def build(self) -> StateGraph[TreeState, None, TreeInput, TreeOutput]:
        graph = StateGraph(TreeState, input_schema=TreeInput, output_schema=TreeOutput)
        graph.add_node("solve_tree", self.solve_tree)
        graph.add_edge(START, "solve_tree")
        graph.add_edge("solve_tree", END)
        return graph

    async def solve_tree(self, state: TreeState, config: RunnableConfig) -> dict[str, Any]:
        key = uuid.uuid4().hex
        started = time.time()
        run = await ensure_run(
            key, name=self.name, dispatcher=self.dispatcher, total=None, recovered=()
        )
        tree = _TreeRun(self, run, config)
        try:
            outcome = await tree.solve(state.get("task"), 0)
            report = run.report(tree.calls, wall_time_s=time.time() - started)
        except BaseException as exc:
            await close_run(key, failed=exc)
            raise
        await close_run(key)
        return {
            "result": outcome.output if outcome.ok else None,
            "status": "ok" if outcome.ok else "error",
            "error": None if outcome.ok else result_to_record(outcome),
            "report": report.to_dict(),
            "leaves": tree.leaves,
            "depth_reached": tree.depth_reached,
        }


def create_tree_graph(
    solve: AgentLike,
    *,
    split: Callable[[Any], Sequence[Any] | None] | AgentLike,
    combine: Callable[[Any, list[Any]], Any] | AgentLike,
    max_depth: int = 3,
    limits: DispatchResourceLimits | None = None,
    agents: Mapping[str, AgentLike] | None = None,
    name: str = "tree",
    guards: Guards | None = None,
    **options: Unpack[GuardOptions],
) -> StateGraph[TreeState, None, TreeInput, TreeOutput]:
    """A graph that solves a task by divide and conquer: split, solve parts in parallel,
    combine. Budget and concurrency are shared by the whole tree.

    A task at depth ``max_depth`` (the root is 0), or one that ``split`` leaves whole
    (``None`` or ``[]``), is solved as a leaf by ``solve``. A failed part fails its
    parent with the part's typed error; its siblings still finish. Input ``{"task":
    ...}``; output ``result``, ``status``, ``error``, ``report``, ``leaves``,
    ``depth_reached`` (see ``TreeOutput``). The tree runs in one node, so a resumed run
    solves it again.

    Args:
        solve: the leaf agent (a plain callable is called through the pipeline too).
        split: ``split(task) -> subtasks`` (a local function), or an agent returning a list.
        combine: ``combine(task, outputs) -> output`` (a local function), or an agent
            (a chat model gets the answers as text; others get ``{"task", "parts"}``).
        max_depth: the deepest level that is still split below (0 solves the root).
        limits / agents / name / guards / **options: as for ``create_fan_out_graph``.

    Raises:
        ConfigurationError: a bad argument (nothing is built).

    Example:
        >>> graph = create_tree_graph(
        ...     sorted, split=halves_around_median, combine=lambda t, p: p[0] + p[1],
        ...     max_depth=3,
        ... ).compile()
        >>> (await graph.ainvoke({"task": numbers}))["result"]
    """
    check_limits(limits, graph="tree")
    dispatcher = make_dispatcher(
        limits=limits, agents=agents, guards=guards, options=options, name=name
    )
    return _TreeGraph(
        solve,
        split=split,
        combine=combine,
        max_depth=max_depth,
        dispatcher=dispatcher,
        name=name,
    ).build()
