"""The threads sync agents run in: given up at a deadline, never waited for at exit.

A sync agent (a plain function) blocks the thread it runs in, and a Python thread cannot be
killed. ``asyncio.to_thread`` runs it in the loop's default executor, which
``asyncio.run`` waits for when it closes the loop: a sync twin with a 1 s deadline and an
agent blocked for 4 s returned after 4 s. ``SyncWorkers`` runs such calls in daemon
threads of its own instead. When the call awaiting one is cancelled (a deadline, a stop
condition, the caller), the await ends at once with ``CancelledError``; a call not started
yet is dropped, and one already running is *abandoned*: its thread finishes it in the
background and its result is thrown away. The number of threads is bounded
(``max_workers``): once every thread holds an abandoned call, new sync calls wait in line,
so a stuck agent can exhaust the pool but never the process. ``abandoned`` counts the
threads still running an abandoned call (``DispatchReport.abandoned_threads``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from langgraph_fanout.errors import ConfigurationError

_QUEUED, _RUNNING, _DONE, _DROPPED = range(4)


class _Job:
    __slots__ = ("abandoned", "args", "context", "fn", "future", "loop", "state")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
    ) -> None:
        self.fn = fn
        self.args = args
        self.context = contextvars.copy_context()  # as ``to_thread``: the scope goes along
        self.loop = loop
        self.future = future
        self.state = _QUEUED
        self.abandoned = False


def _deliver(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class SyncWorkers:
    """A bounded pool of daemon threads for sync agents, whose calls can be given up.

    Threads are started as calls need them, up to ``max_workers``, and then kept (as
    ``ThreadPoolExecutor`` keeps its own); being daemons, they never hold up an exit.

    Args:
        max_workers: the most threads at once (``min(32, cpus + 4)`` by default, as
            ``asyncio.to_thread``'s executor).

    Raises:
        ConfigurationError: ``max_workers`` is not an int >= 1.

    Example:
        >>> workers = SyncWorkers(max_workers=4)
        >>> asyncio.run(workers.run(sum, [1, 2]))
        3
    """

    def __init__(self, *, max_workers: int | None = None) -> None:
        if max_workers is None:
            max_workers = min(32, (os.cpu_count() or 1) + 4)
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigurationError(f"max_workers must be an int >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        # Released by a thread when it is free, taken by a call it will serve (as
        # ThreadPoolExecutor does), so a thread is started only when none is free.
        self._idle = threading.Semaphore(0)
        self._abandoned = 0

    @property
    def abandoned(self) -> int:
        """Threads still running a call whose caller gave up on it."""
        return self._abandoned

    @property
    def threads(self) -> int:
        """Threads alive in the pool."""
        return self._threads

    async def run(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        """``fn(*args)`` in a worker thread, with the caller's context.

        Raises:
            asyncio.CancelledError: the caller was cancelled; ``fn`` is dropped if it had
                not started, else abandoned (its thread finishes it; the result is lost).
            BaseException: whatever ``fn`` raised.
        """
        loop = asyncio.get_running_loop()
        job = _Job(fn, args, loop, loop.create_future())
        self._jobs.put(job)
        if not self._idle.acquire(blocking=False):
            with self._lock:
                start = self._threads < self.max_workers
                self._threads += start
            if start:
                threading.Thread(
                    target=self._work, name="langgraph-fanout-sync-agent", daemon=True
                ).start()
        try:
            return await job.future
        except asyncio.CancelledError:
            with self._lock:
                if job.state == _QUEUED:
                    job.state = _DROPPED
                elif job.state == _RUNNING:
                    job.abandoned = True
                    self._abandoned += 1
            raise

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            with self._lock:
                dropped = job.state == _DROPPED
                if not dropped:
                    job.state = _RUNNING
            if dropped:
                self._idle.release()
                continue
            try:
                value, ok = job.context.run(job.fn, *job.args), True
            except BaseException as exc:  # delivered to the caller, whatever it is
                value, ok = exc, False
            with self._lock:
                job.state = _DONE
                abandoned = job.abandoned
                if abandoned:
                    self._abandoned -= 1
            if not abandoned:
                # A closed loop (RuntimeError): its caller is gone, nobody waits any more.
                with contextlib.suppress(RuntimeError):
                    job.loop.call_soon_threadsafe(_deliver, job.future, ok, value)
            del job, value  # hold nothing of a finished call while waiting for the next
            self._idle.release()


sync_workers = SyncWorkers()
"""The process's pool for sync agents (``SubAgent.ainvoke`` of a plain function)."""
