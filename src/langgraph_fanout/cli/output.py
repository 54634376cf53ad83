"""What ``langgraph-fanout run`` writes: progress, tables for people, JSON lines for programs.

The progress view goes to stderr (a rich bar on a terminal, else a line a second); the
results, report and plan tables go to a rich ``Console``; ``JsonLines`` writes one record a
line, made JSON-ready by ``jsonable``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping
from typing import IO, Any

from langchain_core.messages import BaseMessage
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from langgraph_fanout.core.report import DispatchReport
from langgraph_fanout.core.results import SubAgentResult
from langgraph_fanout.engine.plan import DispatchPlan
from langgraph_fanout.errors import usd

_PROGRESS_EVERY_S = 1.0


# --------------------------------------------------------------------------- output helpers


@dataclasses.dataclass(slots=True)
class RunOutcome:
    """What a run produced: its results in input order, its report, whether Ctrl-C ended it."""

    results: list[SubAgentResult]
    report: DispatchReport
    interrupted: bool


def plain_output(output: Any) -> Any:
    """A result's output as JSON can hold it: a message's text, other values as they are."""
    if isinstance(output, BaseMessage):
        return output.text
    return output


def jsonable(value: Any) -> Any:
    """``value`` turned into plain JSON types (messages to text, dataclasses to dicts)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, BaseMessage):
        return value.text
    if isinstance(value, SubAgentResult):
        return {
            "index": value.index,
            "status": value.status.value,
            "output": jsonable(value.output),
        }
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        if "result" in fields and isinstance(fields["result"], SubAgentResult):
            fields["result"] = jsonable(fields["result"])  # a Scored item: keep it short
        return {k: jsonable(v) for k, v in fields.items()}
    return str(value)


def describe(value: Any) -> str:
    """A short human description of an aggregate."""
    if isinstance(value, SubAgentResult):
        return f"#{value.index}: {_short(plain_output(value.output))}"
    if isinstance(value, list):
        shown = ", ".join(describe(v) for v in value[:3])
        return f"[{shown}{', ...' if len(value) > 3 else ''}] ({len(value)})"
    if dataclasses.is_dataclass(value) and hasattr(value, "score") and hasattr(value, "result"):
        return f"{value.score:g} {describe(value.result)}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return _short(str(value) if not isinstance(value, BaseMessage) else value.text, 80)


def _short(value: Any, width: int = 48) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


