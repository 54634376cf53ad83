"""The ``langgraph-fanout`` command line: the deep dive, and dispatches over a file of items.

::

    langgraph-fanout demo [--latency SECONDS] [--json]
    langgraph-fanout run --input items.jsonl --template "Classify: {text}"
        [--model simulated | simulated:latency=0.2,fail=0.1,choices=a|b | openai:gpt-4o-mini]
        [--aggregate majority_vote] [--samples N] [--max-tokens N] [--price IN,OUT]
        [--max-cost USD] [--max-concurrent N] [--timeout S] [--deadline S] [--rps N]
        [--retries N] [--json PATH|-] [--dry-run [--latency S]] [--no-progress]

``run`` reads items (JSON objects, one a line, or CSV rows with a header) from a file or
stdin, renders the template with each, and dispatches them under the limits given as
flags, with a progress bar (done, failed, cost so far) on stderr and a results table and
report at the end. ``--json`` writes every result as it arrives, then the report, as JSON
lines. ``--dry-run`` prints the plan (cost range, wall-time estimate) and calls nothing.
A provider model (``provider:model``) is built with LangChain's ``init_chat_model`` with
``max_retries=0`` (the dispatch's policy owns retries); it needs the ``langchain`` package,
the provider's package and its API key.

Exit codes:
    0    every input succeeded (or the dry run was planned)
    1    some inputs failed, timed out, were skipped or cancelled (deadline)
    2    usage error: bad flags, unreadable input, a template that does not match the
         items, a model that cannot be built; one line on stderr says what to fix
    3    refused: every input was refused before any call (budget, unpriced model, limits)
    130  interrupted by Ctrl-C: calls in flight were cancelled and the partial results and
         report were printed (a second Ctrl-C quits at once, without them)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import io
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

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

from . import demo
from .agents import SubAgent
from .aggregate import aggregator_from
from .cost import Price, count_message_tokens, lookup_price
from .dispatch import Dispatcher
from .errors import CallCancelled, ConfigurationError, FanoutError, RefusedError
from .ledger import CostLedger
from .limits import DispatchResourceLimits
from .plan import DispatchPlan, plan_dispatch
from .prompts import PromptTemplate
from .recovery import ErrorRecoveryPolicy
from .report import DispatchReport, ReportBuilder
from .results import SubAgentResult
from .stopping import DispatchProgress, StopCondition
from .testing import FAILURE_KINDS, SIMULATED_MODEL_PRICES, SimulatedChatModel

__all__ = [
    "EXIT_FAILURES",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "UsageError",
    "main",
]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_INTERRUPTED = 130

_SIMULATED_KEYS = ("model", "seed", "latency", "fail", "fail_kind", "choices", "max_tokens")
_PROGRESS_EVERY_S = 1.0


class UsageError(Exception):
    """A problem with the command line or its inputs; the message says what to fix."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (not usage plus error) and exits with 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- arguments


def _number(kind: type[int] | type[float], low: float, *, above: bool = False) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if above else '>='} {low:g}, got {text}"
            )
        return value

    return parse


