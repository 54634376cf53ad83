"""Per-agent circuit breakers, shared by every dispatch in the process.

A breaker watches the calls of one agent and, once the agent looks down, stops calls to it
for a cooldown so they go straight to a fallback instead of waiting on a dead endpoint. It
opens on a failure *rate*, as resilience4j's does: a few failures among many successes are
noise, and only outages count as failures (``classify.is_outage``; never backpressure)::

    CLOSED ──>= minimum_calls in the window and failures/calls >= failure_rate──> OPEN
    OPEN ──cooldown_s elapsed──> HALF_OPEN (at most half_open_max_calls probes in flight)
    HALF_OPEN ──probe succeeds──> CLOSED (the window forgotten)
    HALF_OPEN ──probe fails──> OPEN (a new cooldown)

The window is the last ``window_calls`` calls, and of those only the ones of the last
``window_s`` (fixed memory whatever the call rate). Counting calls, not seconds, is what
lets a busy agent's outage show at once: 30 s of good traffic would otherwise outvote the
first 20 s of failures.

Breakers hold a ``threading.Lock`` and no asyncio object but the futures of calls waiting
for a probe (each woken on its own loop), so one breaker serves every event loop and thread
of the process. ``default_breakers`` is the process-wide registry.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum

from langgraph_fanout.core.checks import (
    MAX_COUNT,
    MAX_SECONDS,
    check_number,
    check_text,
    check_type,
)
from langgraph_fanout.errors import CircuitOpen, ConfigurationError


class BreakerState(StrEnum):
    """Where a circuit breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    """When a breaker opens and how it recovers.

    Attributes:
        failure_rate: share of the calls in the window that failed (outages only) at or
            above which the circuit opens.
        minimum_calls: calls the window must hold before the rate is judged (a breaker
            never opens on fewer).
        window_calls: the window holds at most this many of the latest calls...
        window_s: ...and none older than this.
        cooldown_s: how long the circuit stays open before it lets probes through.
        half_open_max_calls: probes allowed in flight at once while half-open.

    Example:
        >>> BreakerConfig(minimum_calls=10, cooldown_s=10.0).failure_rate
        0.5
    """

    failure_rate: float = 0.5
    minimum_calls: int = 20
    window_calls: int = 50
    window_s: float = 30.0
    cooldown_s: float = 30.0
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        for name in ("minimum_calls", "window_calls", "half_open_max_calls"):
            check_number(
                f"BreakerConfig.{name}",
                getattr(self, name),
                at_least=1,
                at_most=MAX_COUNT,
                integer=True,
            )
        for name in ("window_s", "cooldown_s"):
            check_number(f"BreakerConfig.{name}", getattr(self, name), above=0, at_most=MAX_SECONDS)
        check_number("BreakerConfig.failure_rate", self.failure_rate, above=0, at_most=1)
        if self.window_calls < self.minimum_calls:
            raise ConfigurationError(
                f"BreakerConfig.window_calls ({self.window_calls}) must be >= minimum_calls "
                f"({self.minimum_calls})"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerSnapshot:
    """A consistent reading of one breaker, for reports and tests.

    Attributes:
        name: the agent name the breaker guards.
        state: closed, open or half-open at the time of the reading.
        failures_in_window: counted failures still inside the window.
        calls_in_window: calls (failures included) still inside the window.
        opened_count: how many times the breaker has opened since it was created.
        retry_in_s: seconds until an open breaker admits a probe (``0.0`` unless open).
    """

    name: str
    state: BreakerState
    failures_in_window: int
    opened_count: int
    calls_in_window: int = 0
    retry_in_s: float


class CircuitBreaker:
    """The circuit breaker of one agent.

    Callers ask before each attempt (``try_acquire`` or ``acquire``) and report its verdict
    afterwards (``record_success``, ``record_failure``, or ``release_probe`` for an attempt
    that ended without one: refused, cancelled, or failed through the request's own fault).
    While half-open, a verdict reported by any call is taken as the probe's verdict.

    Args:
        name: the agent name, used in errors and snapshots.
        config: thresholds; ``BreakerConfig()`` when omitted.
        clock: monotonic seconds; inject a fake one in tests.

    Example:
        >>> breaker = CircuitBreaker("researcher", BreakerConfig(minimum_calls=1))
        >>> breaker.record_failure()
        True
        >>> breaker.try_acquire()
        False
    """

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_text("CircuitBreaker name", name)
        check_type("CircuitBreaker config", config, BreakerConfig, optional=True)
        self.name = name
        self.config = config if config is not None else BreakerConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        # The latest calls: (when, failed), at most window_calls; and how many failed.
        self._window: deque[tuple[float, bool]] = deque(maxlen=self.config.window_calls)
        self._failed_in_window = 0
        self._failures_at_open = 0
        self._opened_at = 0.0
        self._opened_count = 0
        self._probes_in_flight = 0
        # Calls waiting for a half-open probe's verdict: (their loop, their future).
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # All _methods below expect self._lock to be held.

    def _wake(self) -> None:
        """A probe's verdict came back: every call waiting for it asks again."""
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)

    def _refresh(self, now: float) -> None:
        if self._state is BreakerState.OPEN and now >= self._opened_at + self.config.cooldown_s:
            self._state = BreakerState.HALF_OPEN
            self._probes_in_flight = 0

    def _count(self, now: float, *, failed: bool) -> None:
        window = self._window
        if len(window) == window.maxlen and window[0][1]:
            self._failed_in_window -= 1  # the oldest call is about to fall out
        window.append((now, failed))
        self._failed_in_window += failed

    def _totals(self, now: float) -> tuple[int, int]:
        """Calls and failures still inside the window."""
        window, horizon = self._window, now - self.config.window_s
        while window and window[0][0] <= horizon:
            self._failed_in_window -= window.popleft()[1]
        return len(window), self._failed_in_window

    def _forget(self) -> None:
        self._window.clear()
        self._failed_in_window = 0

    def _open(self, now: float, failures: int) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._opened_count += 1
        self._failures_at_open = max(failures, 1)
        self._probes_in_flight = 0

    def _retry_in(self, now: float) -> float:
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.config.cooldown_s - now)

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker turns half-open once its cooldown is over)."""
        with self._lock:
            self._refresh(self._clock())
            return self._state

    @property
    def opened_count(self) -> int:
        """How many times this breaker has opened."""
        with self._lock:
            return self._opened_count

    def try_acquire(self) -> bool:
        """Ask to make one call; ``False`` means the circuit is open (or all probes are out).

        Half-open, an admitted call is a probe and holds one of ``half_open_max_calls``
        slots until its verdict (or ``release_probe``) comes back.
        """
        # Closed is the common case, and reading one attribute is atomic: no lock needed
        # (a failure opening the circuit at this instant would not have stopped this call).
        if self._state is BreakerState.CLOSED:
            return True
        with self._lock:
            self._refresh(self._clock())
            state: BreakerState = self._state  # may have changed since the unlocked read
            if state is BreakerState.CLOSED:
                return True
            if (
                state is BreakerState.HALF_OPEN
                and self._probes_in_flight < self.config.half_open_max_calls
            ):
                self._probes_in_flight += 1
                return True
            return False

    def acquire(self) -> None:
        """Like ``try_acquire``, but raise instead of returning ``False``.

        Raises:
            CircuitOpen: the circuit is open (``retry_in_s`` says when it probes again) or
                half-open with every probe slot taken (``retry_in_s`` is ``0.0``).
        """
        if not self.try_acquire():
            raise self.open_error()

    def open_error(self, *, agent: str | None = None) -> CircuitOpen:
        """The ``CircuitOpen`` error describing this breaker now (naming ``agent``, or the
        breaker's own name)."""
        with self._lock:
            now = self._clock()
            self._refresh(now)
            return CircuitOpen(
                agent=self.name if agent is None else agent,
                failures=self._failures_at_open,
                retry_in_s=self._retry_in(now),
            )

    async def wait_until_probed(
        self, sleep: Callable[[float], Awaitable[None]], *, longest_s: float
    ) -> bool:
        """Wait until this breaker may admit a call again, without polling: an open one
        until its cooldown ends (one ``sleep``), a half-open one until the verdict of the
        probe in flight. Returns ``False`` at once when that is more than ``longest_s``
        away (the caller has no time to wait), ``True`` after waiting."""
        waiter: asyncio.Future[None] | None = None
        with self._lock:
            now = self._clock()
            self._refresh(now)
            if self._state is BreakerState.CLOSED:
                return True
            delay = self._retry_in(now)
            if delay > longest_s:
                return False
            if self._state is BreakerState.HALF_OPEN:
                loop = asyncio.get_running_loop()
                waiter = loop.create_future()
                self._waiters.append((loop, waiter))
        if waiter is None:
            await sleep(delay)
            return True
        try:
            await waiter
        finally:
            with self._lock:
                self._waiters = [w for w in self._waiters if w[1] is not waiter]
        return True

    def record_success(self) -> None:
        """Report a call that succeeded: it counts in the window (the rate's denominator);
        a half-open breaker closes and forgets its window."""
        with self._lock:
            now = self._clock()
            self._refresh(now)
            if self._state is BreakerState.CLOSED:
                self._count(now, failed=False)
            elif self._state is BreakerState.HALF_OPEN:
                self._state = BreakerState.CLOSED
                self._forget()
                self._probes_in_flight = 0
                self._wake()
            # Open: a call that started before the circuit opened says little about now;
            # the cooldown and a probe decide.

    def record_failure(self) -> bool:
        """Report a counted failure (an outage); return ``True`` if it opened the circuit."""
        with self._lock:
            now = self._clock()
            self._refresh(now)
            if self._state is BreakerState.HALF_OPEN:
                self._open(now, self._totals(now)[1] + 1)
                self._wake()
                return True
            if self._state is BreakerState.OPEN:
                # A late failure of a call started before the circuit opened: already known.
                return False
            self._count(now, failed=True)
            calls, fails = self._totals(now)
            config = self.config
            if calls >= config.minimum_calls and fails >= config.failure_rate * calls:
                self._open(now, fails)
                return True
            return False

    def release_probe(self) -> None:
        """Give back a half-open probe slot whose call ended without a verdict."""
        with self._lock:
            self._refresh(self._clock())
            if self._state is BreakerState.HALF_OPEN and self._probes_in_flight > 0:
                self._probes_in_flight -= 1
                self._wake()

    def snapshot(self) -> BreakerSnapshot:
        """A consistent reading of the breaker."""
        with self._lock:
            now = self._clock()
            self._refresh(now)
            calls, fails = self._totals(now)
            return BreakerSnapshot(
                name=self.name,
                state=self._state,
                failures_in_window=fails,
                calls_in_window=calls,
                opened_count=self._opened_count,
                retry_in_s=self._retry_in(now),
            )

    def reset(self) -> None:
        """Close the breaker and forget everything (tests, or an operator's manual reset)."""
        with self._lock:
            self._state = BreakerState.CLOSED
            self._forget()
            self._failures_at_open = 0
            self._opened_count = 0
            self._probes_in_flight = 0

    def __repr__(self) -> str:
        snap = self.snapshot()
        return (
            f"<CircuitBreaker {self.name!r} {snap.state.value} "
            f"failures={snap.failures_in_window}/{snap.calls_in_window} calls "
            f"opened={snap.opened_count}>"
        )


class ObjectKey:
    """A breaker key that is one object (a runnable, a callable), not its name: equal only
    to a key of the same live object. It holds a weak reference, so a later object that
    reuses the memory (and the ``id``) of a dead one never inherits its breaker."""

    __slots__ = ("_id", "_ref", "name")

    def __init__(self, name: str, obj: object) -> None:
        self.name = name
        self._id = id(obj)
        try:
            self._ref: Callable[[], object | None] = weakref.ref(obj)
        except TypeError:  # not weak-referenceable: hold it (it stays the same object)
            self._ref = lambda: obj

    @property
    def alive(self) -> bool:
        return self._ref() is not None

    def __hash__(self) -> int:
        return self._id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectKey) or other._id != self._id:
            return False
        mine = self._ref()
        return mine is not None and mine is other._ref()

    def __str__(self) -> str:
        return f"{self.name}@{self._id:x}"

    def __repr__(self) -> str:
        return f"ObjectKey({str(self)!r})"


