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
import random
import warnings
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, overload

from langchain_core.runnables import RunnableConfig

from .agents import AgentLike, SubAgent
from .aggregate import stop_condition_of
from .breaker import BreakerRegistry, default_breakers
from .cache import CacheMode, IdempotencyCache
from .call import CallPipeline, Guards, Task
from .cost import Price
from .errors import (
    CallCancelled,
    ConfigurationError,
    DepthLimitExceeded,
    DispatchFailed,
    FanoutError,
    InvalidInputError,
    SyncInAsyncError,
)
from .hedging import HedgePolicy
from .ledger import CostLedger
from .limits import DispatchResourceLimits, SharedRun, Slots, current_scope
from .prompts import PromptTemplate, validate_arguments
from .ratelimit import RateLimiter
from .recovery import ErrorRecoveryPolicy, ErrorStrategy
from .report import DispatchReport, ReportBuilder
from .results import Status, SubAgentResult
from .security import InjectionPolicy, ScreeningPolicy
from .stopping import DispatchProgress, StopCondition

__all__ = [
    "DispatchMode",
    "DispatchResult",
    "Dispatcher",
    "NestedLimitsWarning",
    "dispatch_agents",
    "dispatch_agents_sync",
]

T = TypeVar("T")
# Where finished results go: a plain callback (run) or a coroutine with backpressure (stream).
Emit = Callable[[SubAgentResult], Awaitable[None] | None]


DEFAULT_SCREENING = ScreeningPolicy(injection=InjectionPolicy.FLAG, redact_outputs=False)
"""Flag prompt-injection markers in arguments; no redaction (pass ``ScreeningPolicy()``)."""

_DEFAULT_CACHE: IdempotencyCache | None = None


def default_cache() -> IdempotencyCache:
    """The process-wide in-memory idempotency cache used by ``cache=True`` (TTL one hour)."""
    global _DEFAULT_CACHE
    if _DEFAULT_CACHE is None:
        _DEFAULT_CACHE = IdempotencyCache()
    return _DEFAULT_CACHE


class DispatchMode(StrEnum):
    """What a failed input means for the dispatch."""

    PARTIAL = "partial"
    """Default: failures are results like any other."""
    ALL_OR_NOTHING = "all_or_nothing"
    """The first failure cancels the rest and raises ``DispatchFailed`` with every result."""


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


@dataclass(slots=True)
class _State:
    """The live state of one ``_execute``."""

    progress: DispatchProgress
    window: Slots | None
    in_flight: dict[int, tuple[asyncio.Task[None], Task]] = field(default_factory=dict)
    stop_reason: str | None = None
    cancelled: set[int] = field(default_factory=set)
    started_at: float = 0.0