def _price(text: str) -> Price:
    try:
        inp, out = (float(part) for part in text.split(","))
        return Price(input_per_mtok=inp, output_per_mtok=out)
    except (ValueError, ConfigurationError):
        raise argparse.ArgumentTypeError(
            f"expected INPUT,OUTPUT in USD per million tokens (e.g. 0.15,0.60), got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    """The ``langgraph-fanout`` argument parser (subcommands ``demo`` and ``run``)."""
    parser = _Parser(
        prog="langgraph-fanout",
        description="Parallel LLM sub-agent dispatch with cost, concurrency and failure guards.",
        epilog="Exit codes: 0 all ok, 1 some inputs failed, 2 usage error, "
        "3 refused before any call, 130 interrupted (Ctrl-C).",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo.add_arguments(commands.add_parser("demo", help="the deep dive: when, how, why (offline)"))
    run = commands.add_parser("run", help="dispatch a template over items from a file or stdin")
    positive = _number(float, 0, above=True)
    run.add_argument("--input", "-i", default="-", metavar="PATH", help="JSONL or CSV; - = stdin")
    run.add_argument("--format", choices=("jsonl", "csv"), help="default: from the extension")
    run.add_argument("--template", "-t", required=True, help='e.g. "Classify: {text}"')
    run.add_argument(
        "--model",
        "-m",
        default="simulated",
        help="simulated[:key=value,...] (keys: " + ", ".join(_SIMULATED_KEYS) + ") "
        "or provider:model for init_chat_model, e.g. openai:gpt-4o-mini (default: simulated)",
    )
    run.add_argument("--aggregate", "-a", help="majority_vote, collect_all, best_result:KEY, ...")
    run.add_argument("--samples", type=_number(int, 1), default=1, help="calls per item")
    run.add_argument("--max-tokens", type=_number(int, 1), help="output cap per call")
    run.add_argument("--price", type=_price, help="IN,OUT USD per million tokens (override)")
    run.add_argument("--max-cost", type=_number(float, 0), metavar="USD", help="cost budget")
    run.add_argument("--max-concurrent", type=_number(int, 1), default=10, metavar="N")
    run.add_argument("--timeout", type=positive, metavar="S", help="per call attempt")
    run.add_argument("--deadline", type=positive, metavar="S", help="for the whole run")
    run.add_argument("--rps", type=positive, metavar="N", help="requests per second")
    run.add_argument("--retries", type=_number(int, 0), default=2, help="per call (default 2)")
    run.add_argument("--json", metavar="PATH", help="write results and report as JSON lines")
    run.add_argument("--dry-run", action="store_true", help="print the plan, call nothing")
    run.add_argument("--latency", type=positive, metavar="S", help="per-call latency to plan with")
    run.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``langgraph-fanout`` with ``argv`` (``sys.argv[1:]`` when ``None``).

    Returns:
        The exit code (see the module docstring).
    """
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return demo.run_from_args(args)
    try:
        return _run_command(args)
    except UsageError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the cause printed
        print(f"langgraph-fanout run: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("langgraph-fanout run: interrupted again: quit without a report", file=sys.stderr)
        return EXIT_INTERRUPTED


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Items:
    """Items read from a file, with where each came from (for error messages)."""

    rows: list[dict[str, Any]]
    where: list[str]
    source: str


def read_items(path: str, fmt: str | None = None) -> Items:
    """Read items: a JSON object per line (``.jsonl``/``.ndjson``) or CSV with a header.

    Raises:
        UsageError: the file cannot be read, its format is unknown, or an item is malformed.
    """
    source = "stdin" if path == "-" else path
    if fmt is None:
        suffix = Path(path).suffix.lower()
        fmt = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}.get(suffix)
        if path == "-":
            fmt = "jsonl"
        if fmt is None:
            raise UsageError(
                f"cannot tell the format of {path} from its extension: pass --format jsonl "
                "or --format csv"
            )
    try:
        if path == "-":
            if sys.stdin.isatty():
                raise UsageError("no --input given and stdin is a terminal: pass --input PATH")
            text = sys.stdin.read()
        else:
            text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read --input {path}: {exc.strerror or exc}") from None
    items = _parse_csv(text, source) if fmt == "csv" else _parse_jsonl(text, source)
    if not items.rows:
        raise UsageError(f"{source} has no items")
    return items


def _parse_jsonl(text: str, source: str) -> Items:
    rows: list[dict[str, Any]] = []
    where: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"line {number} of {source} is not JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise UsageError(
                f"line {number} of {source} is a JSON {type(value).__name__}, not an object "
                'with the template\'s fields (e.g. {"text": "..."})'
            )
        rows.append(value)
        where.append(f"line {number} of {source}")
    return Items(rows, where, source)


def _parse_csv(text: str, source: str) -> Items:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise UsageError(f"{source} has no CSV header row naming the fields")
    rows: list[dict[str, Any]] = []
    where: list[str] = []
    try:
        for row in reader:
            if None in row:
                raise UsageError(
                    f"line {reader.line_num} of {source} has more values than the header"
                )
            rows.append(dict(row))
            where.append(f"line {reader.line_num} of {source}")
    except csv.Error as exc:
        raise UsageError(f"line {reader.line_num} of {source} is not valid CSV: {exc}") from None
    return Items(rows, where, source)


