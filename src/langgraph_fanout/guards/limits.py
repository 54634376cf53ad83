"""Resource limits, and the run state that nested dispatches share through ``contextvars``.

``DispatchResourceLimits`` says what is allowed (``None`` switches a limit off).
``SharedRun`` is what is being used: the concurrency slots, the agent count and the cost
ledger of one top-level dispatch. A dispatch started inside a sub-agent call (tree
recursion, a tool inside a sub-agent) finds the parent's ``SharedRun`` in its context and
draws from it, so nesting never multiplies a limit.

The concurrency cap counts calls actually in flight. A call that starts a nested dispatch
lends its slot to its children while it waits for them (and takes one back afterwards),
so ten parents fanning out ten children under ``max_concurrent=5`` peak at five calls and
cannot deadlock.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields, replace
from typing import Any

from langgraph_fanout.core.checks import (
    MAX_COUNT,
    MAX_SECONDS,
    MAX_USD,
    check_flag,
    check_number,
)
from langgraph_fanout.errors import AgentLimitExceeded, ConfigurationError
from langgraph_fanout.guards.ledger import CostLedger, Reservation
from langgraph_fanout.guards.ratelimit import RateLimiter

RUN = {"scope": "run"}


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchResourceLimits:
    """What a dispatch (and everything nested in it) may use. ``None`` switches a limit off.

    Nothing here throttles by default except ``max_concurrent`` (10 calls in flight) and
    ``max_dispatch_depth`` (5 levels of nesting), both stated here so they are never a surprise.

    Args:
        max_total_cost_usd: cost budget; a call starts only if its worst case fits.
        max_total_agents: most calls (attempts included) that may start.
        max_concurrent: most calls in flight at once, across nested dispatches.
        max_failure_rate: stop once this share of finished inputs failed...
        failure_rate_min_sample: ...counting only after this many inputs finished.
        cancel_in_flight_on_failure_rate: on that stop, cancel calls in flight (else let them end).
        max_agent_duration_s: timeout of each attempt.
        max_total_duration_s: deadline of the whole dispatch; in-flight calls are cancelled.
        requests_per_second / tokens_per_minute: rate limits (no default rate).
        min_success_count: the dispatch fails (``DispatchFailed``) with fewer successes.
        max_dispatch_depth: deepest nesting of dispatches (the top level is depth 1).
        default_max_output_tokens: worst-case output size assumed when an agent states none.
        allow_unpriced: run models with no known price, counted at zero cost (with a warning).

    Example:
        >>> DispatchResourceLimits(max_concurrent=5, max_total_cost_usd=0.50)
    """

    # RUN: applied by the top-level run only (a nested run draws from its parent's and
    # warns when it sets one). The others apply to each dispatch (max_concurrent to both:
    # the run's slots, and the dispatch's own window).
    max_total_cost_usd: float | None = field(default=None, metadata=RUN)
    max_total_agents: int | None = field(default=None, metadata=RUN)
    max_concurrent: int | None = 10
    max_failure_rate: float | None = None
    failure_rate_min_sample: int = 5
    cancel_in_flight_on_failure_rate: bool = True
    max_agent_duration_s: float | None = None
    max_total_duration_s: float | None = None
    requests_per_second: float | None = field(default=None, metadata=RUN)
    tokens_per_minute: float | None = field(default=None, metadata=RUN)
    min_success_count: int | None = None
    max_dispatch_depth: int | None = field(default=5, metadata=RUN)
    default_max_output_tokens: int = field(default=1024, metadata=RUN)
    allow_unpriced: bool = field(default=False, metadata=RUN)

    def __post_init__(self) -> None:
        def number(name: str, **bounds: Any) -> None:
            check_number(f"DispatchResourceLimits.{name}", getattr(self, name), **bounds)

        number("max_total_cost_usd", at_least=0, at_most=MAX_USD, optional=True)
        for name in ("max_total_agents", "max_concurrent", "max_dispatch_depth"):
            number(name, at_least=1, at_most=MAX_COUNT, integer=True, optional=True)
        number("failure_rate_min_sample", at_least=1, at_most=MAX_COUNT, integer=True)
        number(
            "default_max_output_tokens",
            at_least=1,
            at_most=MAX_COUNT,
            integer=True,
            why="the output reserved for a call that sets no max_tokens",
        )
        number("min_success_count", at_least=0, at_most=MAX_COUNT, integer=True, optional=True)
        for name in ("max_agent_duration_s", "max_total_duration_s"):
            number(name, above=0, at_most=MAX_SECONDS, optional=True)
        for name in ("requests_per_second", "tokens_per_minute"):
            number(name, above=0, at_most=MAX_COUNT, optional=True)
        number(
            "max_failure_rate",
            at_least=0,
            below=1,
            optional=True,
            why="a share of failed inputs",
        )
        check_flag(
            "DispatchResourceLimits.cancel_in_flight_on_failure_rate",
            self.cancel_in_flight_on_failure_rate,
        )
        check_flag("DispatchResourceLimits.allow_unpriced", self.allow_unpriced)


def run_wide_fields() -> tuple[str, ...]:
    """The fields of ``DispatchResourceLimits`` that only a top-level run applies."""
    return _RUN_WIDE


_RUN_WIDE = tuple(
    f.name for f in fields(DispatchResourceLimits) if f.metadata.get("scope") == "run"
)


class _SlotWaiter:
    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Slots:
    """A FIFO counting semaphore that threads and their event loops can share.

    Same contract as ``asyncio.Semaphore`` (no polling; cancellation-safe: a slot handed
    to a waiter that was cancelled meanwhile is passed on), minus its per-acquire scan of
    the waiters (``locked()`` in Python 3.11), which costs as much as the rest of a call's
    bookkeeping on the engine's hot path (``benchmarks/overhead.py``). One ``Slots`` may
    be used from several threads, each running its own loop: the count and the line are
    kept under a lock, a slot is handed over under it (``granted``), and a waiter of
    another loop is woken with ``call_soon_threadsafe``, so one cap holds across all of
    them in one order.
    """

    __slots__ = ("_lock", "_value", "_waiters")

    def __init__(self, value: int) -> None:
        self._value = value
        self._waiters: deque[_SlotWaiter] = deque()
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits for one; never waits."""
        with self._lock:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return True
            return False

    async def acquire(self, *, first: bool = False) -> None:
        """Take a slot, waiting in line for one; ``first`` jumps the line (hedges do)."""
        with self._lock:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return
            waiter = _SlotWaiter(asyncio.get_running_loop())
            if first:
                self._waiters.appendleft(waiter)
            else:
                self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                if waiter.granted:
                    self._release_locked()  # the slot was ours already: pass it on
                else:
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._release_locked()
            else:
                self._value += 1

    def _release_locked(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True  # handed over: the count does not change
            try:
                here = asyncio.get_running_loop()
            except RuntimeError:
                here = None
            if waiter.loop is here:
                _wake(waiter.future)
                return
            try:
                waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                return
            except RuntimeError:  # its loop is closed: nobody waits there any more
                continue
        self._value += 1

    @property
    def available(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"Slots(available={self._value}, waiting={len(self._waiters)})"


class LoopSlots:
    """``Slots`` for one event loop only (a dispatch's own window, the stream's room):
    the same FIFO contract without the lock, which a structure no other thread sees does
    not need (it is on every call's path twice)."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: int) -> None:
        self._value = value
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, *, first: bool = False) -> None:
        if self._value > 0 and not self._waiters:
            self._value -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was ours already: hand it to the next in line
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # handed over: the count does not change
                return
        self._value += 1

    @property
    def available(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"LoopSlots(available={self._value}, waiting={len(self._waiters)})"


class SlotLease:
    """One call's hold on a concurrency slot, which it can lend to nested dispatches."""

    __slots__ = ("_held", "_lent", "_restore", "_sem")

    def __init__(self, sem: Slots | None) -> None:
        self._sem = sem
        self._held = False
        self._lent = 0
        self._restore = False

    def try_acquire(self) -> bool:
        """Take a slot without waiting, if one is free; ``True`` when it holds one now."""
        if self._sem is None:
            return True
        if self._sem.try_acquire():
            self._held = True
            return True
        return False

    async def acquire(self, *, first: bool = False) -> None:
        if self._sem is not None:
            await self._sem.acquire(first=first)
            self._held = True

    def release(self) -> None:
        if self._held and self._sem is not None:
            self._held = False
            self._sem.release()

    @asynccontextmanager
    async def lend(self) -> AsyncIterator[None]:
        """Give the slot to nested work while it runs; take one back when it ends normally."""
        if self._lent == 0:
            self._restore = self._held
            self.release()
        self._lent += 1
        ok = False
        try:
            yield
            ok = True
        finally:
            self._lent -= 1
            # On an error or cancellation we do not wait for a slot again: the call is ending.
            if ok and self._restore and self._lent == 0 and self._sem is not None:
                await self._sem.acquire()
                self._held = True


@dataclass(slots=True, kw_only=True)
class SharedRun:
    """State shared by a top-level dispatch and everything nested in it.

    Attributes:
        limits: the top-level dispatch's limits (nested dispatches draw from these).
        concurrency: the slots of ``max_concurrent``.
        ledger: the cost budget (always present: it also accounts when there is no cap).
        limiter: the rate limiter, if any.
        agents_started: calls started so far, against ``max_total_agents``.
    """

    limits: DispatchResourceLimits
    concurrency: Slots | None
    ledger: CostLedger
    limiter: RateLimiter | None = None
    # What the provider billed beyond our prompt-token count, per model, in this run:
    # ``(model, "excess")`` tokens and ``(model, "ratio")``; later estimates cover them.
    input_ratio: dict[tuple[str | None, str], float] = field(default_factory=dict)
    # A list so that views on other loops (``on_another_loop``) count into the same cell.
    _started: list[int] = field(default_factory=lambda: [0])
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def agents_started(self) -> int:
        return self._started[0]

    @agents_started.setter
    def agents_started(self, value: int) -> None:
        """Set when a run is rebuilt (e.g. a graph resumed from its checkpoint)."""
        with self._lock:
            self._started[0] = value

    @classmethod
    def create(
        cls,
        limits: DispatchResourceLimits,
        *,
        ledger: CostLedger | None = None,
        limiter: RateLimiter | None = None,
    ) -> SharedRun:
        """The run state of a new top-level dispatch.

        Args:
            limits: the limits.
            ledger: a ledger to share with other dispatches (a budget for a whole agent
                run); a new one with ``limits.max_total_cost_usd`` when not given.
            limiter: a rate limiter to share (e.g. per provider); built from the limits'
                ``requests_per_second``/``tokens_per_minute`` when not given.
        """
        sem = Slots(limits.max_concurrent) if limits.max_concurrent else None
        if ledger is None:
            ledger = CostLedger(limits.max_total_cost_usd)
        if limiter is None and (limits.requests_per_second or limits.tokens_per_minute):
            limiter = RateLimiter(
                requests_per_second=limits.requests_per_second,
                tokens_per_minute=limits.tokens_per_minute,
                name="dispatch",
            )
        return cls(limits=limits, concurrency=sem, ledger=ledger, limiter=limiter)

    def count_agent(self) -> None:
        """Count one call about to start; refuse it past ``max_total_agents``."""
        cap = self.limits.max_total_agents
        with self._lock:  # a run may be shared by sync twins in worker threads
            if cap is not None and self._started[0] >= cap:
                raise AgentLimitExceeded(limit=cap)
            self._started[0] += 1

    def on_another_loop(self) -> SharedRun:
        """A view for a nested dispatch on another thread's event loop: the same budget
        and agent count; its own concurrency slots. The same rate limiter object, but a
        ``RateLimiter`` keeps its buckets per event loop, so rates are per loop too."""
        view = SharedRun.create(self.limits, ledger=self.ledger, limiter=self.limiter)
        view._started = self._started
        view._lock = self._lock
        view.input_ratio = self.input_ratio
        return view


@dataclass(slots=True, eq=False)
class Scope:
    """Where the current code runs: the shared run, the depth, the call's slot and loop,
    and the budget reservations of the calls it runs inside (they settle only after it).
    Read-only (one is built per call, so not a frozen dataclass); compared by identity."""

    run: SharedRun
    depth: int
    lease: SlotLease | None = None
    loop: asyncio.AbstractEventLoop | None = None
    reservations: tuple[Reservation, ...] = ()


_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "langgraph_fanout_scope", default=None
)


def current_scope() -> Scope | None:
    """The scope of the sub-agent call this code runs in, or ``None`` at top level."""
    return _SCOPE.get()


def enter_scope(scope: Scope) -> contextvars.Token[Scope | None]:
    return _SCOPE.set(scope)


def exit_scope(token: contextvars.Token[Scope | None]) -> None:
    _SCOPE.reset(token)


def reconcile_budget(
    limits: DispatchResourceLimits, ledger: CostLedger | None
) -> DispatchResourceLimits:
    """The one rule for ``limits=`` with ``ledger=``: the ledger's cap is the budget.

    A capped ledger with ``max_total_cost_usd=None`` sets the limit (reports, estimates and
    the unpriced-model check read it there); two different caps are a mistake.

    Raises:
        ConfigurationError: ``ledger.limit_usd`` differs from ``limits.max_total_cost_usd``.
    """
    if ledger is None or ledger.limit_usd == limits.max_total_cost_usd:
        return limits
    if limits.max_total_cost_usd is not None:
        raise ConfigurationError(
            f"ledger limit {ledger.limit_usd!r} differs from "
            f"limits.max_total_cost_usd={limits.max_total_cost_usd!r}: pass one of them"
        )
    return replace(limits, max_total_cost_usd=ledger.limit_usd)


class SharedLimits:
    """The ``SharedRun`` of one agent run, held so that it can be reset.

    One budget, agent count, concurrency cap and rate limiter for every call, threads
    and their event loops included (a sync tool call runs its own loop): each loop draws
    from its own view of the run, which shares the ledger, the count and the ``Slots``.
    (A ``RateLimiter`` keeps its buckets per event loop, so rates hold per loop.)

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
        # Descriptions, reports and the unpriced-model check read the budget from here.
        limits = reconcile_budget(limits, ledger)
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
                run.concurrency = self.run.concurrency  # one cap across loops
            return run

    def reset(self) -> None:
        """Start a new run: a fresh ledger with the same cap and a zero agent count.

        A ledger passed in is no longer used afterwards; the rate limiter is kept, and so
        are the slots (calls still in flight hold some).
        """
        with self._lock:
            slots = self.run.concurrency
            self.run = SharedRun.create(self.limits, limiter=self.run.limiter)
            self.run.concurrency = slots
            for loop in list(self._loops):
                self._loops[loop] = view = self.run.on_another_loop()
                view.concurrency = slots
