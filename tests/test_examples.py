"""Every example runs offline, and the claims it prints hold on the values it returns."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from langgraph_fanout.cli.demo import DeepDive, run_deep_dive
from langgraph_fanout.errors import AgentError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Examples whose claims are checked one by one below; any other example is still run.
CHECKED = {
    "01_batch_processing.py",
    "02_multi_model_consensus.py",
    "03_parallel_search.py",
    "04_concurrency_control.py",
    "05_cost_protection.py",
    "06_idempotency.py",
    "07_error_recovery.py",
    "08_tree_recursion.py",
    "09_pipeline_branches.py",
    "10_fan_in.py",
    "11_agent_with_dispatch_tool.py",
    "12_graph_with_fanout_subgraph.py",
    "parallel_deep_dive.py",
}


def load(name: str) -> ModuleType:
    path = EXAMPLES / name
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered as an import would: LangGraph resolves a state TypedDict's postponed
    # annotations through sys.modules[cls.__module__] (example 12 defines one).
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def run(name: str) -> Any:
    return await load(name).main()


def all_examples() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.py"))


@pytest.mark.parametrize("name", all_examples())
def test_example_says_what_it_shows_and_the_line_to_change(name: str) -> None:
    doc = load(name).__doc__
    assert doc, f"{name} needs a docstring saying what it shows"
    summary = doc.strip().splitlines()[0]
    assert len(summary) > 20
    assert "Real model:" in doc, f"{name} must say which line to change for a real model"
    assert "max_retries=0" in doc or "langgraph-fanout run" in doc


async def test_every_other_example_runs() -> None:
    # Examples added later (graphs, tools...) run here until they get claims of their own.
    for name in all_examples():
        if name not in CHECKED:
            outcome = load(name).main()
            if inspect.isawaitable(outcome):
                await outcome


def test_checked_examples_exist() -> None:
    assert set(all_examples()) >= CHECKED


async def test_01_batch_processing(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("01_batch_processing.py")
    report = out["report"]
    assert report.inputs == report.succeeded == 20
    assert out["labels"] == {"food": 6, "travel": 8, "office": 6}
    assert out["model"].peak_in_flight == 10  # twenty calls, ten at a time
    assert out["speedup"] == pytest.approx(out["sequential"].wall_time_s / report.wall_time_s)
    assert report.spent_usd > 0
    assert f"{out['speedup']:.1f}x speedup" in capsys.readouterr().out


async def test_02_multi_model_consensus() -> None:
    out = await run("02_multi_model_consensus.py")
    vote = out["vote"]
    assert vote.voters == vote.valid_votes == 5
    assert (vote.winner_key, vote.support) == ("electronics", 4)
    assert out["report"].calls_started == 5
    early = out["early_vote"]
    assert early.winner_key == "electronics"
    assert early.decided_early
    # Voters start in waves: the ones the settled vote did not need were never started.
    assert out["early_report"].voters_not_needed == 5 - early.valid_votes >= 1
    assert out["early_report"].cancelled == out["early_report"].voters_not_needed


async def test_03_parallel_search() -> None:
    out = await run("03_parallel_search.py")
    ranked = out["ranked"]
    assert len(ranked) == out["report"].succeeded == 10
    assert ranked[0] == ("doc-02", 10.0)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert json.loads(out["best"].output.text)["doc"] == "doc-02"


async def test_04_concurrency_control() -> None:
    out = await run("04_concurrency_control.py")
    assert out["peak"] == out["model"].peak_in_flight == 3
    batches = out["batches"]
    assert sum(batches) == 10
    assert max(batches) == 3  # a batch can never exceed the cap...
    assert len(batches) >= 4  # ...so ten tasks need at least ceil(10 / 3) batches
    assert out["report"].succeeded == 10


async def test_05_cost_protection_ends_below_its_cap(capsys: pytest.CaptureFixture[str]) -> None:
    out = await run("05_cost_protection.py")
    assert out["spent_usd"] <= 0.05 + 1e-12
    assert out["spent_usd"] == pytest.approx(0.05)
    assert out["model_calls"] == out["model"].calls == 5
    assert out["refused"] == 995
    assert out["would_have_cost_usd"] == pytest.approx(10.0)
    assert "Would have cost $10.00, capped at $0.05" in capsys.readouterr().out


async def test_06_idempotency_second_run_is_served_from_the_cache() -> None:
    out = await run("06_idempotency.py")
    first, second = out["first"], out["second"]
    # Ten calls in all, as the simulator counted them: the second run made none.
    assert out["model_calls"] == out["model"].calls == 10
    assert second.cache_hits == 10
    assert second.spent_usd == 0.0 < first.spent_usd
    assert out["same_outputs"]
    assert out["speedup"] == pytest.approx(first.wall_time_s / second.wall_time_s)


async def test_07_error_recovery() -> None:
    out = await run("07_error_recovery.py")
    retried = out["retried"]
    assert retried.succeeded == 10
    assert retried.retries == 2
    backoff, told = out["waits"]
    assert backoff == 0.01 and 0.05 <= told <= 0.055  # the backoff, then the Retry-After
    fallback = out["fallback"]
    assert fallback.succeeded == fallback.fallbacks == 10
    assert out["agents_used"] == ["backup"] * 10
    assert fallback.breaker_openings == 1
    _, down, backup = out["models"]
    assert out["primary_calls"] == down.calls == 3  # the threshold; then the circuit is open
    assert backup.calls == 10


async def test_08_tree_recursion_sorts_with_8_parallel_leaves() -> None:
    out = await run("08_tree_recursion.py")
    assert out["sorted"]
    assert out["leaf_calls"] == out["leaves"] == 2**3
    assert out["depth_reached"] == 3
    assert out["leaf_sizes"] == [125] * 8  # the median pivot halves every list
    assert out["report"]["succeeded"] == 8
    # The speed-up it prints is measured in that run; tests assert structure, not time.


async def test_09_pipeline_finishes_without_its_failed_branch() -> None:
    out = await run("09_pipeline_branches.py")
    assert out["status"] == "ok"
    assert out["output"] == "Profile from geo, news"  # the aggregator got the two others
    assert [(r["stage"], r["branch"], r["agent"], r["status"]) for r in out["records"]] == [
        (0, None, "validate", "ok"),
        (1, 0, "geo", "ok"),
        (1, 1, "company", "error"),
        (1, 2, "news", "ok"),
        (2, None, "aggregate", "ok"),
    ]
    failed = out["results"][2]
    assert isinstance(failed.error, AgentError)
    assert (failed.error.status_code, failed.error.cause_type) == (500, "InternalServerError")
    assert out["company"].calls == 1  # retries off: the 500 was not retried
    report = out["report"]
    assert (report["succeeded"], report["failed"], report["retries"]) == (4, 1, 0)
    assert report["failures_by_kind"] == {"agent_error": 1}
    assert report["spent_usd"] > 0


async def test_10_fan_in_writer_gets_every_collected_output() -> None:
    out = await run("10_fan_in.py")
    assert len(out["collected"]) == 6  # 3 collectors x 2 topics
    prompt = out["writer_prompt"]
    for collector in ("web", "news", "papers"):
        for topic in ("solid-state batteries", "sodium-ion batteries"):
            assert f"3 facts on {topic} from {collector}" in prompt
    assert out["writer"].calls == 1
    assert out["answer"].startswith("Brief from 6 notes on solid-state")
    report = out["report"]
    assert report["calls_started"] == report["succeeded"] == 7  # the writer's call included
    by_agent = report["cost_by_agent"]
    assert set(by_agent) == {"web", "news", "papers", "writer"}
    assert report["spent_usd"] == pytest.approx(sum(by_agent.values()))
    assert report["spent_usd"] == pytest.approx(out["collectors_usd"] + by_agent["writer"])
    assert by_agent["writer"] > out["collectors_usd"] > 0  # one big-model call costs more


async def test_11_agent_tool_call_refused_by_the_budget() -> None:
    out = await run("11_agent_with_dispatch_tool.py")
    first, second = out["tool_messages"]
    spent = 2 * (30 * 10e-6 + 40 * 100e-6)
    assert first == (
        f"2/2 ok; spent ${spent:.4f} (run: ${spent:.4f} of $0.0120, ${0.012 - spent:.4f} left)\n"
        "[0] apparel\n[1] electronics"
    )
    assert second.startswith("refused: the cost budget of this run cannot cover the call")
    assert f"Spent ${spent:.4f} of $0.0120" in second
    assert out["final"].startswith("Shoes: apparel, laptop: electronics.")
    assert out["worker_calls"] == 2  # the refused call started no sub-agent
    assert out["spent_usd"] == pytest.approx(spent) and out["spent_usd"] <= 0.012


async def test_12_fan_out_subgraph_streams_progress_into_the_parent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = await run("12_graph_with_fanout_subgraph.py")
    events = out["events"]
    assert out["progress_events"] == len(events) == out["report"]["inputs"] == 4
    assert [e["done"] for e in events] == [1, 2, 3, 4]
    assert {(e["event"], e["graph"], e["total"], e["status"]) for e in events} == {
        ("item_done", "research", 4, "ok")
    }
    assert events[-1]["cost_usd_so_far"] == pytest.approx(out["report"]["spent_usd"])
    assert out["model"].calls == 4
    assert out["summary"] == (
        f"4/4 aspects for ${out['report']['spent_usd']:.6f}: notes on market size; "
        "notes on competitors; notes on regulation; notes on pricing"
    )
    assert "4 progress events" in capsys.readouterr().out


def test_deep_dive_script_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert load("parallel_deep_dive.py").main(["--latency", "0.01", "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["quota_spent_usd"] <= numbers["quota_cap_usd"]


async def test_deep_dive_prints_what_it_measured() -> None:
    lines: list[str] = []
    numbers = await run_deep_dive(latency_s=0.02, out=lines.append)
    text = "\n".join(lines)
    assert isinstance(numbers, DeepDive)
    for section in ("WHEN TO USE", "HOW PARALLEL DISPATCH WORKS", "WHY PARALLEL AGENTS"):
        assert section in text
    # WHEN
    assert numbers.batch_items == 20 and sum(numbers.batch_labels.values()) == 20
    assert f"Processed 20 receipts in {numbers.batch_wall_s:.2f}s" in text
    assert (numbers.vote_winner, numbers.vote_voters) == ("electronics", 5)
    assert f"Majority vote: electronics ({numbers.vote_support}/5 votes)" in text
    assert numbers.search_docs == 10 and numbers.search_top[0][0] == "doc-02"
    assert f"{numbers.overhead_ms_per_call:.2f} ms per call" in text
    # HOW
    assert numbers.semaphore_peak == 3
    assert sum(numbers.semaphore_batches) == 10 and max(numbers.semaphore_batches) == 3
    assert " -> ".join(f"[{b}]" for b in numbers.semaphore_batches) in text
    assert numbers.quota_spent_usd <= numbers.quota_cap_usd + 1e-12
    assert numbers.quota_would_cost_usd == pytest.approx(10.0)
    assert numbers.quota_calls_made == 5 and numbers.quota_refused == 995
    assert numbers.cache_hits == 10 and numbers.cache_run2_usd == 0.0 < numbers.cache_run1_usd
    assert numbers.screening_rejected == 1 and numbers.screening_redacted == 1
    # WHY
    assert numbers.speedup == pytest.approx(numbers.sequential_wall_s / numbers.parallel_wall_s)
    assert f"= {numbers.speedup:.1f}x speedup" in text
    assert numbers.ideal_speedup == 10.0
    assert numbers.ensemble_accuracy >= numbers.single_model_accuracy
    assert numbers.failsafe_answered == numbers.failsafe_inputs == numbers.failsafe_by_backup
    assert numbers.failsafe_breaker_openings == 1
    assert numbers.failsafe_primary_calls < numbers.failsafe_inputs
    assert numbers.model_calls > 0
    assert json.loads(json.dumps(numbers.to_dict()))["latency_s"] == 0.02


def test_examples_do_not_share_a_loop() -> None:
    # Each example is its own asyncio.run() program when run as a script.
    for name in CHECKED - {"parallel_deep_dive.py"}:
        assert "asyncio.run(main())" in (EXAMPLES / name).read_text()
    assert asyncio.iscoroutinefunction(load("05_cost_protection.py").main)