def check_template(template: str, items: Items) -> PromptTemplate:
    """Parse the template and check that every item has its fields.

    Raises:
        UsageError: the template is invalid or does not match the items.
    """
    try:
        parsed = PromptTemplate.parse(template)
    except FanoutError as exc:
        raise UsageError(f"--template: {exc}") from None
    needed = parsed.names
    if not needed and len(items.rows) > 1:
        fields = ", ".join(sorted(items.rows[0])) or "none"
        raise UsageError(
            "--template has no {field}: every item would send the same prompt; "
            f"use the item fields ({fields}), e.g. {{{sorted(items.rows[0])[0]}}}"
            if items.rows[0]
            else "--template has no {field} and the items have no fields"
        )
    bad = [(i, needed - row.keys()) for i, row in enumerate(items.rows) if needed - row.keys()]
    if bad:
        i, missing = bad[0]
        names = ", ".join("{" + m + "}" for m in sorted(missing))
        has = ", ".join(sorted(items.rows[i])) or "no fields"
        raise UsageError(
            f"--template needs {names} but {items.where[i]} has {has} "
            f"({len(bad)} of {len(items.rows)} items lack a field): fix the template or the input"
        )
    return parsed


# --------------------------------------------------------------------------- models


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """The agent a run dispatches to, its prices and, for a simulated model, its latency."""

    agent: SubAgent
    prices: dict[str, Price]
    latency_s: float | None = None


def resolve_model(
    spec: str, *, max_tokens: int | None, price: Price | None, planning: bool
) -> ModelChoice:
    """Turn ``--model`` into an agent.

    Args:
        spec: ``simulated``, ``simulated:key=value,...`` or ``provider:model``.
        max_tokens: output cap per call (``--max-tokens``).
        price: a price override for the model (``--price``).
        planning: only plan: a provider model is described, not built (no key needed).

    Raises:
        UsageError: the spec is malformed or the model cannot be built.
    """
    name, _, options = spec.partition(":")
    if name.strip().lower() == "simulated":
        model = _simulated(options, max_tokens)
        prices = {
            n: Price(input_per_mtok=inp, output_per_mtok=out)
            for n, (inp, out) in SIMULATED_MODEL_PRICES.items()
        }
        if price is not None:
            prices[model.model_name] = price
        return ModelChoice(SubAgent.of(model), prices, model.latency_s)
    provider, model_id = (name, options) if options else (None, name)
    if not model_id:
        raise UsageError(f"--model {spec!r} names no model: use e.g. openai:gpt-4o-mini")
    prices = {model_id: price} if price is not None else {}
    if planning:
        described = SubAgent.of(
            _planning_only,
            name=spec,
            model=model_id,
            provider=provider,
            max_output_tokens=max_tokens,
        )
        return ModelChoice(described, prices)
    return ModelChoice(SubAgent.of(_init_chat_model(spec, max_tokens), provider=provider), prices)


def _planning_only(prompt: Any) -> NoReturn:  # pragma: no cover - never called by a plan
    raise RuntimeError("this agent only describes a model for --dry-run")


def _simulated(options: str, max_tokens: int | None) -> SimulatedChatModel:
    kwargs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in options.split(","))):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in _SIMULATED_KEYS:
            raise UsageError(
                f"--model simulated option {part!r} is not key=value with a key in "
                f"{', '.join(_SIMULATED_KEYS)}"
            )
        kwargs[key] = value.strip()
    args: dict[str, Any] = {
        "model_name": kwargs.get("model", "simulated-small"),
        "seed": _option(kwargs, "seed", int, 0),
        "latency_s": _option(kwargs, "latency", float, 0.0),
        "failure_rate": _option(kwargs, "fail", float, 0.0),
    }
    if "max_tokens" in kwargs:
        args["max_tokens"] = _option(kwargs, "max_tokens", int, 0)
    elif max_tokens is not None:
        args["max_tokens"] = max_tokens
    if "choices" in kwargs:
        args["choices"] = [c for c in kwargs["choices"].split("|") if c]
        if not args["choices"]:
            raise UsageError("--model simulated choices=... needs answers separated by |")
    kind = kwargs.get("fail_kind", "server_error")
    if kind not in FAILURE_KINDS:
        raise UsageError(f"--model simulated fail_kind must be one of {', '.join(FAILURE_KINDS)}")
    if not (0 <= args["failure_rate"] <= 1 and args["latency_s"] >= 0):
        raise UsageError("--model simulated needs latency >= 0 and 0 <= fail <= 1")
    if args.get("max_tokens", 1) < 1:
        raise UsageError("--model simulated max_tokens must be >= 1")
    return SimulatedChatModel(failure_kind=kind, **args)


def _option(options: Mapping[str, str], key: str, kind: type[Any], default: Any) -> Any:
    if key not in options:
        return default
    try:
        return kind(options[key])
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise UsageError(f"--model simulated {key} must be {what}, got {options[key]!r}") from None


