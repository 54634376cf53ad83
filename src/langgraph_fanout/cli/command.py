"""The ``langgraph-fanout`` command line: the deep dive, and dispatches over a file of items.

::

    langgraph-fanout demo [--latency SECONDS] [--json]
    langgraph-fanout run --input items.jsonl --template "Classify: {text}"
        [--model simulated | simulated:latency=0.2,fail=0.1,choices=a|b | openai:gpt-4o-mini]
        [--aggregate majority_vote] [--samples N] [--max-tokens N] [--price IN,OUT]
        [--max-cost USD] [--max-concurrent N] [--timeout S] [--deadline S] [--rps N]
        [--retries N] [--no-breaker | --breaker-rate R] [--json PATH|-]
        [--dry-run [--latency S]] [--no-progress]

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
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from rich.text import Text

from langgraph_fanout.aggregate.aggregators import aggregator_from
from langgraph_fanout.cli import demo
from langgraph_fanout.cli.inputs import (
    SIMULATED_KEYS,
    UsageError,
    check_template,
    read_items,
    resolve_model,
)
from langgraph_fanout.cli.output import (
    JsonLines,
    RunOutcome,
    console_for,
    describe,
    print_plan,
    print_report,
    print_results,
)
from langgraph_fanout.cli.run import aggregate_results
from langgraph_fanout.cli.run import dispatch_items as _dispatch
from langgraph_fanout.engine.estimate import CostEstimator
from langgraph_fanout.engine.plan import plan_dispatch
from langgraph_fanout.errors import ConfigurationError, RefusedError
from langgraph_fanout.guards.breaker import BreakerConfig
from langgraph_fanout.guards.limits import DispatchResourceLimits
from langgraph_fanout.guards.pricing import Price
from langgraph_fanout.guards.recovery import ErrorRecoveryPolicy

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (not usage plus error) and exits with 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- arguments


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], got {text!r}")
    return value


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
        help="simulated[:key=value,...] (keys: " + ", ".join(SIMULATED_KEYS) + ") "
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
    breaker = run.add_mutually_exclusive_group()
    breaker.add_argument(
        "--no-breaker", action="store_true", help="call the model without a circuit breaker"
    )
    breaker.add_argument(
        "--breaker-rate",
        type=_share,
        metavar="R",
        help="open the breaker at this outage rate (default 0.5, over >= 20 calls in 30 s)",
    )
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
    except (UsageError, ConfigurationError) as exc:
        # A bad option found past argparse (an out-of-domain --samples or --retries) is
        # the same kind of mistake as one argparse finds.
        message = " ".join(str(exc).split())  # one line, whatever the cause printed
        print(f"langgraph-fanout run: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("langgraph-fanout run: interrupted again: quit without a report", file=sys.stderr)
        return EXIT_INTERRUPTED


# --------------------------------------------------------------------------- run


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
    priced = CostEstimator(default_max_output_tokens=1, prices=choice.prices).price(agent)
    if args.max_cost is not None and not args.dry_run and priced is None:
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
            print_plan(plan, console_for(human))
            if sink is not None:
                sink.write({"type": "plan", **plan.to_dict()})
            return EXIT_OK
        breaker_config: BreakerConfig | None = BreakerConfig()
        if args.no_breaker:
            breaker_config = None
        elif args.breaker_rate is not None:
            breaker_config = BreakerConfig(failure_rate=args.breaker_rate)
        policy = ErrorRecoveryPolicy(max_retries=args.retries, breaker=breaker_config)
        outcome = asyncio.run(_dispatch(args, items, agent, limits, policy, choice.prices, sink))
        code = _exit_code(outcome)
        aggregates = aggregate_results(aggregator, outcome.results, args.samples)
        console = console_for(human)
        print_results(outcome, args.samples, console)
        for label, value in aggregates:
            console.print(Text(f"{args.aggregate}{label}: {describe(value)}"))
        print_report(outcome, len(items.rows) * args.samples, console)
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


@contextlib.contextmanager
def _open_json(path: str | None) -> Iterator[JsonLines | None]:
    if path is None:
        yield None
    elif path == "-":
        yield JsonLines(sys.stdout)
    else:
        try:
            stream = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise UsageError(f"cannot write --json {path}: {exc.strerror or exc}") from None
        with stream:
            yield JsonLines(stream)


def _exit_code(outcome: RunOutcome) -> int:
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    results = outcome.results
    if all(r.ok for r in results):
        return EXIT_OK
    if all(isinstance(r.error, RefusedError) for r in results):
        return EXIT_REFUSED
    return EXIT_FAILURES
