"""One run shared by threads, each with its own event loop, and the sync twin's deadline."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from langgraph_fanout import (
    ConfigurationError,
    Dispatcher,
    DispatchResourceLimits,
    SharedRun,
    SubAgent,
    dispatch_agents_sync,
)
from langgraph_fanout.engine.threads import SyncWorkers, sync_workers
from langgraph_fanout.guards.limits import Slots


class Peak:
    """Calls in flight across every thread, and the most seen at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = self.calls = 0

    async def agent(self, prompt: str) -> str:
        with self.lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
        try:
            # Yield to the loop a few times: other calls of this loop and other threads'
            # loops run meanwhile (a real call is in flight here).
            for _ in range(3):
                await asyncio.sleep(0)
            sum(range(2_000))  # hold the GIL briefly, as a parsing agent would
            return prompt.upper()
        finally:
            with self.lock:
                self.now -= 1


def test_threads_share_one_run_without_deadlock_and_one_cap_holds() -> None:
    # 8 threads x 25 dispatches of 8 inputs = 200 dispatches on one SharedRun.
    peak = Peak()
    agent = SubAgent.of(peak.agent, name="echo", cost_per_call_usd=0.001)
    cap = 0.5  # room for 500 of the 1,600 calls: the budget must refuse the rest
    limits = DispatchResourceLimits(max_concurrent=4, max_total_cost_usd=cap)
    run = SharedRun.create(limits)
    done: list[int] = []
    outcomes: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(25):
                dispatcher = Dispatcher(agent, limits=limits, run=run)
                # Each thread runs its own event loop, as a sync caller does.
                result = asyncio.run(dispatcher.run("say {x}", [{"x": f"w{i}"} for i in range(8)]))
                outcomes.append((result.report.succeeded, len(result.results)))
                done.append(1)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), f"deadlock: {len(done)}/200 dispatches done"
    assert len(done) == 200
    assert all(n == 8 for _, n in outcomes)  # every input ends as exactly one result
    assert peak.peak <= 4, f"{peak.peak} calls in flight across threads, cap 4"
    assert sum(ok for ok, _ in outcomes) == peak.calls == 500
    assert run.ledger.spent_usd == pytest.approx(cap)
    # Every attempt counted once across the threads (a refused one too: it is counted
    # before the budget is asked), no update lost.
    assert run.agents_started == 1600


async def _hold(slots: Slots, entered: threading.Event, leave: threading.Event) -> None:
    await slots.acquire()
    entered.set()
    await asyncio.to_thread(leave.wait)
    slots.release()


def test_slots_hand_over_across_event_loops_in_order() -> None:
    slots = Slots(1)
    entered, leave = threading.Event(), threading.Event()
    order: list[str] = []

    def holder() -> None:
        asyncio.run(_hold(slots, entered, leave))

    def waiter(name: str, queued: threading.Event) -> None:
        async def main() -> None:
            task = asyncio.ensure_future(slots.acquire())
            await asyncio.sleep(0)
            queued.set()
            await task
            order.append(name)
            slots.release()

        asyncio.run(main())

    h = threading.Thread(target=holder)
    h.start()
    assert entered.wait(10)
    waiters = []
    for name in ("a", "b", "c"):
        queued = threading.Event()
        t = threading.Thread(target=waiter, args=(name, queued))
        t.start()
        assert queued.wait(10)
        waiters.append(t)
    leave.set()
    for t in [h, *waiters]:
        t.join(10)
        assert not t.is_alive()
    assert order == ["a", "b", "c"]  # FIFO across loops
    assert slots.available == 1


def test_a_waiter_cancelled_after_the_hand_over_passes_the_slot_on() -> None:
    async def main() -> None:
        slots = Slots(1)
        await slots.acquire()
        first = asyncio.ensure_future(slots.acquire())
        second = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # handed to ``first``...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 5)  # the slot went on to the next in line
        slots.release()
        assert slots.available == 1

    asyncio.run(main())


def test_the_sync_twin_returns_at_its_deadline_while_a_sync_agent_still_blocks() -> None:
    release, finished = threading.Event(), threading.Event()

    def blocking(prompt: str) -> str:  # a sync agent stuck in I/O
        try:
            release.wait(30)
            return prompt
        finally:
            finished.set()

    box: list[Any] = []
    limits = DispatchResourceLimits(max_total_duration_s=0.2)

    def caller() -> None:
        box.append(
            dispatch_agents_sync("x {n}", [{"n": 1}, {"n": 2}], agent=blocking, limits=limits)
        )

    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    thread.join(20)
    try:
        # It returned although the agent is still blocked: the loop did not wait for it.
        assert not thread.is_alive() and not release.is_set()
        (result,) = box
        assert [r.status.value for r in result.results] == ["cancelled", "cancelled"]
        assert result.report.abandoned_threads >= 2
        assert sync_workers.abandoned >= 2
        assert "sync-agent threads abandoned" in result.report.summary()
    finally:
        release.set()
    assert finished.wait(10)
    for _ in range(1_000):  # the thread decrements the count right after the call ends
        if sync_workers.abandoned == 0:
            break
        threading.Event().wait(0.01)
    assert sync_workers.abandoned == 0


def test_a_sync_call_cancelled_before_a_thread_takes_it_never_runs() -> None:
    workers = SyncWorkers(max_workers=1)
    gate, ran = threading.Event(), []

    async def main() -> None:
        first = asyncio.ensure_future(workers.run(gate.wait, 10))
        second = asyncio.ensure_future(workers.run(ran.append, "second ran"))
        await asyncio.sleep(0.01)
        second.cancel()  # still queued behind the first: dropped, not abandoned
        with pytest.raises(asyncio.CancelledError):
            await second
        assert workers.abandoned == 0
        gate.set()
        assert await first is True
        assert await workers.run(sum, [1, 2, 3]) == 6
        with pytest.raises(ZeroDivisionError):
            await workers.run(divmod, 1, 0)

    asyncio.run(main())
    assert ran == [] and workers.threads == 1
    with pytest.raises(ConfigurationError, match="max_workers"):
        SyncWorkers(max_workers=0)