def _init_chat_model(spec: str, max_tokens: int | None) -> Any:
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise UsageError(
            f"--model {spec} needs the langchain package and the provider's package: "
            "pip install langchain langchain-openai (or langchain-anthropic, ...)"
        ) from None
    extra: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
    try:
        # The dispatch's ErrorRecoveryPolicy owns retries; the SDK's own would double them.
        return init_chat_model(spec, max_retries=0, **extra)
    except ImportError as exc:
        raise UsageError(f"--model {spec}: {exc}") from None
    except Exception as exc:  # unknown provider, missing API key: the SDK says which
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot create --model {spec}: {first}") from None


# --------------------------------------------------------------------------- output helpers


def output_text(output: Any) -> Any:
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
        return f"#{value.index}: {_short(output_text(value.output))}"
    if isinstance(value, list):
        shown = ", ".join(describe(v) for v in value[:3])
        return f"[{shown}{', ...' if len(value) > 3 else ''}] ({len(value)})"
    if dataclasses.is_dataclass(value) and hasattr(value, "score") and hasattr(value, "result"):
        return f"{value.score:g} {describe(value.result)}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return _short(str(value) if not isinstance(value, BaseMessage) else value.text, 80)


def usd(amount: float) -> str:
    """Dollars with the precision small amounts need (LLM calls cost fractions of a cent)."""
    if amount == 0 or abs(amount) >= 1e-6:
        return f"${amount:.6f}"
    return f"${amount:.2e}"


def _short(value: Any, width: int = 48) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