class Dispatcher:
    """The engine. Configure once, run many dispatches; limits and guards are per dispatch
    (or shared with the dispatch this one is nested in).

    Args:
        agent: the default sub-agent (chat model, Runnable, callable or ``SubAgent``).
        limits: resource limits (``DispatchResourceLimits()`` when not given).
        mode: ``partial`` (default) or ``all_or_nothing``.
        stop: a stop condition asked after every finished input.
        aggregate: a callable applied to the results (``majority_vote()``...); if it has a
            ``stop_condition()`` the dispatch may stop as soon as the outcome is decided.
        config: a ``RunnableConfig`` passed to every sub-agent (callbacks, tags, metadata).
        policy: retries, fallbacks and breakers (``ErrorRecoveryPolicy()``: two retries of
            transient errors, a breaker per agent).
        agents: a registry ``name -> agent`` for fallbacks and tasks that name their agent.
        cache: ``True`` for the process-wide in-memory idempotency cache, or an
            ``IdempotencyCache`` (e.g. over ``SqliteCache``); off by default.
        screening: argument screening and output redaction (default: flag injection
            markers, no redaction).
        prices: model id -> ``Price`` for models the price table does not know.
        ledger / rate_limiter: a budget or a limiter to share with other dispatches.
        run: a ``SharedRun`` to share budget, agent count and concurrency with other
            dispatches (e.g. every call of a tool in one agent run); nested dispatches
            share their parent's without being told.
        hedge: start a duplicate of slow calls (``HedgePolicy``).
        breakers / sleep / rng: injection points (breaker registry, backoff sleep, jitter).
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
        policy: ErrorRecoveryPolicy | None = None,
        cache: IdempotencyCache | bool | None = None,
        cache_mode: CacheMode | str = CacheMode.USE,
        screening: ScreeningPolicy | None = DEFAULT_SCREENING,
        prices: Mapping[str, Price] | None = None,
        ledger: CostLedger | None = None,
        rate_limiter: RateLimiter | None = None,
        breakers: BreakerRegistry | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
        hedge: HedgePolicy | None = None,
        run: SharedRun | None = None,
    ) -> None:
        self.agent = None if agent is None else SubAgent.of(agent)
        self.agents = {name: SubAgent.of(a, name=name) for name, a in (agents or {}).items()}
        self.limits = limits if limits is not None else DispatchResourceLimits()
        if not isinstance(self.limits, DispatchResourceLimits):
            raise ConfigurationError(
                f"limits must be a DispatchResourceLimits, got {type(self.limits).__name__}"
            )
        try:
            self.mode = DispatchMode(mode)
        except ValueError:
            choices = [m.value for m in DispatchMode]
            raise ConfigurationError(f"mode must be one of {choices}, got {mode!r}") from None
        self.aggregate = aggregate
        conditions = [c for c in (stop, stop_condition_of(aggregate)) if c is not None]
        self.stop: StopCondition | None = None
        for c in conditions:
            self.stop = c if self.stop is None else self.stop | c
        self.config = config
        policy = policy if policy is not None else ErrorRecoveryPolicy()
        if policy.fallback_tools and policy.strategy is not ErrorStrategy.FALLBACK:
            raise ConfigurationError(
                "fallback_tools are only tried with strategy=ErrorStrategy.FALLBACK, "
                f"got strategy={policy.strategy.value}"
            )
        if cache is True:
            cache = default_cache()
        self.ledger = ledger
        self.rate_limiter = rate_limiter
        self.run_state = run
        self.guards = Guards(
            policy=policy,
            resolve=self.resolve,
            breakers=breakers if breakers is not None else default_breakers,
            cache=cache or None,
            cache_mode=_cache_mode(cache_mode),
            screening=screening,
            prices=prices,
            sleep=sleep if sleep is not None else asyncio.sleep,
            rng=rng,
            hedge=hedge,
        )
        for fallback in policy.fallback_tools:
            self.resolve(fallback)  # unknown names fail here, not at the first failure

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
        if samples < 1:
            raise ConfigurationError(f"samples must be >= 1, got {samples}")
        args = list(arguments)
        parsed = None if template is None else PromptTemplate.parse(template)
        if parsed is not None:
            problems = validate_arguments(parsed, args)
            if problems:
                raise InvalidInputError(problems=problems)
        return list(_expand(args, sub, parsed, samples, validated=True))

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

        _, report = await self._execute(iter(tasks), len(tasks), keep, builder)
        results = tuple(r for r in slots if r is not None)
        if len(results) != len(tasks):  # pragma: no cover - an engine bug, never expected
            raise RuntimeError("dispatch lost results: every input must end as one result")
        return self._finish(results, report)

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
        room = Slots(2 * window)
        builder = ReportBuilder()
        reports: list[DispatchReport] = []

        async def put(result: SubAgentResult) -> None:
            await room.acquire()
            builder.add(result)
            queue.put_nowait(result)

        async def produce() -> None:
            try:
                reports.append((await self._execute(iter(tasks), total, put, builder))[1])
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
        report = reports[0]
        if on_report is not None:
            on_report(report)
        self._check_outcome(report, ())

    def _check_outcome(self, report: DispatchReport, results: tuple[SubAgentResult, ...]) -> None:
        """Raise ``DispatchFailed`` when the mode or ``min_success_count`` says so."""
        if self.mode is DispatchMode.ALL_OR_NOTHING and report.succeeded != report.inputs:
            raise DispatchFailed(reason=report.stop_reason or "an input failed", results=results)
        need = self.limits.min_success_count
        if need is not None and report.succeeded < need:
            raise DispatchFailed(
                reason=f"{report.succeeded} successes < min_success_count={need}", results=results
            )

    def _finish(
        self, results: tuple[SubAgentResult, ...], report: DispatchReport
    ) -> DispatchResult:
        self._check_outcome(report, results)
        aggregate = None
        if self.aggregate is not None:
            try:
                aggregate = self.aggregate(results)
            except FanoutError as exc:  # e.g. VoteTie with tie_break="raise": keep the results
                raise DispatchFailed(reason=f"aggregate failed: {exc}", results=results) from exc
        return DispatchResult(results, report, aggregate)

    async def _execute(
        self, tasks: Iterator[Task], total: int | None, emit: Emit, builder: ReportBuilder
    ) -> tuple[_State, DispatchReport]:
        loop = asyncio.get_running_loop()
        scope = current_scope()
        limits = self.limits
        lease = None if scope is None else scope.lease
        if scope is None:
            shared = self.run_state or SharedRun.create(
                limits, ledger=self.ledger, limiter=self.rate_limiter
            )
            depth = 1
        elif scope.loop is not None and scope.loop is not loop:
            # Nested from another thread's event loop (a sync twin inside a sub-agent): the
            # budget and agent count are shared; slots and rate buckets belong to a loop.
            shared = scope.run.on_another_loop()
            depth = scope.depth + 1
            lease = None  # the parent's slot belongs to the other loop: never touch it here
        else:
            shared = scope.run
            depth = scope.depth + 1
        if scope is not None and limits is not shared.limits:
            _warn_nested_limits(limits)
        state = _State(
            progress=DispatchProgress(total=total, finished=[]),
            window=Slots(limits.max_concurrent) if limits.max_concurrent else None,
            started_at=loop.time(),
        )
        max_depth = shared.limits.max_dispatch_depth
        if max_depth is not None and depth > max_depth:
            refusal = DepthLimitExceeded(depth=depth, limit=max_depth)
            for task in tasks:
                refused = SubAgentResult.from_error(
                    index=task.index, agent=task.agent.name, error=refusal, sample=task.sample
                )
                pending = emit(refused)
                if pending is not None:
                    await pending
            return state, builder.build(wall_time_s=0.0, stop_reason=str(refusal))

        own_timeout = limits.max_agent_duration_s
        if own_timeout is None:
            own_timeout = shared.limits.max_agent_duration_s
        pipeline = CallPipeline(
            run=shared,
            depth=depth,
            config=self.config,
            guards=self.guards,
            timeout_s=own_timeout
            if own_timeout is not None
            else shared.limits.max_agent_duration_s,
        )
        timer = None
        if limits.max_total_duration_s is not None:
            timer = loop.call_later(
                limits.max_total_duration_s,
                self._stop,
                state,
                f"deadline of {limits.max_total_duration_s:g} s passed",
                True,
            )
        try:
            if lease is not None:
                async with lease.lend():
                    await self._feed(tasks, state, pipeline, emit)
            else:
                await self._feed(tasks, state, pipeline, emit)
        finally:
            if timer is not None:
                timer.cancel()
        ledger = shared.ledger
        report = builder.build(
            wall_time_s=loop.time() - state.started_at,
            stop_reason=state.stop_reason,
            budget_usd=ledger.limit_usd,
            total_spent_usd=ledger.spent_usd,
            refused_usd=ledger.refused_usd,
            overshoot_usd=ledger.overshoot_usd,
        )
        return state, report

    async def _feed(
        self, tasks: Iterator[Task], state: _State, pipeline: CallPipeline, emit: Emit
    ) -> None:
        window = state.window
        async with asyncio.TaskGroup() as tg:
            for task in tasks:
                if state.stop_reason is None and window is not None:
                    await window.acquire()
                    if state.stop_reason is not None:
                        window.release()
                if state.stop_reason is not None:
                    await self._record(state, _never_started(task, state.stop_reason), emit)
                    continue
                state.progress.started += 1
                handle = tg.create_task(self._one(task, state, pipeline, emit))
                state.in_flight[task.index] = (handle, task)
                if window is not None:
                    # A done callback runs even for a task cancelled before its first step.
                    handle.add_done_callback(lambda _: window.release())
        # A task cancelled by a stop before it ever ran never reached its own handler.
        for handle, task in list(state.in_flight.values()):
            if handle.cancelled():
                reason = state.stop_reason or "stopped"
                await self._record(state, _never_started(task, reason), emit)
        state.in_flight.clear()

    async def _one(self, task: Task, state: _State, pipeline: CallPipeline, emit: Emit) -> None:
        try:
            try:
                result = await pipeline(task)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if task.index not in state.cancelled or current is None or current.uncancel() > 0:
                    raise
                result = SubAgentResult.from_error(
                    index=task.index,
                    agent=task.agent.name,
                    error=CallCancelled(reason=state.stop_reason or "stopped", started=True),
                    sample=task.sample,
                )
            # Out of the in-flight set before anything else: a stop must not cancel a result.
            state.in_flight.pop(task.index, None)
            await self._record(state, result, emit)
        finally:
            state.in_flight.pop(task.index, None)

    async def _record(self, state: _State, result: SubAgentResult, emit: Emit) -> None:
        progress = state.progress
        if result.status is Status.OK:
            progress.succeeded += 1
        else:
            progress.failed += 1
        if self.stop is not None:
            progress.finished.append(result)
        pending = emit(result)
        if pending is not None:
            await pending
        if state.stop_reason is None and result.status is not Status.CANCELLED:
            self._check(state, result)

    def _check(self, state: _State, result: SubAgentResult) -> None:
        progress = state.progress
        limits = self.limits
        if self.mode is DispatchMode.ALL_OR_NOTHING and not result.ok:
            self._stop(state, f"input {result.index} failed ({result.error_kind})", True)
            return
        rate = limits.max_failure_rate
        if rate is not None and progress.done >= limits.failure_rate_min_sample:
            observed = progress.failed / progress.done
            if observed > rate:
                reason = f"failure rate {observed:.0%} > max_failure_rate={rate:.0%}"
                self._stop(state, reason, limits.cancel_in_flight_on_failure_rate)
                return
        need = limits.min_success_count
        remaining = progress.remaining
        if need is not None and remaining is not None and progress.succeeded + remaining < need:
            self._stop(state, f"min_success_count={need} can no longer be reached", True)
            return
        if self.stop is not None:
            verdict = self.stop(progress)
            if verdict is not None:
                self._stop(state, verdict, True)

    @staticmethod
    def _stop(state: _State, reason: str, cancel_in_flight: bool) -> None:
        if state.stop_reason is not None:
            return
        state.stop_reason = reason
        if cancel_in_flight:
            for index, (handle, _) in list(state.in_flight.items()):
                state.cancelled.add(index)
                handle.cancel()


class NestedLimitsWarning(UserWarning):
    """A nested dispatch set a budget or agent cap of its own: the enclosing run's apply."""


