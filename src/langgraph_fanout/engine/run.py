"""The run controller: the live state of one dispatch or one graph run, and the only run loop.

A ``RunController`` is opened where a run starts (``Dispatcher.run``, a graph's first
node) and closed where it ends. Opening resolves the scope once: a top-level run gets a
new ``SharedRun`` (budget, agent count, concurrency slots, rate limiter); a nested one
draws from its parent's (on another event loop, through a view of it) and lends it the
parent call's slot while it runs. The controller owns the run's window, its deadline, its
gates and its cancellation; it builds the call pipeline once and turns every input into
exactly one result.

Two schedulers use it and nothing else:

- the engine calls ``feed``: inputs are taken lazily, at most one window's worth in
  flight, each in a task of one ``TaskGroup``;
- a graph node calls ``call`` for its own input: LangGraph schedules the nodes, the
  controller admits them through the same window and gates.

Gates are stop conditions asked after every finished input, in this order: all-or-nothing
(``stop_on_any_failure``), ``max_failure_rate`` (``stop_on_failure_rate``), an unreachable
``min_success_count`` (``stop_when_unreachable``), then the user's ``stop=`` and a vote's
early decision. A stop starts nothing more; the calls in flight are cancelled (unless the
gate lets them end) and end as ``CallCancelled(started=True)``, and inputs never started
end as ``CallCancelled(started=False)``.

Example:
    >>> async with RunController(spec, total=len(tasks)) as run:
    ...     await run.feed(iter(tasks), results.append)
    >>> report = run.report(builder)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AsyncExitStack
from types import TracebackType

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp

from langgraph_fanout.core.report import DispatchReport, ReportBuilder
from langgraph_fanout.core.results import Status, SubAgentResult
from langgraph_fanout.core.stopping import (
    DispatchProgress,
    StopCondition,
    stop_on_any_failure,
    stop_on_failure_rate,
    stop_when_unreachable,
)
from langgraph_fanout.engine.call import CallPipeline, Task, ended_with
from langgraph_fanout.engine.spec import DispatchMode, RunSpec, warn_nested_limits
from langgraph_fanout.engine.threads import sync_workers
from langgraph_fanout.engine.waves import VoteWaves
from langgraph_fanout.errors import (
    CallCancelled,
    CallError,
    DepthLimitExceeded,
    DispatchFailed,
    FanoutError,
    InvalidItem,
    VoterNotNeeded,
)
from langgraph_fanout.guards.ledger import CostLedger
from langgraph_fanout.guards.limits import (
    LoopSlots,
    SharedRun,
    current_scope,
)

# Where finished results go: a plain callback (run) or a coroutine with backpressure (stream).
Emit = Callable[[SubAgentResult], Awaitable[None] | None]


class RunController:
    """The live state of one run: scope, window, deadline, gates, in-flight calls.

    Args:
        spec: the run's configuration.
        total: planned inputs (``None`` when unknown, as for a lazy stream or a tree).
        name: shown in progress events.

    Attributes:
        shared: the budget, slots and agent count this run draws from.
        depth: the dispatch depth of its calls (1 at top level).
        nested: whether it draws from an enclosing run.
        progress: what the gates look at.
        stop_reason: why nothing new starts, once something stopped the run.
        cost_usd: what its recorded results cost.
    """

    def __init__(self, spec: RunSpec, *, total: int | None, name: str | None = None) -> None:
        self.spec = spec
        self.name = name
        self.progress = DispatchProgress(total=total, finished=[])
        self.stop_reason: str | None = None
        self.cost_usd = 0.0
        self.refusal: CallError | None = None
        limits = spec.limits
        gates: list[StopCondition] = []
        if spec.mode is DispatchMode.ALL_OR_NOTHING:
            gates.append(stop_on_any_failure())
        if limits.max_failure_rate is not None:
            gates.append(
                stop_on_failure_rate(
                    limits.max_failure_rate,
                    min_sample=limits.failure_rate_min_sample,
                    cancel_in_flight=limits.cancel_in_flight_on_failure_rate,
                )
            )
        if limits.min_success_count is not None:
            gates.append(stop_when_unreachable(limits.min_success_count))
        if spec.stop is not None:
            gates.append(spec.stop)
        self._gates = tuple(gates)
        self._keep_finished = spec.stop is not None
        self._in_flight: dict[asyncio.Task[object], Task] = {}
        self._cancelled: set[asyncio.Task[object]] = set()
        self._exit = AsyncExitStack()
        self._timer: asyncio.TimerHandle | None = None
        self._prepared = False

    # -- lifecycle -----------------------------------------------------------------------

    def prepare(
        self, *, recovered: Iterable[SubAgentResult] = (), ledger: CostLedger | None = None
    ) -> RunController:
        """Resolve the scope, refuse depth, build the pipeline: everything ``open`` does
        that needs no waiting (a graph registers the run between the two).

        Args:
            recovered: results a resumed run already has: they count toward the gates.
            ledger: for a top-level run, the ledger of the run this one resumes (it holds
                what was spent already); ignored when nested.
        """
        if self._prepared:
            raise RuntimeError("a RunController is opened once")
        self._prepared = True
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.started_at = loop.time()
        self.touched = self.started_at
        spec, limits = self.spec, self.spec.limits
        scope = current_scope()
        self._lease = None
        if scope is None:
            shared = spec.shared or SharedRun.create(
                limits, ledger=spec.ledger or ledger, limiter=spec.rate_limiter
            )
            depth = 1
        else:
            if scope.loop is not None and scope.loop is not loop:
                # Nested from another thread's event loop (a sync twin inside a sub-agent):
                # the budget and agent count are shared; slots belong to a loop.
                shared = scope.run.on_another_loop()
            else:
                shared, self._lease = scope.run, scope.lease
            depth = scope.depth + 1
            if limits is not shared.limits:
                warn_nested_limits(limits, stacklevel=4)
        self.shared, self.depth, self.nested = shared, depth, scope is not None
        self.window = LoopSlots(limits.max_concurrent) if limits.max_concurrent else None
        max_depth = shared.limits.max_dispatch_depth
        if max_depth is not None and depth > max_depth:
            self.refusal = DepthLimitExceeded(depth=depth, limit=max_depth)
            self.stop_reason = str(self.refusal)
        timeout = limits.max_agent_duration_s
        if timeout is None:
            timeout = shared.limits.max_agent_duration_s
        self.pipeline = CallPipeline(
            run=shared, depth=depth, config=spec.config, guards=spec.guards, timeout_s=timeout
        )
        for result in recovered:
            self._count(result)
        return self

    async def start(self) -> RunController:
        """Lend the parent call's slot to this run's calls, then start the deadline."""
        if self.refusal is not None:
            return self
        if self._lease is not None:
            # The enclosing call waits for this whole run: its slot goes to our calls.
            await self._exit.enter_async_context(self._lease.lend())
        deadline = self.spec.limits.max_total_duration_s
        if deadline is not None:
            self._timer = self.loop.call_later(
                deadline, self.stop, f"deadline of {deadline:g} s passed"
            )
        return self

    async def open(self, *, recovered: Iterable[SubAgentResult] = ()) -> RunController:
        """``prepare``, then ``start``."""
        return await self.prepare(recovered=recovered).start()

    def abandon(self) -> None:
        """Stop the deadline of a run nobody will close (its graph was cancelled)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def aclose(self, error: BaseException | None = None) -> None:
        """Stop the deadline, then take the parent's slot back (not after an error)."""
        self.abandon()
        if error is None:
            await self._exit.aclose()
        else:
            await self._exit.__aexit__(type(error), error, error.__traceback__)

    async def __aenter__(self) -> RunController:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose(exc)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # -- scheduling ----------------------------------------------------------------------

    async def call(
        self, task: Task, *, config: RunnableConfig | None = None, count: bool = True
    ) -> SubAgentResult:
        """Run one input scheduled by someone else (a graph node): the window, the
        pipeline, the gates. Never raises for an expected failure.

        Args:
            task: the input.
            config: the node's config (its callbacks reach the sub-agent).
            count: record it in the progress (an aggregator's own call is not an input).
        """
        if self.stop_reason is not None:
            result = self._not_started(task)
        else:
            window = self.window
            if window is not None:
                await window.acquire()
            try:
                if self.stop_reason is not None:
                    result = self._not_started(task)
                else:
                    self.progress.started += count
                    result = await self._invoke(task, config)
            finally:
                if window is not None:
                    window.release()
        if count:
            await self._record(result, None)
        return result

    async def feed(self, tasks: Iterator[Task] | VoteWaves, emit: Emit) -> None:
        """Run every task, at most one window in flight, creating tasks lazily; ``emit``
        gets each result as it finishes (awaited when it returns an awaitable). Given
        ``VoteWaves``, tasks start when their question's wave does, and the voters a
        settled question no longer needs are emitted as ``VoterNotNeeded``."""
        window = self.window
        waves = tasks if isinstance(tasks, VoteWaves) else None
        if waves is not None:
            emit = self._voting(waves, emit)
        source = None if isinstance(tasks, VoteWaves) else tasks
        # Tasks in flight; one cancelled before its first step stays here (see below).
        mine: dict[asyncio.Task[object], Task] = {}

        def done(handle: asyncio.Task[object]) -> None:
            # A done callback runs even for a task cancelled before its first step.
            if window is not None:
                window.release()
            if handle not in self._in_flight:  # it ran: its own handler recorded it
                del mine[handle]

        def stopped() -> bool:
            return self.stop_reason is not None

        async with asyncio.TaskGroup() as tg:
            while True:
                held = False
                if self.stop_reason is None and window is not None:
                    await window.acquire()
                    held = True
                task = next(source, None) if source is not None else None
                if waves is not None:
                    task = await waves.next(stopped)
                if task is None or self.stop_reason is not None:
                    if held:
                        window.release()  # type: ignore[union-attr]
                    if task is None:
                        break
                    await self._record(self._not_started(task), emit)
                    continue
                self.progress.started += 1
                handle: asyncio.Task[object] = tg.create_task(self._one(task, emit))
                self._in_flight[handle] = mine[handle] = task
                handle.add_done_callback(done)
        # A task cancelled by a stop before it ever ran never reached its own handler.
        for handle, task in mine.items():
            del self._in_flight[handle]
            self._cancelled.discard(handle)
            await self._record(self._not_started(task), emit)

    def _voting(self, waves: VoteWaves, emit: Emit) -> Emit:
        async def voted(result: SubAgentResult) -> None:
            not_needed = waves.finished(result)
            pending = emit(result)
            if pending is not None:
                await pending
            for ended in not_needed:
                await self._record(ended, emit)

        return voted

    async def _one(self, task: Task, emit: Emit) -> None:
        await self._record(await self._invoke(task, None), emit)

    async def _invoke(self, task: Task, config: RunnableConfig | None) -> SubAgentResult:
        current = asyncio.current_task()
        assert current is not None  # the engine and graph nodes always run in a task
        self._in_flight[current] = task
        try:
            return await self.pipeline(task, config)
        except GraphBubbleUp:  # an interrupt inside the agent pauses the graph
            raise
        except Exception as exc:
            # A guard that cannot process this input (its cache key, its screen, its
            # estimate): the input ends as its own result; the others go on. A bad option
            # found at call time is the caller's to fix: it is raised.
            if isinstance(exc, FanoutError) and not isinstance(exc, CallError):
                raise
            reason = f"the guards could not process this input: {exc!r}"
            return ended_with(task, InvalidItem(index=task.index, reason=reason))
        except asyncio.CancelledError:
            # Only a cancellation this run made (deadline, a gate) becomes a result.
            ours = current in self._cancelled
            self._cancelled.discard(current)
            if not ours or current.uncancel() > 0:
                raise
            reason = self.stop_reason or "stopped"
            return ended_with(task, CallCancelled(reason=reason, started=True))
        finally:
            # Out of the in-flight set before anything else: a stop must not cancel a result.
            self._in_flight.pop(current, None)
            if current in self._cancelled:
                # A stop cancelled this call and the agent swallowed it: take the request
                # back (a graph node's task goes on after it).
                self._cancelled.discard(current)
                current.uncancel()
            self.touched = self.loop.time()

    def _not_started(self, task: Task) -> SubAgentResult:
        if self.refusal is not None:
            return ended_with(task, self.refusal)
        return ended_with(task, CallCancelled(reason=self.stop_reason or "stopped", started=False))

    # -- gates ---------------------------------------------------------------------------

    async def _record(self, result: SubAgentResult, emit: Emit | None) -> None:
        self._count(result)
        if emit is not None:
            pending = emit(result)
            if pending is not None:
                await pending

    def _count(self, result: SubAgentResult) -> None:
        progress = self.progress
        if result.status is Status.OK:
            progress.succeeded += 1
        elif isinstance(result.error, VoterNotNeeded):
            progress.not_needed += 1  # settled without it: neither a success nor a failure
        else:
            progress.failed += 1
        progress.last = result
        if self._keep_finished:
            progress.finished.append(result)
        self.cost_usd += result.cost_usd
        if self.stop_reason is None and result.status is not Status.CANCELLED:
            for gate in self._gates:
                verdict = gate(progress)
                if verdict is not None:
                    self.stop(verdict, cancel_in_flight=gate.cancels_in_flight)
                    return

    def stop(self, reason: str, *, cancel_in_flight: bool = True) -> None:
        """Start nothing more; cancel the calls in flight unless told not to."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        if cancel_in_flight:
            for handle in list(self._in_flight):
                self._cancelled.add(handle)
                handle.cancel()

    # -- the end -------------------------------------------------------------------------

    def report(
        self, results: ReportBuilder | Iterable[SubAgentResult], *, wall_time_s: float | None = None
    ) -> DispatchReport:
        """The report of ``results`` with the run's ledger totals (one ledger snapshot)."""
        if isinstance(results, ReportBuilder):
            builder = results
        else:
            builder = ReportBuilder()
            for result in results:
                builder.add(result)
        if wall_time_s is None:
            wall_time_s = 0.0 if self.refusal is not None else self.loop.time() - self.started_at
        return build_report(
            builder, self.shared.ledger, wall_time_s=wall_time_s, stop_reason=self.stop_reason
        )

    def check_outcome(self, report: DispatchReport, results: tuple[SubAgentResult, ...]) -> None:
        """Raise ``DispatchFailed`` when the mode or ``min_success_count`` says so."""
        needed = report.inputs - report.voters_not_needed
        if self.spec.mode is DispatchMode.ALL_OR_NOTHING and report.succeeded != needed:
            raise DispatchFailed(reason=report.stop_reason or "an input failed", results=results)
        need = self.spec.limits.min_success_count
        if need is not None and report.succeeded < need:
            raise DispatchFailed(
                reason=f"{report.succeeded} successes < min_success_count={need}", results=results
            )


def build_report(
    builder: ReportBuilder,
    ledger: CostLedger,
    *,
    wall_time_s: float,
    stop_reason: str | None,
) -> DispatchReport:
    """The report of ``builder``'s results with the run's ledger totals, read from one
    ledger snapshot (so the totals agree with each other)."""
    books = ledger.snapshot()
    return builder.build(
        wall_time_s=wall_time_s,
        stop_reason=stop_reason,
        budget_usd=books.limit_usd,
        total_spent_usd=books.spent_usd,
        refused_usd=books.refused_usd,
        overshoot_usd=books.overshoot_usd,
        uncertain_usd=books.uncertain_usd,
        abandoned_threads=sync_workers.abandoned,
    )