class _JsonLines:
    """Writes one JSON object a line and flushes, so a killed run keeps what it wrote."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, record: Mapping[str, Any]) -> None:
        self._stream.write(json.dumps(jsonable(record), ensure_ascii=False) + "\n")
        self._stream.flush()


# --------------------------------------------------------------------------- progress


class _ProgressView:
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


@dataclass(slots=True)
class _Outcome:
    results: list[SubAgentResult]
    report: DispatchReport
    interrupted: bool


def _run_command(args: argparse.Namespace) -> int:
    items = read_items(args.input, args.format)
    check_template(args.template, items)
    choice = resolve_model(
        args.model, max_tokens=args.max_tokens, price=args.price, planning=args.dry_run
    )
    try:
        limits = DispatchResourceLimits(
            max_total_cost_usd=args.max_cost,
            max_concurrent=args.max_concurrent,
            max_agent_duration_s=args.timeout,
            max_total_duration_s=args.deadline,
            requests_per_second=args.rps,
        )
        aggregator = None if args.aggregate is None else aggregator_from(args.aggregate)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    agent = choice.agent
    if args.max_cost is not None and not args.dry_run and _price_of(agent, choice.prices) is None:
        raise UsageError(
            f"no price known for model {agent.model!r}, so --max-cost cannot be enforced: "
            "pass --price INPUT,OUTPUT (USD per million tokens)"
        )
    with _open_json(args.json) as sink:
        # With JSON on stdout, everything for people goes to stderr.
        human = sys.stderr if args.json == "-" else sys.stdout
        if args.dry_run:
            plan = plan_dispatch(
                args.template,
                items.rows,
                agent=agent,
                limits=limits,
                latency_s=args.latency or choice.latency_s or 1.0,
                prices=choice.prices,
                samples=args.samples,
            )
            _print_plan(plan, _console(human))
            if sink is not None:
                sink.write({"type": "plan", **plan.to_dict()})
            return EXIT_OK
        policy = ErrorRecoveryPolicy(max_retries=args.retries)
        outcome = asyncio.run(_dispatch(args, items, agent, limits, policy, choice.prices, sink))
        code = _exit_code(outcome)
        aggregates = _aggregate(aggregator, outcome.results, args.samples)
        console = _console(human)
        _print_results(outcome, args.samples, console)
        for label, value in aggregates:
            console.print(Text(f"{args.aggregate}{label}: {describe(value)}"))
        _print_report(outcome, len(items.rows) * args.samples, console)
        if sink is not None:
            for label, value in aggregates:
                sink.write(
                    {
                        "type": "aggregate",
                        "aggregate": args.aggregate,
                        "scope": label.strip(" ()") or "all",
                        "value": value,
                    }
                )
            sink.write(
                {
                    "type": "report",
                    **outcome.report.to_dict(),
                    "planned_inputs": len(items.rows) * args.samples,
                    "interrupted": outcome.interrupted,
                    "exit_code": code,
                }
            )
        return code


def _price_of(agent: SubAgent, prices: Mapping[str, Price]) -> Price | None:
    return agent.price or lookup_price(agent.model, provider=agent.provider, overrides=prices)


@contextlib.contextmanager
def _open_json(path: str | None) -> Iterator[_JsonLines | None]:
    if path is None:
        yield None
    elif path == "-":
        yield _JsonLines(sys.stdout)
    else:
        try:
            stream = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"cannot write --json {path}: {exc.strerror or exc}") from None
        with stream:
            yield _JsonLines(stream)


async def _dispatch(
    args: argparse.Namespace,
    items: Items,
    agent: SubAgent,
    limits: DispatchResourceLimits,
    policy: ErrorRecoveryPolicy,
    prices: Mapping[str, Price],
    sink: _JsonLines | None,
) -> _Outcome:
    loop = asyncio.get_running_loop()
    samples: int = args.samples
    # Our own ledger: the report keeps the run's totals even when Ctrl-C ends the stream.
    ledger = CostLedger(limits.max_total_cost_usd)
    recorder = _Recorder()
    dispatcher = Dispatcher(
        agent, limits=limits, policy=policy, prices=prices, ledger=ledger, stop=recorder
    )
    received: dict[int, SubAgentResult] = {}
    ok = 0
    total = len(items.rows) * samples
    view = _ProgressView(total, enabled=not args.no_progress, stream=sys.stderr)

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
                    "output": output_text(result.output),
                }
            )

    async def consume() -> None:
        # Closing the stream early cancels the calls in flight at once.
        stream = dispatcher.stream(args.template, items.rows, samples=samples)
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
    stop = "interrupted (Ctrl-C)" if interrupted else _stop_reason(results)
    report = builder.build(
        wall_time_s=loop.time() - started,
        stop_reason=stop,
        budget_usd=ledger.limit_usd,
        total_spent_usd=ledger.spent_usd,
        refused_usd=ledger.refused_usd,
        overshoot_usd=ledger.overshoot_usd,
    )
    return _Outcome(results, report, interrupted)


def _install_sigint(loop: asyncio.AbstractEventLoop, handler: Callable[[], None]) -> bool:
    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except (NotImplementedError, RuntimeError, ValueError):
        return False  # Windows or not the main thread: Ctrl-C raises KeyboardInterrupt
    return True


def _remove_sigint(loop: asyncio.AbstractEventLoop) -> None:
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.remove_signal_handler(signal.SIGINT)


def _stop_reason(results: Sequence[SubAgentResult]) -> str | None:
    for result in results:
        if isinstance(result.error, CallCancelled):
            return result.error.reason
    return None


def _exit_code(outcome: _Outcome) -> int:
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    results = outcome.results
    if all(r.ok for r in results):
        return EXIT_OK
    if all(isinstance(r.error, RefusedError) for r in results):
        return EXIT_REFUSED
    return EXIT_FAILURES


def _aggregate(
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


# --------------------------------------------------------------------------- printing


def _console(stream: IO[str]) -> Console:
    # Piped or redirected output gets room for a row per result instead of rich's 80 columns.
    return Console(file=stream, highlight=False, width=None if stream.isatty() else 120)


def _print_results(outcome: _Outcome, samples: int, console: Console) -> None:
    table = Table(title="Results", title_justify="left")
    table.add_column("#", justify="right")
    if samples > 1:
        table.add_column("item", justify="right")
    table.add_column("status")
    table.add_column("output / error", no_wrap=True, overflow="ellipsis")
    for name in ("cost $", "time s", "tries"):
        table.add_column(name, justify="right")
    for r in outcome.results:
        shown = _short(output_text(r.output)) if r.ok else f"{r.error_kind}: {_short(r.error, 40)}"
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


def _print_report(outcome: _Outcome, planned: int, console: Console) -> None:
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
    if report.total_spent_usd - own > 1e-12:
        cut = usd(report.total_spent_usd - own)
        rows.append(("cut off in flight", f"{cut} (their worst case: they may be billed)"))
    if report.refused_usd:
        rows.append(("refused (would cost)", usd(report.refused_usd)))
    if report.breaker_openings:
        rows.append(("breaker openings", str(report.breaker_openings)))
    if report.stop_reason:
        rows.append(("stopped", report.stop_reason))
    for what, value in rows:
        table.add_row(Text(what), Text(value))
    console.print(table)


def _print_plan(plan: DispatchPlan, console: Console) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
