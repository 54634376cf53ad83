"""The dispatch engine: ``dispatch_agents`` and ``Dispatcher``.

The engine keeps at most ``max_concurrent`` inputs in flight and creates their tasks lazily
(a million inputs cost memory for ``max_concurrent`` tasks), runs each through the one
call pipeline, and ends every input as exactly one ``SubAgentResult``: in input order from
``run``, or as they complete from ``stream``. Stop conditions, the failure-rate gate, the
deadline and all-or-nothing mode stop it early: nothing new starts, calls in flight are
cancelled, and every remaining input ends as ``cancelled`` with the reason.

Example:
    >>> result = await dispatch_agents(
    ...     "Classify this receipt: {text}", [{"text": t} for t in receipts],
    ...     agent=model, limits=DispatchResourceLimits(max_concurrent=10),
    ... )
    >>> result.report.success_rate
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, Unpack, overload

from langchain_core.runnables import RunnableConfig

from langgraph_fanout.aggregate.aggregators import apply_aggregate, stop_condition_of
from langgraph_fanout.aggregate.voting import majority_vote
from langgraph_fanout.core.checks import (
    check_mapping,
    check_samples,
    check_type,
    shown,
)
from langgraph_fanout.core.prompts import PromptTemplate, check_arguments, validate_arguments
from langgraph_fanout.core.report import DispatchReport, ReportBuilder
from langgraph_fanout.core.results import SubAgentResult
from langgraph_fanout.core.stopping import StopCondition
from langgraph_fanout.engine.agents import AgentLike, SubAgent
from langgraph_fanout.engine.call import Task
from langgraph_fanout.engine.options import GuardOptions, Guards
from langgraph_fanout.engine.run import RunController
from langgraph_fanout.engine.spec import DispatchMode, RunSpec
from langgraph_fanout.engine.waves import VoteWaves
from langgraph_fanout.errors import (
    ConfigurationError,
    DispatchFailed,
    FanoutError,
    InvalidInputError,
    SyncInAsyncError,
)
from langgraph_fanout.guards.limits import DispatchResourceLimits, LoopSlots, SharedRun

T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class DispatchResult(Sequence[SubAgentResult]):
    """Every input's result in input order, the report, and the aggregate if one was asked.

    It also behaves as the sequence of results: ``len(result)``, ``result[0]``, iteration.
    """

    results: tuple[SubAgentResult, ...]
    report: DispatchReport
    aggregate: Any = None

    @overload
    def __getitem__(self, i: int) -> SubAgentResult: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[SubAgentResult]: ...
    def __getitem__(self, i: int | slice) -> SubAgentResult | Sequence[SubAgentResult]:
        return self.results[i]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[SubAgentResult]:
        return iter(self.results)

    @property
    def outputs(self) -> list[Any]:
        """Outputs of the successful inputs, in input order."""
        return [r.output for r in self.results if r.ok]

    @property
    def failures(self) -> list[SubAgentResult]:
        return [r for r in self.results if not r.ok]


class Dispatcher:
    """The engine. Configure once, run many dispatches; limits and guards are per dispatch
    (or shared with the dispatch this one is nested in).

    Args:
        agent: the default sub-agent (chat model, Runnable, callable or ``SubAgent``).
        agents: a registry ``name -> agent`` for fallbacks and tasks that name their agent.
        limits: resource limits (``DispatchResourceLimits()`` when not given).
        mode: ``partial`` (default) or ``all_or_nothing``.
        stop: a stop condition asked after every finished input.
        aggregate: a callable applied to the results (``majority_vote()``...); if it has a
            ``stop_condition()`` the dispatch may stop as soon as the outcome is decided.
        config: a ``RunnableConfig`` passed to every sub-agent (callbacks, tags, metadata).
        run: a ``SharedRun`` to share budget, agent count and concurrency with other
            dispatches (e.g. every call of a tool in one agent run); nested dispatches
            share their parent's without being told.
        guards / **options: the guards (``Guards``, or its fields as keywords: ``policy``,
            ``cache``, ``cache_mode``, ``screening``, ``prices``, ``ledger``,
            ``rate_limiter``, ``breakers``, ``hedge``, ``sleep``, ``rng``).

    Raises:
        ConfigurationError: a bad option, an unknown fallback, or ``ledger=`` and
            ``limits=`` with different budgets.
    """

    def __init__(
        self,
        agent: AgentLike | None = None,
        *,
        agents: Mapping[str, AgentLike] | None = None,
        limits: DispatchResourceLimits | None = None,
        mode: DispatchMode | str = DispatchMode.PARTIAL,
        stop: StopCondition | None = None,
        aggregate: Callable[[Sequence[SubAgentResult]], Any] | None = None,
        config: RunnableConfig | None = None,
        run: SharedRun | None = None,
        guards: Guards | None = None,
        **options: Unpack[GuardOptions],
    ) -> None:
        check_mapping("Dispatcher agents", agents, optional=True)
        check_type("Dispatcher run", run, SharedRun, optional=True)
        check_type("Dispatcher config", config, Mapping, optional=True)
        if aggregate is not None and not callable(aggregate):
            raise ConfigurationError(
                "aggregate must be a function of the results (majority_vote(), collect_all(), "
                f"a lambda...), got {shown(aggregate)}"
            )
        self.agent = None if agent is None else SubAgent.of(agent)
        self.agents = {name: SubAgent.of(a, name=name) for name, a in (agents or {}).items()}
        limits = limits if limits is not None else DispatchResourceLimits()
        if not isinstance(limits, DispatchResourceLimits):
            raise ConfigurationError(
                f"limits must be a DispatchResourceLimits, got {type(limits).__name__}"
            )
        try:
            mode = DispatchMode(mode)
        except ValueError:
            choices = [m.value for m in DispatchMode]
            raise ConfigurationError(f"mode must be one of {choices}, got {mode!r}") from None
        if stop is not None and not isinstance(stop, StopCondition):
            raise ConfigurationError(f"stop must be a StopCondition, got {stop!r}")
        self.aggregate = aggregate
        # A per-input vote settles each question in waves (``_source``), never the dispatch.
        per_input = isinstance(aggregate, majority_vote) and aggregate.group_by is not None
        offered = None if per_input else stop_condition_of(aggregate)
        conditions = [c for c in (stop, offered) if c is not None]
        combined: StopCondition | None = None
        for c in conditions:
            combined = c if combined is None else combined | c
        self.guards = Guards.of(guards, options)
        self.spec = RunSpec(
            limits=limits,
            mode=mode,
            stop=combined,
            guards=self.guards.pipeline(self.resolve),
            config=config,
            ledger=self.guards.ledger,
            rate_limiter=self.guards.rate_limiter,
            shared=run,
        )
        for fallback in self.spec.guards.policy.fallback_tools:
            self.resolve(fallback)  # unknown names fail here, not at the first failure

    @property
    def limits(self) -> DispatchResourceLimits:
        """The limits (a capped ``ledger=`` sets ``max_total_cost_usd``)."""
        return self.spec.limits

    @property
    def mode(self) -> DispatchMode:
        return self.spec.mode

    def resolve(self, ref: Any) -> SubAgent:
        """A fallback or task agent by name (from ``agents=``) or as an object."""
        if isinstance(ref, str):
            try:
                return self.agents[ref]
            except KeyError:
                known = sorted(self.agents) or "none"
                raise ConfigurationError(
                    f"unknown agent {ref!r}: register it with agents={{...}} (known: {known})"
                ) from None
        return SubAgent.of(ref)

    # -- building tasks ------------------------------------------------------------------

    def tasks_from(
        self,
        template: str | None,
        arguments: Iterable[Any],
        *,
        agent: AgentLike | None = None,
        samples: int = 1,
    ) -> list[Task]:
        """Validate every argument set against the template and build the tasks.

        Raises:
            InvalidInputError: names every bad item; nothing is called.
        """
        sub = self._agent(agent)
        check_samples(samples)
        check_arguments(arguments)
        args = list(arguments)
        parsed = None if template is None else PromptTemplate.parse(template)
        if parsed is not None:
            problems = validate_arguments(parsed, args)
            if problems:
                raise InvalidInputError(problems=problems)
        tasks = list(_expand(args, sub, parsed, samples, validated=True))
        unrendered = [(t.index // samples, t.invalid) for t in tasks if t.invalid and not t.sample]
        if unrendered:
            raise InvalidInputError(problems=unrendered)
        return tasks

    def _agent(self, agent: AgentLike | None) -> SubAgent:
        if agent is not None:
            return self.resolve(agent)
        if self.agent is None:
            raise ConfigurationError("no agent: pass agent=... to the Dispatcher or the call")
        return self.agent

    # -- running ---------------------------------------------------------------------------

    async def run(
        self,
        template: str | None,
        arguments: Iterable[Any],
        *,
        agent: AgentLike | None = None,
        samples: int = 1,
    ) -> DispatchResult:
        """Render ``template`` with each argument set and call the agent on each.

        With ``template=None`` each argument is passed to the agent as it is.

        Raises:
            InvalidInputError: bad template or argument sets (nothing is called).
            DispatchFailed: all-or-nothing mode had a failure, or fewer than
                ``min_success_count`` inputs succeeded; it carries every result.
        """
        return await self.run_tasks(
            self.tasks_from(template, arguments, agent=agent, samples=samples)
        )

    async def run_tasks(self, tasks: Sequence[Task]) -> DispatchResult:
        """Run prepared (possibly heterogeneous) tasks; results come back in task order."""
        _check_indices(tasks)
        slots: list[SubAgentResult | None] = [None] * len(tasks)
        builder = ReportBuilder()

        def keep(result: SubAgentResult) -> None:
            slots[result.index] = result
            builder.add(result)

        async with RunController(self.spec, total=len(tasks)) as run:
            await run.feed(self._source(run, iter(tasks)), keep)
        report = run.report(builder)
        results = tuple(r for r in slots if r is not None)
        if len(results) != len(tasks):  # pragma: no cover - an engine bug, never expected
            raise RuntimeError("dispatch lost results: every input must end as one result")
        run.check_outcome(report, results)
        return self._aggregated(results, report)

    async def stream(
        self,
        template: str | None,
        arguments: Iterable[Any],
        *,
        agent: AgentLike | None = None,
        samples: int = 1,
        on_report: Callable[[DispatchReport], None] | None = None,
    ) -> AsyncGenerator[SubAgentResult, None]:
        """Yield results as they complete. Arguments may be a lazy iterator (no template
        validation ahead of time then: a bad item ends as its own error result).

        Close it early with ``contextlib.aclosing`` so the calls in flight are cancelled
        at once rather than when the generator is collected. ``on_report`` receives the
        ``DispatchReport`` at the end; all-or-nothing and ``min_success_count`` raise
        ``DispatchFailed`` at the end, as ``run`` does.
        """
        sub = self._agent(agent)
        check_samples(samples)
        check_arguments(arguments)
        parsed = None if template is None else PromptTemplate.parse(template)
        total = len(arguments) if isinstance(arguments, Sequence) else None

        stream = self.stream_tasks(
            _expand(arguments, sub, parsed, samples),
            total=None if total is None else total * samples,
            on_report=on_report,
        )
        async with contextlib.aclosing(stream) as results:  # closing us closes it, at once
            async for result in results:
                yield result

    async def stream_tasks(
        self,
        tasks: Iterable[Task],
        *,
        total: int | None = None,
        on_report: Callable[[DispatchReport], None] | None = None,
    ) -> AsyncGenerator[SubAgentResult, None]:
        """Yield the results of ``tasks`` as they complete.

        Args:
            tasks: the tasks (a lazy iterator is fine).
            total: their number, if known (stop conditions such as votes need it).
            on_report: called with the ``DispatchReport`` once the stream is exhausted.

        Raises:
            DispatchFailed: at the end, as ``run`` would (all-or-nothing or
                ``min_success_count``); the results were already yielded.
        """
        window = self.limits.max_concurrent or 64
        # Unbounded queue with a separate allowance of 2 x window results: the producer
        # waits for room (backpressure) but its end-of-stream mark can never block, even
        # when it is cancelled with the queue full.
        queue: asyncio.Queue[SubAgentResult | None] = asyncio.Queue()
        room = LoopSlots(2 * window)
        builder = ReportBuilder()
        ended: list[tuple[RunController, DispatchReport]] = []

        async def put(result: SubAgentResult) -> None:
            await room.acquire()
            builder.add(result)
            queue.put_nowait(result)

        async def produce() -> None:
            try:
                async with RunController(self.spec, total=total) as run:
                    await run.feed(self._source(run, iter(tasks)), put)
                ended.append((run, run.report(builder)))
            finally:
                queue.put_nowait(None)

        runner = asyncio.create_task(produce())
        try:
            while (item := await queue.get()) is not None:
                room.release()
                yield item
            await runner
        finally:
            if not runner.done():
                runner.cancel()
                await asyncio.wait([runner])
        run, report = ended[0]
        if on_report is not None:
            on_report(report)
        run.check_outcome(report, ())

    def _source(self, run: RunController, tasks: Iterator[Task]) -> Iterator[Task] | VoteWaves:
        """The tasks as the run takes them: in waves per question under a per-input vote."""
        vote = self.aggregate
        if not isinstance(vote, majority_vote) or vote.group_by is None or vote.early is None:
            return tasks
        ledger = run.shared.ledger
        affordable = None
        if ledger.limit_usd is not None:

            def affordable(wave: Sequence[Task]) -> bool:
                worst = sum(run.pipeline.worst_case_usd(t) for t in wave)
                return worst <= ledger.remaining_usd

        return VoteWaves(vote, tasks, affordable=affordable)

    def _aggregated(
        self, results: tuple[SubAgentResult, ...], report: DispatchReport
    ) -> DispatchResult:
        aggregate = None
        if self.aggregate is not None:
            try:
                aggregate = apply_aggregate(self.aggregate, results)
            except FanoutError as exc:  # e.g. VoteTie with tie_break="raise": keep the results
                raise DispatchFailed(reason=f"aggregate failed: {exc}", results=results) from exc
        return DispatchResult(results, report, aggregate)


def _expand(
    arguments: Iterable[Any],
    agent: SubAgent,
    template: PromptTemplate | None,
    samples: int,
    *,
    validated: bool = False,
) -> Iterator[Task]:
    """The tasks of a dispatch, lazily: ``samples`` per argument set, indexed in order.

    An argument set the template cannot render becomes a task marked ``invalid`` (it ends
    as its own ``InvalidItem`` result); ``run`` validates everything before calling this.
    """
    index = 0
    for question, args in enumerate(arguments):
        prompt: Any = args
        invalid = None
        if template is not None:
            problems = () if validated else validate_arguments(template, [args])
            if problems:
                invalid = problems[0][1]
            else:
                try:
                    prompt = template.render(args)
                except Exception as exc:  # a value whose str() raises, or is too large
                    invalid = f"cannot be rendered: str() of a value raised {exc!r}"
        for sample in range(samples):
            yield Task(
                index=index,
                agent=agent,
                prompt=None if invalid else prompt,
                arguments=args if template is not None and not invalid else None,
                template=template,
                sample=sample,
                invalid=invalid,
                question=question if samples > 1 else None,
            )
            index += 1


def _check_indices(tasks: Sequence[Task]) -> None:
    for position, task in enumerate(tasks):
        if task.index != position:
            raise ConfigurationError(
                f"task at position {position} has index {task.index}: tasks of a dispatch "
                "are indexed 0..n-1 in order"
            )


async def dispatch_agents(
    template: str | None,
    arguments: Iterable[Any],
    *,
    agent: AgentLike,
    agents: Mapping[str, AgentLike] | None = None,
    limits: DispatchResourceLimits | None = None,
    mode: DispatchMode | str = DispatchMode.PARTIAL,
    stop: StopCondition | None = None,
    aggregate: Callable[[Sequence[SubAgentResult]], Any] | None = None,
    samples: int = 1,
    config: RunnableConfig | None = None,
    guards: Guards | None = None,
    **options: Unpack[GuardOptions],
) -> DispatchResult:
    """Call ``agent`` once per argument set (``samples`` times each), concurrently, under limits.

    Args:
        template: a prompt with ``{name}`` fields, or ``None`` to pass each argument as is.
        arguments: one mapping of field values per input.
        agent: a chat model, Runnable, callable or ``SubAgent``.
        agents: a registry ``name -> agent`` for fallbacks.
        limits: ``DispatchResourceLimits``; shared with the enclosing dispatch when nested.
        mode: ``"partial"`` (default) or ``"all_or_nothing"``.
        stop: a stop condition such as ``stop_after_successes(3)``.
        aggregate: applied to the results; a ``majority_vote()`` may also stop early.
        samples: calls per argument set (distinct samples, e.g. voters).
        config: passed to every sub-agent call.
        guards / **options: the guards, as a ``Guards`` or as its fields (``policy``,
            ``cache``, ``cache_mode``, ``screening``, ``prices``, ``ledger``,
            ``rate_limiter``, ``breakers``, ``hedge``, ``sleep``, ``rng``).

    Returns:
        A ``DispatchResult``: ``.results`` in input order, ``.report``, ``.aggregate``.

    Raises:
        ConfigurationError: a bad option (nothing was called).
        InvalidInputError: names every bad item; nothing was called.
        DispatchFailed: all-or-nothing failure or ``min_success_count`` not met.

    Example:
        >>> result = await dispatch_agents("Summarize: {text}", [{"text": t} for t in docs],
        ...                                agent=model)
    """
    dispatcher = Dispatcher(
        agent,
        agents=agents,
        limits=limits,
        mode=mode,
        stop=stop,
        aggregate=aggregate,
        config=config,
        guards=guards,
        **options,
    )
    return await dispatcher.run(template, arguments, samples=samples)


def run_sync(coro: Awaitable[T], sync_name: str, async_name: str) -> T:
    """Run ``coro`` to completion from sync code; refuse inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_as_coroutine(coro))
    if asyncio.iscoroutine(coro):
        coro.close()
    raise SyncInAsyncError(sync_name=sync_name, async_name=async_name)


async def _as_coroutine(aw: Awaitable[T]) -> T:
    return await aw


def sync_twin(fn: Callable[P, Awaitable[T]], *, name: str) -> Callable[P, T]:
    """The sync twin of an async function: the same signature (for mypy and the IDE too),
    run on a fresh event loop; inside a running loop it raises ``SyncInAsyncError``."""

    @functools.wraps(fn)
    def twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(fn(*args, **kwargs), name, fn.__name__)

    twin.__name__ = twin.__qualname__ = name
    twin.__doc__ = (
        f"The sync twin of ``{fn.__name__}``, for code with no event loop.\n\n"
        f"Raises:\n    SyncInAsyncError: called inside a running event loop (use "
        f"``await {fn.__name__}(...)``)."
    )
    return twin


dispatch_agents_sync = sync_twin(dispatch_agents, name="dispatch_agents_sync")