def _warn_nested_limits(limits: DispatchResourceLimits) -> None:
    own = [
        name
        for name in ("max_total_cost_usd", "max_total_agents")
        if getattr(limits, name) is not None
    ]
    if own:
        warnings.warn(
            f"a nested dispatch draws from the enclosing run's budget and agent count; its "
            f"own {', '.join(own)} is not applied (its concurrency window, timeouts, "
            "deadline and failure rate are)",
            NestedLimitsWarning,
            stacklevel=4,
        )


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
    for args in arguments:
        prompt: Any = args
        invalid = None
        if template is not None:
            problems = () if validated else validate_arguments(template, [args])
            if problems:
                invalid = problems[0][1]
            else:
                prompt = template.render(args)
        for sample in range(samples):
            yield Task(
                index=index,
                agent=agent,
                prompt=None if invalid else prompt,
                arguments=args if template is not None and not invalid else None,
                template=template,
                sample=sample,
                invalid=invalid,
            )
            index += 1


def _cache_mode(mode: CacheMode | str) -> CacheMode:
    try:
        return CacheMode(mode)
    except ValueError:
        choices = [m.value for m in CacheMode]
        raise ConfigurationError(f"cache_mode must be one of {choices}, got {mode!r}") from None


def _never_started(task: Task, reason: str) -> SubAgentResult:
    return SubAgentResult.from_error(
        index=task.index,
        agent=task.agent.name,
        error=CallCancelled(reason=reason, started=False),
        sample=task.sample,
    )


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
    limits: DispatchResourceLimits | None = None,
    mode: DispatchMode | str = DispatchMode.PARTIAL,
    stop: StopCondition | None = None,
    aggregate: Callable[[Sequence[SubAgentResult]], Any] | None = None,
    samples: int = 1,
    config: RunnableConfig | None = None,
    **guards: Any,
) -> DispatchResult:
    """Call ``agent`` once per argument set (``samples`` times each), concurrently, under limits.

    Args:
        template: a prompt with ``{name}`` fields, or ``None`` to pass each argument as is.
        arguments: one mapping of field values per input.
        agent: a chat model, Runnable, callable or ``SubAgent``.
        limits: ``DispatchResourceLimits``; shared with the enclosing dispatch when nested.
        mode: ``"partial"`` (default) or ``"all_or_nothing"``.
        stop: a stop condition such as ``stop_after_successes(3)``.
        aggregate: applied to the results; a ``majority_vote()`` may also stop early.
        samples: calls per argument set (distinct samples, e.g. voters).
        config: passed to every sub-agent call.
        **guards: the other ``Dispatcher`` options: ``policy``, ``agents`` (registry for
            fallbacks), ``cache``, ``cache_mode``, ``screening``, ``prices``, ``ledger``,
            ``rate_limiter``, ``breakers``, ``sleep``, ``rng``, ``hedge``.

    Returns:
        A ``DispatchResult``: ``.results`` in input order, ``.report``, ``.aggregate``.

    Raises:
        InvalidInputError: names every bad item; nothing was called.
        DispatchFailed: all-or-nothing failure or ``min_success_count`` not met.

    Example:
        >>> result = await dispatch_agents("Summarize: {text}", [{"text": t} for t in docs],
        ...                                agent=model)
    """
    dispatcher = Dispatcher(
        agent,
        limits=limits,
        mode=mode,
        stop=stop,
        aggregate=aggregate,
        config=config,
        **guards,
    )
    return await dispatcher.run(template, arguments, samples=samples)


def dispatch_agents_sync(
    template: str | None, arguments: Iterable[Any], **kwargs: Any
) -> DispatchResult:
    """The sync twin of ``dispatch_agents``, for code with no event loop.

    Raises:
        SyncInAsyncError: called inside a running event loop (use ``await dispatch_agents``).
    """
    return run_sync(
        dispatch_agents(template, arguments, **kwargs), "dispatch_agents_sync", "dispatch_agents"
    )


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