class JsonLines:
    """Writes one JSON object a line and flushes, so a killed run keeps what it wrote."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, record: Mapping[str, Any]) -> None:
        self._stream.write(json.dumps(jsonable(record), ensure_ascii=False) + "\n")
        self._stream.flush()


# --------------------------------------------------------------------------- progress


class ProgressView:
    """Done / failed / cost so far on stderr: a rich bar on a terminal, else a line a second."""

    def __init__(self, total: int, *, enabled: bool, stream: IO[str]) -> None:
        self._total = total
        self._stream = stream
        self._bar: Progress | None = None
        self._last = -math.inf
        self._enabled = enabled
        if enabled and stream.isatty():
            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("dispatching"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("ok {task.fields[ok]}  failed {task.fields[failed]}"),
                TextColumn("${task.fields[cost]:.6f}"),
                TimeElapsedColumn(),
                console=Console(file=stream),
            )
            self._task = self._bar.add_task("run", total=total, ok=0, failed=0, cost=0.0)
            self._bar.start()
        self._started = time.perf_counter()

    def update(self, done: int, ok: int, cost: float, *, final: bool = False) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, ok=ok, failed=done - ok, cost=cost)
            return
        now = time.perf_counter()
        if not self._enabled or (not final and now - self._last < _PROGRESS_EVERY_S):
            return
        self._last = now
        print(
            f"progress: {done}/{self._total} done, {ok} ok, {done - ok} failed, "
            f"{usd(cost)} spent, {now - self._started:.1f}s",
            file=self._stream,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------- printing


def console_for(stream: IO[str]) -> Console:
    # Piped or redirected output gets room for a row per result instead of rich's 80 columns.
    return Console(file=stream, highlight=False, width=None if stream.isatty() else 120)


def print_results(outcome: RunOutcome, samples: int, console: Console) -> None:
    table = Table(title="Results", title_justify="left")
    table.add_column("#", justify="right")
    if samples > 1:
        table.add_column("item", justify="right")
    table.add_column("status")
    table.add_column("output / error", no_wrap=True, overflow="ellipsis")
    for name in ("cost $", "time s", "tries"):
        table.add_column(name, justify="right")
    for r in outcome.results:
        shown = _short(plain_output(r.output)) if r.ok else f"{r.error_kind}: {_short(r.error, 40)}"
        row = [str(r.index)]
        if samples > 1:
            row.append(str(r.index // samples))
        row += [
            r.status.value,
            shown,
            f"{r.cost_usd:.6f}",
            f"{r.duration_s:.2f}",
            str(len(r.attempts)),
        ]
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def print_report(outcome: RunOutcome, planned: int, console: Console) -> None:
    report = outcome.report
    title = "Report"
    if outcome.interrupted:
        title = f"Partial report: interrupted (Ctrl-C) after {report.inputs} of {planned} inputs"
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    failed = ", ".join(f"{n} {k}" for k, n in sorted(report.failures_by_kind.items()))
    budget = "" if report.budget_usd is None else f" of {usd(report.budget_usd)} budget"
    own = sum(r.cost_usd for r in outcome.results)
    rows = [
        ("inputs", f"{report.inputs} finished of {planned} planned"),
        ("ok", f"{report.succeeded} ({report.success_rate:.0%})"),
        ("not ok", failed or "none"),
        ("wall time", f"{report.wall_time_s:.2f}s"),
        ("parallelism", f"{report.parallelism:.1f} calls in flight on average"),
        ("latency p50 / p95", f"{report.latency_p50_s:.2f}s / {report.latency_p95_s:.2f}s"),
        ("cost", f"{usd(report.total_spent_usd)}{budget}"),
        ("tokens in / out", f"{report.input_tokens} / {report.output_tokens}"),
        ("retries / fallbacks", f"{report.retries} / {report.fallbacks}"),
    ]
    if report.total_spent_usd - own > 1e-12 or report.uncertain_usd:
        cut = usd(max(0.0, report.total_spent_usd - own))
        rows.append(
            (
                "cut off in flight",
                f"{cut} billed (their input), up to {usd(report.uncertain_usd)} more "
                "(output they may have produced: counted against the budget)",
            )
        )
    if report.refused_usd:
        rows.append(("refused (would cost)", usd(report.refused_usd)))
    if report.breaker_openings:
        rows.append(("breaker openings", str(report.breaker_openings)))
    if report.stop_reason:
        rows.append(("stopped", report.stop_reason))
    for what, value in rows:
        table.add_row(Text(what), Text(value))
    console.print(table)


def print_plan(plan: DispatchPlan, console: Console) -> None:
    table = Table(
        title="Plan (dry run: nothing was called)", title_justify="left", show_header=False
    )
    table.add_column("what")
    table.add_column("value")
    if plan.min_cost_usd is None or plan.max_cost_usd is None:
        cost = f"unknown: no price for {plan.model!r} (pass --price IN,OUT)"
    else:
        cost = f"{usd(plan.min_cost_usd)} (prompts only) to {usd(plan.max_cost_usd)} (worst case)"
    rows = [
        ("calls", str(plan.calls)),
        ("model", str(plan.model)),
        ("prompt tokens", f"{plan.prompt_tokens} in all"),
        ("max output tokens", f"{plan.max_output_tokens} per call"),
        ("cost range", cost),
    ]
    if plan.budget_usd is not None:
        rows.append(
            (
                "budget",
                f"{usd(plan.budget_usd)}: {plan.calls_within_budget} of {plan.calls} "
                "calls fit at their worst case",
            )
        )
    rows += [
        (
            "wall estimate",
            f"~{plan.parallel_wall_s:.2f}s at max_concurrent={plan.max_concurrent} "
            f"vs ~{plan.sequential_wall_s:.2f}s one at a time ({plan.speedup:.1f}x)",
        ),
        ("assumed latency", f"{plan.latency_s:g}s per call (--latency)"),
        ("recommended", f"--max-concurrent {plan.recommended_max_concurrent}"),
        ("break-even", "parallel pays off" if plan.pays_off else "no gain: one call, or one slot"),
    ]
    for what, value in rows:
        table.add_row(Text(what), Text(value))
    console.print(table)
