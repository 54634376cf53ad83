"""A virtual-time asyncio event loop for tests: timers fire at once, ``loop.time()`` jumps.

When the loop has nothing ready to run and would block until its next timer, it advances
its clock to that timer instead of sleeping, so ``asyncio.sleep(3600)`` returns at once
with ``loop.time()`` one hour later (plus :data:`TICK_S` per loop iteration that ran
callbacks: like a real clock, the virtual one never stands still; compare times with
``pytest.approx(..., abs=1e-6)``). I/O (and threads waking the loop, as
``asyncio.to_thread`` does) still works in real time. Built only on public asyncio APIs:
``SelectorEventLoop(selector)`` with a selector that advances the clock, and ``time()``.

Usage::

    def test_pacing() -> None:
        async def scenario() -> float:
            await asyncio.sleep(5)
            return asyncio.get_running_loop().time()

        assert fakeclock.run(scenario()) == pytest.approx(5.0, abs=1e-6)
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["TICK_S", "VirtualClock", "VirtualTimeEventLoop", "run"]

TICK_S = 1e-9
"""Virtual time that passes in each loop iteration that does not wait for a timer."""


class VirtualClock:
    """Virtual seconds since the loop started; only the loop's selector moves it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def tick(self) -> None:
        """Move on by one nanosecond, the resolution of the monotonic clock."""
        self.now += TICK_S


class _VirtualTimeSelector(selectors.DefaultSelector):
    """Polls I/O without blocking; jumps the clock where the loop would have slept."""

    def __init__(self, clock: VirtualClock, idle_timeout_s: float) -> None:
        super().__init__()
        self._clock = clock
        self._idle_timeout_s = idle_timeout_s

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            # Nothing scheduled: only I/O or another thread can wake us. Wait in real time,
            # but a bounded while, so a deadlocked test fails instead of hanging.
            events = super().select(self._idle_timeout_s)
            if not events:
                raise RuntimeError(
                    f"virtual-time loop idle for {self._idle_timeout_s} real seconds with no "
                    "timer scheduled: the test deadlocked"
                )
            return events
        events = super().select(0)
        if not events:
            if timeout > 0:
                self._clock.advance(timeout)
            else:
                # Like a real clock, never stand still between iterations. Code that arms a
                # timer for "now + float residue" (aiolimiter does, ~1e-16 s) would otherwise
                # get the same "now" back forever and spin.
                self._clock.tick()
        return events


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual and advances only when it would sleep."""

    def __init__(self, *, start: float = 0.0, idle_timeout_s: float = 30.0) -> None:
        self.clock = VirtualClock(start)
        super().__init__(_VirtualTimeSelector(self.clock, idle_timeout_s))

    def time(self) -> float:
        return self.clock.now


def run(main: Coroutine[Any, Any, T], *, start: float = 0.0, debug: bool = False) -> T:
    """Run ``main`` to completion on a fresh virtual-time loop (like ``asyncio.run``)."""
    with asyncio.Runner(debug=debug, loop_factory=lambda: VirtualTimeEventLoop(start=start)) as r:
        return r.run(main)
