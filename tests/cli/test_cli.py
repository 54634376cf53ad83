"""The ``langgraph-fanout`` command line: runs, JSON lines, dry runs, exit codes, Ctrl-C."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from langgraph_fanout.cli import command as cli
from langgraph_fanout.cli.command import (
    EXIT_FAILURES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    main,
)
from langgraph_fanout.engine.plan import plan_dispatch
from langgraph_fanout.guards.breaker import BreakerConfig
from langgraph_fanout.guards.pricing import Price
from langgraph_fanout.testing import SIMULATED_MODEL_PRICES, SimulatedChatModel

PRICES = {
    name: Price(input_per_mtok=inp, output_per_mtok=out)
    for name, (inp, out) in SIMULATED_MODEL_PRICES.items()
}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def receipts(tmp_path: Path) -> Path:
    rows = [{"id": i, "text": f"receipt {i}: {'lunch' if i % 2 else 'taxi'}"} for i in range(8)]
    return write_jsonl(tmp_path / "receipts.jsonl", rows)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run(*args: str) -> int:
    """The exit code of ``langgraph-fanout run ARGS`` (argparse's own errors included)."""
    try:
        return main(["run", "--no-progress", *args])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else -1


# ------------------------------------------------------------------------------------- runs


def test_run_over_a_jsonl_file(receipts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run("--input", str(receipts), "--template", "Classify: {text}", "--max-cost", "0.5")
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "Results" in out and "Report" in out
    assert "8 finished of 8 planned" in out
    assert "Simulated answer to: Classify: receipt 3: lunch" in out
    assert "of $0.5000 budget" in out


def test_json_output_is_parsed_back(receipts: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    code = run(
        "-i", str(receipts), "-t", "Classify: {text}", "--max-cost", "0.5", "--json", str(target)
    )
    records = json_lines(target.read_text(encoding="utf-8"))
    results = [r for r in records if r["type"] == "result"]
    report = records[-1]
    assert code == EXIT_OK
    assert report["type"] == "report"
    assert sorted(r["index"] for r in results) == list(range(8))
    for r in results:
        assert r["status"] == "ok"
        assert r["output"] == f"Simulated answer to: Classify: {r['input']['text']}"
        assert r["input"]["id"] == r["item"] == r["index"]
    assert report["inputs"] == report["succeeded"] == report["planned_inputs"] == 8
    assert report["interrupted"] is False and report["exit_code"] == 0
    assert report["budget_usd"] == 0.5
    # The calls cut off in flight (at most the 2 running) were received by the provider:
    # each is billed its input, and the output it may have produced is counted uncertain.
    cut_off = report["total_spent_usd"] - sum(r["cost_usd"] for r in results)
    assert cut_off >= -1e-12
    worst = report["estimated_usd"] / len(results)  # prompts of one length: one worst case
    assert cut_off + report["uncertain_usd"] <= 2 * worst * 1.1
    assert (cut_off > 1e-12) == (report["uncertain_usd"] > 0)
    assert report["total_spent_usd"] > 0


def test_json_on_stdout_sends_the_tables_to_stderr(
    receipts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("-i", str(receipts), "-t", "{text}", "--json", "-") == EXIT_OK
    captured = capsys.readouterr()
    records = json_lines(captured.out)  # every stdout line is JSON
    assert [r["type"] for r in records] == ["result"] * 8 + ["report"]
    assert "Report" in captured.err


def test_csv_input_and_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "items.csv"
    table.write_text("id,text\n1,hello\n2,world\n", encoding="utf-8")
    assert run("-i", str(table), "-t", "{id}: {text}", "--json", "-") == EXIT_OK
    outputs = [r["output"] for r in json_lines(capsys.readouterr().out) if r["type"] == "result"]
    assert sorted(outputs) == ["Simulated answer to: 1: hello", "Simulated answer to: 2: world"]
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"text": "piped"}\n'))
    assert run("-t", "{text}", "--json", "-") == EXIT_OK
    assert json_lines(capsys.readouterr().out)[0]["output"] == "Simulated answer to: piped"


def test_samples_with_majority_vote_per_item(
    receipts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        *("-i", str(receipts), "-t", "{text}", "--samples", "5", "--aggregate", "majority_vote"),
        *("--model", "simulated:choices=food|travel,seed=3", "--json", "-"),
    )
    records = json_lines(capsys.readouterr().out)
    votes = [r for r in records if r["type"] == "aggregate"]
    assert code == EXIT_OK
    assert len([r for r in records if r["type"] == "result"]) == 40
    assert [v["scope"] for v in votes] == [f"item {i}" for i in range(8)]
    for vote in votes:
        assert vote["value"]["voters"] == 5
        assert vote["value"]["winner_key"] in {"food", "travel"}
        assert vote["value"]["support"] >= 3


def test_aggregate_over_the_whole_run(receipts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run("-i", str(receipts), "-t", "{text}", "-a", "collect_all", "--json", "-")
    records = json_lines(capsys.readouterr().out)
    (aggregate,) = [r for r in records if r["type"] == "aggregate"]
    assert code == EXIT_OK
    assert aggregate["scope"] == "all"
    assert len(aggregate["value"]) == 8


# ------------------------------------------------------------------------------ exit codes


def test_partial_failure_exits_1(receipts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run("-i", str(receipts), "-t", "{text}", "-m", "simulated:fail=1,fail_kind=bad_request")
    assert code == EXIT_FAILURES
    assert "8 agent_error" in capsys.readouterr().out


def test_everything_refused_by_the_budget_exits_3(
    receipts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run("-i", str(receipts), "-t", "{text}", "--max-cost", "0.0000001", "--json", "-")
    records = json_lines(capsys.readouterr().out)
    assert code == EXIT_REFUSED
    assert all(r["error_kind"] == "budget_exceeded" for r in records if r["type"] == "result")
    assert records[-1]["refused_usd"] > 0 and records[-1]["total_spent_usd"] == 0


def test_deadline_cancels_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = write_jsonl(tmp_path / "i.jsonl", [{"n": n} for n in range(6)])
    code = run(
        *("-i", str(items), "-t", "{n}", "-m", "simulated:latency=5", "--deadline", "0.2"),
    )
    out = capsys.readouterr().out
    assert code == EXIT_FAILURES
    assert "deadline of 0.2 s passed" in out
    assert "6 cancelled" in out


# ---------------------------------------------------------------------------------- dry run


def test_dry_run_prints_the_plan_and_calls_nothing(
    receipts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_calls(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a dry run must not dispatch")

    monkeypatch.setattr(cli, "_dispatch", no_calls)
    code = run(
        *("-i", str(receipts), "-t", "Classify: {text}", "--dry-run", "--json", "-"),
        *("--max-cost", "0.001", "--max-concurrent", "3", "-m", "simulated:latency=0.5"),
    )
    captured = capsys.readouterr()
    (plan,) = json_lines(captured.out)
    rows = [json.loads(line) for line in receipts.read_text().splitlines()]
    expected = plan_dispatch(
        "Classify: {text}", rows, agent=SimulatedChatModel(), prices=PRICES, latency_s=0.5
    )
    assert code == EXIT_OK
    assert plan["type"] == "plan"
    assert plan["calls"] == 8
    assert plan["max_cost_usd"] == pytest.approx(expected.max_cost_usd)
    assert plan["min_cost_usd"] < plan["max_cost_usd"]
    assert plan["parallel_wall_s"] == 3 * 0.5  # ceil(8 / 3) rounds of the simulated latency
    assert plan["sequential_wall_s"] == 8 * 0.5
    assert plan["budget_usd"] == 0.001
    assert "Plan (dry run: nothing was called)" in captured.err


def test_dry_run_of_a_provider_model_needs_no_key(
    receipts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = run(
        *("-i", str(receipts), "-t", "{text}", "--dry-run", "-m", "openai:gpt-4o-mini"),
        *("--max-tokens", "50", "--latency", "2"),
    )
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "gpt-4o-mini" in out and "50 per call" in out
    assert "~2.00s" in out  # ceil(8 / 10) = 1 round of 2 s


# ------------------------------------------------------------------------------ usage errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "Classify: {body}"], "--template needs {body} but line 1 of"),
        (["-t", "Classify: {text.upper}"], "--template: invalid input"),
        (["-t", "Classify this"], "--template has no {field}"),
        (["-t", "{text}", "--max-concurrent", "0"], "argument --max-concurrent: must be >= 1"),
        (["-t", "{text}", "--max-cost", "lots"], "argument --max-cost: expected a number"),
        (["-t", "{text}", "-m", "simulated:speed=2"], "option 'speed=2' is not key=value"),
        (["-t", "{text}", "-m", "simulated:latency=slow"], "latency must be a number"),
        (["-t", "{text}", "-a", "loudest"], "unknown aggregator 'loudest'"),
        (["-t", "{text}", "-m", "simulated:model=x", "--max-cost", "1"], "no price known"),
        (["-t", "{text}", "-m", "nosuchprovider:x"], "cannot create --model"),
        (["-t", "{text}", "--json", "/no/such/dir/out.jsonl"], "cannot write --json"),
        (["-t", "{text}", "--samples", "20000"], "samples must be an int >= 1 and <= 10000"),
        (["-t", "{text}", "--retries", "2000"], "max_retries must be an int >= 0 and <= 1000"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    receipts: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run("-i", str(receipts), *args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_bad_template_calls_nothing(receipts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("-i", str(receipts), "-t", "{missing}", "--json", "-") == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""  # no result, no report: nothing ran
    assert "(8 of 8 items lack a field)" in captured.err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "cannot read --input"),
        ("items.txt", "{}\n", "pass --format jsonl or --format csv"),
        ("items.jsonl", '{"text": "a"}\nnot json\n', "line 2 of"),
        ("items.jsonl", '["a list"]\n', "is a JSON list, not an object"),
        ("items.jsonl", "\n\n", "has no items"),
        ("items.csv", "a,b\n1,2,3\n", "more values than the header"),
    ],
)
def test_unreadable_inputs_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert run("-i", str(path), "-t", "{text}") == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_argparse_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == EXIT_USAGE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------- demo


def test_demo_command_prints_measured_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--latency", "0.01", "--json"]) == EXIT_OK
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["latency_s"] == 0.01
    assert numbers["semaphore_peak"] == 3
    assert numbers["quota_spent_usd"] <= numbers["quota_cap_usd"]
    assert numbers["cache_run2_usd"] == 0.0


# ------------------------------------------------------------------------------------ Ctrl-C


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX signals")
async def test_ctrl_c_prints_the_partial_report_and_exits_130(tmp_path: Path) -> None:
    items = write_jsonl(tmp_path / "items.jsonl", [{"n": n} for n in range(40)])
    target = tmp_path / "out.jsonl"
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "langgraph_fanout.cli", "run", "-i", str(items)),
        *("-t", "Item {n}", "-m", "simulated:latency=0.4", "--max-concurrent", "2"),
        *("--max-cost", "1", "--json", str(target)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # The first progress line comes with the first result: the run is under way.
        first = await asyncio.wait_for(proc.stderr.readline(), timeout=60)  # type: ignore[union-attr]
        assert first.startswith(b"progress: "), first
        proc.send_signal(signal.SIGINT)
        stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = stdout.decode()
    records = json_lines(target.read_text(encoding="utf-8"))
    results = [r for r in records if r["type"] == "result"]
    report = records[-1]
    assert proc.returncode == EXIT_INTERRUPTED
    assert "Partial report: interrupted (Ctrl-C)" in out
    assert "interrupted (Ctrl-C)" in report["stop_reason"]
    assert report["interrupted"] is True and report["exit_code"] == EXIT_INTERRUPTED
    # Every finished (paid) call is in the output: in the JSON lines and the table.
    assert 1 <= len(results) < 40
    assert report["inputs"] == len(results)
    assert f"{len(results)} finished of 40 planned" in out
    for r in results:
        assert f"Simulated answer to: Item {r['index']} " in out
    # The calls cut off in flight (at most the 2 running) were received by the provider:
    # each is billed its input, and the output it may have produced is counted uncertain.
    cut_off = report["total_spent_usd"] - sum(r["cost_usd"] for r in results)
    assert cut_off >= -1e-12
    worst = report["estimated_usd"] / len(results)  # prompts of one length: one worst case
    assert cut_off + report["uncertain_usd"] <= 2 * worst * 1.1
    assert (cut_off > 1e-12) == (report["uncertain_usd"] > 0)


@pytest.mark.parametrize(
    ("flags", "breaker", "retries"),
    [
        ((), BreakerConfig(), 2),
        (("--no-breaker", "--retries", "5"), None, 5),
        (("--breaker-rate", "0.25"), BreakerConfig(failure_rate=0.25), 2),
    ],
)
def test_retries_and_the_breaker_are_set_from_the_command_line(
    receipts: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: tuple[str, ...],
    breaker: BreakerConfig | None,
    retries: int,
) -> None:
    seen: list[Any] = []
    real = cli._dispatch

    async def spy(*args: Any) -> Any:
        seen.append(args[4])  # the ErrorRecoveryPolicy
        return await real(*args)

    monkeypatch.setattr(cli, "_dispatch", spy)
    assert run("-i", str(receipts), "-t", "Classify: {text}", *flags) == EXIT_OK
    (policy,) = seen
    assert (policy.breaker, policy.max_retries) == (breaker, retries)


@pytest.mark.parametrize(
    "flags",
    [("--breaker-rate", "2"), ("--breaker-rate", "0"), ("--no-breaker", "--breaker-rate", "0.5")],
)
def test_bad_breaker_flags_are_usage_errors(
    receipts: Path, flags: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("-i", str(receipts), "-t", "Classify: {text}", *flags) == EXIT_USAGE


def test_a_simulated_model_failing_2_percent_with_429s_answers_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: 285 of 1,000 ok and 709 circuit_open. 429s are backpressure, never an outage.
    rows = write_jsonl(tmp_path / "items.jsonl", [{"text": f"item {i}"} for i in range(300)])
    code = run("-i", str(rows), "-t", "{text}", "-m", "simulated:fail=0.02", "--json", "-")
    records = json_lines(capsys.readouterr().out)
    report = next(r for r in records if r["type"] == "report")
    assert "circuit_open" not in report["failures_by_kind"]
    assert report["breaker_openings"] == 0
    assert code in (EXIT_OK, EXIT_FAILURES)  # an input may still run out of its 3 attempts
    assert report["succeeded"] >= 299
