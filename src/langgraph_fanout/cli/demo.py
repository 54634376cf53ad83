"""The deep dive: when, how and why to run sub-agents in parallel, measured in one run.

``langgraph-fanout demo`` (and ``make demo``, ``python examples/parallel_deep_dive.py``)
walks through the sections of the seed's deep dive with live dispatches on simulated
models (``SimulatedChatModel``: seeded answers, fixed latency, made-up prices), offline.
Nothing printed is typed in: every time, cost, count and speedup is measured in the run
that prints it, so a slower machine prints slower numbers. ``run_deep_dive`` returns the
same numbers as a ``DeepDive`` for tests and scripts.

Example:
    >>> numbers = asyncio.run(run_deep_dive(latency_s=0.02))
    >>> numbers.quota_spent_usd <= numbers.quota_cap_usd
    True
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from langgraph_fanout.cli import demo_sections as sections
from langgraph_fanout.cli.demo_runner import Out, Runner
from langgraph_fanout.guards.tokens import count_message_tokens
from langgraph_fanout.testing import SimulatedChatModel


@dataclass(frozen=True, slots=True, kw_only=True)
class DeepDive:
    """Every number the deep dive printed, as measured in its run (times in seconds)."""

    latency_s: float
    # WHEN
    batch_items: int
    batch_wall_s: float
    batch_labels: dict[str, int]
    batch_cost_usd: float
    vote_voters: int
    vote_winner: str
    vote_support: int
    vote_wall_s: float
    search_docs: int
    search_wall_s: float
    search_top: list[tuple[str, float]]
    overhead_ms_per_call: float
    # HOW
    semaphore_tasks: int
    semaphore_max: int
    semaphore_wall_s: float
    semaphore_batches: list[int]
    semaphore_peak: int
    quota_calls_planned: int
    quota_cap_usd: float
    quota_spent_usd: float
    quota_would_cost_usd: float
    quota_calls_made: int
    quota_refused: int
    cache_run1_s: float
    cache_run2_s: float
    cache_run1_usd: float
    cache_run2_usd: float
    cache_hits: int
    screening_rejected: int
    screening_redacted: int
    rate_calls: int
    rate_rps: float
    rate_wall_s: float
    # WHY
    speedup_items: int
    speedup_max_concurrent: int
    parallel_wall_s: float
    sequential_wall_s: float
    speedup: float
    ideal_speedup: float
    ensemble_voters: int
    ensemble_questions: int
    single_model_accuracy: float
    best_single_accuracy: float
    ensemble_accuracy: float
    failsafe_inputs: int
    failsafe_answered: int
    failsafe_by_backup: int
    failsafe_primary_calls: int
    failsafe_breaker_openings: int
    total_wall_s: float
    model_calls: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every number."""
        return asdict(self)


# --------------------------------------------------------------------------- entry points


async def run_deep_dive(*, latency_s: float = 0.04, out: Out = print) -> DeepDive:
    """Run every section, print it through ``out`` and return the measured numbers.

    Args:
        latency_s: simulated latency of one model call (the demo's time scale).
        out: where lines go (``print`` by default; a list's ``append`` to capture them).

    Example:
        >>> numbers = asyncio.run(run_deep_dive(latency_s=0.02, out=lambda line: None))
        >>> numbers.semaphore_peak
        3
    """
    started = time.perf_counter()
    # Load the tokenizer before anything is timed: the first budget estimate would pay it.
    count_message_tokens("warm-up", "gpt-4o")
    await SimulatedChatModel().ainvoke("warm-up")
    run = Runner(out, latency_s)
    out(f"Parallel agents deep dive on simulated models ({latency_s * 1000:.0f} ms a call,")
    out("made-up prices). Every number below is measured in this run.")
    numbers: dict[str, Any] = {"latency_s": latency_s}
    run.title("WHEN TO USE PARALLEL AGENTS")
    numbers |= await sections.batch_processing(run)
    numbers |= await sections.consensus_vote(run)
    numbers |= await sections.parallel_search(run)
    numbers |= await sections.anti_patterns(run)
    run.title("HOW PARALLEL DISPATCH WORKS")
    numbers |= await sections.semaphore_control(run)
    quota = await sections.quota_protection(run)
    numbers |= quota
    numbers |= await sections.idempotency_cache(run)
    numbers |= await sections.security_screening(run)
    run.title("WHY PARALLEL AGENTS ARE POWERFUL")
    numbers |= await sections.parallel_speedup(run)
    numbers |= await sections.ensemble_intelligence(run)
    numbers |= await sections.fail_safe(run, quota)
    run.heading("BENEFIT 4: Aggregation")
    run.line("collect_all (receipts), majority_vote (consensus, ensemble),")
    run.line("rank_by_metric and best_result (search): all shown above on live results.")
    total = time.perf_counter() - started
    calls = sum(m.calls for m in run.models)
    out("")
    out(f"Done in {total:.1f}s: {len(run.reports)} dispatches, {calls} model calls.")
    return DeepDive(**numbers, total_wall_s=total, model_calls=calls)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the deep dive from the command line; returns the exit code (0).

    Args:
        argv: ``[--latency SECONDS] [--json]``; ``sys.argv[1:]`` when ``None``.
    """
    parser = argparse.ArgumentParser(
        prog="langgraph-fanout demo",
        description="When, how and why to run sub-agents in parallel, measured offline.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_from_args(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The deep dive's options (shared with ``langgraph-fanout demo``)."""
    parser.add_argument(
        "--latency",
        type=_positive_seconds,
        default=0.04,
        metavar="SECONDS",
        help="simulated latency of one model call (default 0.04)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the measured numbers as one JSON object"
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run the deep dive for parsed arguments; returns the exit code."""
    if args.json:
        numbers = asyncio.run(run_deep_dive(latency_s=args.latency, out=lambda _: None))
        print(json.dumps(numbers.to_dict()))
    else:
        asyncio.run(run_deep_dive(latency_s=args.latency))
    return 0


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value <= 10:
        raise argparse.ArgumentTypeError(f"must be in (0, 10] seconds, got {text}")
    return value


if __name__ == "__main__":
    sys.exit(main())
