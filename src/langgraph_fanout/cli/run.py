"""The dispatch behind ``langgraph-fanout run``: results as they arrive, and Ctrl-C.

``dispatch_items`` streams the run, writing each result as it arrives and updating the
progress view; the first Ctrl-C cancels the calls in flight and keeps every finished
result for the partial report (a second one quits at once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langgraph_fanout.cli.inputs import Items
from langgraph_fanout.cli.output import JsonLines, ProgressView, RunOutcome, plain_output
from langgraph_fanout.core.report import DispatchReport, ReportBuilder
from langgraph_fanout.core.results import SubAgentResult
from langgraph_fanout.core.stopping import DispatchProgress, StopCondition
from langgraph_fanout.engine.agents import SubAgent
from langgraph_fanout.engine.dispatch import Dispatcher
from langgraph_fanout.engine.run import build_report
from langgraph_fanout.guards.ledger import CostLedger
from langgraph_fanout.guards.limits import DispatchResourceLimits
from langgraph_fanout.guards.pricing import Price
from langgraph_fanout.guards.recovery import ErrorRecoveryPolicy
from langgraph_fanout.guards.tokens import count_message_tokens

# --------------------------------------------------------------------------- run


class _Recorder(StopCondition):
    """Never stops; keeps the engine's progress, whose ``finished`` lists every result as
    the engine records it, before the stream delivers it. Ctrl-C cancels the stream, and
    results recorded but not yet delivered at that moment are recovered from here, so no
    finished (paid) call is missing from the output."""

    def __init__(self) -> None:
        self.progress: DispatchProgress | None = None

    def __call__(self, progress: DispatchProgress) -> str | None:
        self.progress = progress
        return None

    def finished(self) -> list[SubAgentResult]:
        return [] if self.progress is None else list(self.progress.finished)


async def dispatch_items(
    args: argparse.Namespace,
    items: Items,
    agent: SubAgent,
    limits: DispatchResourceLimits,
    policy: ErrorRecoveryPolicy,
    prices: Mapping[str, Price],
    sink: JsonLines | None,
) -> RunOutcome:
    loop = asyncio.get_running_loop()
    samples: int = args.samples
    # Our own ledger: the report keeps the run's totals even when Ctrl-C ends the stream.
    ledger = CostLedger(limits.max_total_cost_usd)
    recorder = _Recorder()
    dispatcher = Dispatcher(
        agent, limits=limits, policy=policy, prices=prices, ledger=ledger, stop=recorder
    )
    received: dict[int, SubAgentResult] = {}
    reports: list[DispatchReport] = []  # the engine's own, when the stream ran to its end
    ok = 0
    total = len(items.rows) * samples
    view = ProgressView(total, enabled=not args.no_progress, stream=sys.stderr)

    def take(result: SubAgentResult) -> None:
        nonlocal ok
        received[result.index] = result
        ok += result.ok
        if sink is not None:
            item = result.index // samples
            sink.write(
                {
                    "type": "result",
                    "item": item,
                    "input": items.rows[item],
                    **result.to_dict(),
                    "output": plain_output(result.output),
                }
            )

    async def consume() -> None:
        # Closing the stream early cancels the calls in flight at once.
        stream = dispatcher.stream(
            args.template, items.rows, samples=samples, on_report=reports.append
        )
        async with contextlib.aclosing(stream) as results:
            async for result in results:
                take(result)
                view.update(len(received), ok, ledger.spent_usd)

    # tiktoken loads its encoding on first use, blocking the loop for a moment: do it now,
    # before the clock starts, rather than inside the first call.
    count_message_tokens("warm-up", agent.model)
    started = loop.time()
    task = asyncio.create_task(consume())
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()
        # A second Ctrl-C gets Python's default: KeyboardInterrupt, quit at once.
        _remove_sigint(loop)

    installed = _install_sigint(loop, interrupt)
    try:
        await asyncio.wait([task])
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.wait([task])
        raise
    finally:
        if installed:
            _remove_sigint(loop)
        view.update(len(received), ok, ledger.spent_usd, final=True)
        view.close()
    if not interrupted:
        task.result()  # an unexpected error surfaces here
    for result in recorder.finished():
        if result.index not in received:  # recorded, but the stream was cancelled first
            take(result)
    results = [received[i] for i in sorted(received)]
    builder = ReportBuilder()
    for result in results:
        builder.add(result)
    if interrupted:
        stop: str | None = "interrupted (Ctrl-C)"
    else:
        stop = reports[0].stop_reason if reports else None
    report = build_report(builder, ledger, wall_time_s=loop.time() - started, stop_reason=stop)
    return RunOutcome(results, report, interrupted)


def _install_sigint(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> bool:
    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except (NotImplementedError, RuntimeError, ValueError):
        return False  # Windows or not the main thread: Ctrl-C raises KeyboardInterrupt
    return True


def _remove_sigint(loop: asyncio.AbstractEventLoop) -> None:
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.remove_signal_handler(signal.SIGINT)


def aggregate_results(
    aggregator: Callable[[Sequence[SubAgentResult]], Any] | None,
    results: Sequence[SubAgentResult],
    samples: int,
) -> list[tuple[str, Any]]:
    """The aggregate over the whole run, or over each item's samples when ``samples > 1``."""
    if aggregator is None:
        return []
    if samples == 1:
        return [("", aggregator(results))]
    groups: dict[int, list[SubAgentResult]] = {}
    for result in results:
        groups.setdefault(result.index // samples, []).append(result)
    return [(f" (item {item})", aggregator(group)) for item, group in sorted(groups.items())]