class BreakerRegistry:
    """The breakers of a process (or a test), one per key: what is called, not its name.

    The first ``get`` of a key creates its breaker with the config passed (or the
    registry's); later calls return that same breaker and ignore their config, so every
    dispatch that calls an agent sees the same circuit. The engine keys a chat model by its
    model and endpoint, anything else by the object (``ObjectKey``), or by the agent's
    ``breaker_key`` (``SubAgent.circuit_key``).

    Args:
        config: config of breakers created without one; ``BreakerConfig()`` when omitted.
        clock: monotonic seconds, given to every breaker created here.

    Example:
        >>> registry = BreakerRegistry()
        >>> registry.get("writer") is registry.get("writer")
        True
    """

    def __init__(
        self, config: BreakerConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config if config is not None else BreakerConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[Hashable, CircuitBreaker] = {}
        self._prune_at = 64

    def get(self, key: Hashable, config: BreakerConfig | None = None) -> CircuitBreaker:
        """The breaker of ``key`` (a name, or an ``ObjectKey``), created on first use."""
        breaker = self._breakers.get(key)  # a dict read is atomic: lock only to create
        if breaker is not None:
            return breaker
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = CircuitBreaker(
                    str(key), config if config is not None else self.config, clock=self._clock
                )
                self._breakers[key] = breaker
                if len(self._breakers) >= self._prune_at:
                    self._prune()
            return breaker

    def _prune(self) -> None:
        """Drop the breakers of objects that no longer exist (their keys never match)."""
        for key in [k for k in self._breakers if isinstance(k, ObjectKey) and not k.alive]:
            del self._breakers[key]
        self._prune_at = max(64, 2 * len(self._breakers))

    def snapshot(self) -> dict[str, BreakerSnapshot]:
        """A reading of every breaker, by its name (``str`` of its key)."""
        with self._lock:
            breakers = list(self._breakers.values())
        return {breaker.name: breaker.snapshot() for breaker in breakers}

    def reset(self) -> None:
        """Forget every breaker (their state and configs)."""
        with self._lock:
            self._breakers.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._breakers)

    def __repr__(self) -> str:
        return f"<BreakerRegistry breakers={len(self)}>"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


default_breakers = BreakerRegistry()
"""The process-wide registry used when a call does not pass its own."""
