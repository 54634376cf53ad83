"""The served graphs under a real ``langgraph dev`` server, driven through ``langgraph-sdk``.

One server (in-memory runtime, offline) starts per module on a free loopback port and is
stopped by its process id. Each graph runs with ``runs.wait`` or ``runs.stream``, the
default simulated model (priced, so reports show real numbers) and per-run settings.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.schema import Config
from pydantic import ValidationError

FOLDER = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def served() -> ModuleType:
    """``fanout_graphs`` imported from this folder (at test time, not at collection: its
    import loads tiktoken's encodings, which other test modules may want to see unloaded)."""
    name = "fanout_graphs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FOLDER / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pydantic resolves the settings' annotations through it
        spec.loader.exec_module(module)
    return sys.modules[name]


# -- the module, in process ----------------------------------------------------------------


def test_settings_come_from_configurable_and_ignore_server_keys(served: ModuleType) -> None:
    settings = served.RunSettings.of(
        {"configurable": {"n_voters": 3, "max_cost_usd": 0.5, "thread_id": "t", "run_id": "r"}}
    )
    assert (settings.n_voters, settings.max_cost_usd, settings.model) == (3, 0.5, "simulated")
    limits = settings.guards()["limits"]
    assert (limits.max_total_cost_usd, limits.max_concurrent) == (0.5, 10)


def test_bad_settings_are_refused_with_the_key_named(served: ModuleType) -> None:
    with pytest.raises(ValidationError, match="n_voters"):
        served.RunSettings.of({"configurable": {"n_voters": 0}})
    with pytest.raises(ValidationError, match="combine"):
        served.RunSettings.of({"configurable": {"combine": "vote"}})
    # Out of the library's domain: refused here, by name, not when the graph is built.
    for key, value in (
        ("deadline_s", 1e10),
        ("timeout_s", float("inf")),
        ("max_cost_usd", float("nan")),
        ("max_concurrent", 10**13),
    ):
        with pytest.raises(ValidationError, match=key):
            served.RunSettings.of({"configurable": {key: value}})


def test_langgraph_json_names_factories_that_build_graphs(served: ModuleType) -> None:
    config = json.loads((FOLDER / "langgraph.json").read_text())
    assert set(config["graphs"]) == {"fan_out", "vote", "tree"}
    for graph_id, spec in config["graphs"].items():
        path, _, name = spec.partition(":")
        assert (FOLDER / path).resolve() == FOLDER / "fanout_graphs.py"
        graph = getattr(served, name)({"configurable": {}})
        assert graph.compile().get_graph().nodes, graph_id


def test_split_in_halves(served: ModuleType) -> None:
    split = served.split_in_halves
    assert split("a\nb\n\nc") == ["a", "b\nc"]
    assert split([1, 2, 3]) == [1, [2, 3]]
    assert split("one line") is None
    assert split(["x"]) is None


# -- the server ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ok", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _config_in(workdir: Path) -> Path:
    """This folder's ``langgraph.json`` with absolute graph paths, written to ``workdir``:
    the server resolves them against its working directory and keeps its in-memory
    state there (``.langgraph_api/``), so the test leaves nothing in the repository."""
    config = json.loads((FOLDER / "langgraph.json").read_text())
    config["graphs"] = {
        graph_id: f"{(FOLDER / spec.partition(':')[0]).resolve()}:{spec.partition(':')[2]}"
        for graph_id, spec in config["graphs"].items()
    }
    path = workdir / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a ``langgraph dev`` server serving the graphs of this folder."""
    cli = Path(sys.executable).with_name("langgraph")
    command = str(cli) if cli.exists() else shutil.which("langgraph")
    if command is None:
        pytest.skip("the server cannot start: no `langgraph` command (pip install -e '.[dev]')")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
    }
    args = ["dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port)]
    workdir = tmp_path_factory.mktemp("langgraph_dev")
    args += ["--config", str(_config_in(workdir))]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [command, *args],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with all its children
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not _answers_ok(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            else:
                yield url
                return
            log.seek(0)
            output = log.read().decode(errors="replace")[-4000:]
            if "GraphLoadError" in output:  # our graphs are broken: never a skip
                pytest.fail(f"langgraph dev could not load the graphs:\n{output}")
            if proc.poll() not in (None, 0):
                pytest.skip(f"langgraph dev could not start (exit {proc.returncode}):\n{output}")
            pytest.fail(f"langgraph dev did not answer /ok within {READY_TIMEOUT_S:g} s:\n{output}")
        finally:
            _stop(proc)


def _json(**values: Any) -> dict[str, Any]:
    return values


def _settings(**values: Any) -> Config:
    """Run settings as ``config["configurable"]`` (``context=`` works the same)."""
    return {"configurable": values}


def _content(output: Any) -> str:
    return str(output["content"]) if isinstance(output, dict) else str(output)


async def test_fan_out_streams_progress_and_aggregates(server: str) -> None:
    client = get_client(url=server)
    thread = await client.threads.create()
    progress: list[dict[str, Any]] = []
    values: list[dict[str, Any]] = []
    async for part in client.runs.stream(
        thread["thread_id"],
        "fan_out",
        input=_json(items=[{"text": f"note {i}"} for i in range(8)]),
        config=_settings(template="Summarize: {text}", latency_s=0.02, max_concurrent=4),
        stream_mode=["custom", "values"],
    ):
        if part.event == "custom":
            progress.append(part.data)
        elif part.event == "values":
            values.append(part.data)

    out = values[-1]
    results = out["results"]
    assert [r["index"] for r in results] == list(range(8))
    assert all(r["status"] == "ok" for r in results)
    assert _content(results[3]["output"]) == "Simulated answer to: Summarize: note 3"
    # One progress event per item, counted in order of completion.
    assert sorted(e["index"] for e in progress) == list(range(8))
    assert [e["done"] for e in progress] == list(range(1, 9))
    assert {(e["event"], e["graph"], e["total"]) for e in progress} == {("item_done", "fan_out", 8)}
    items_cost = sum(r["cost_usd"] for r in results)
    assert progress[-1]["cost_usd_so_far"] == pytest.approx(items_cost)
    # The aggregator is one more priced call through the same pipeline.
    assert out["aggregate_result"]["status"] == "ok"
    assert _content(out["aggregate"]).startswith("Simulated answer to: Combine these 8 results")
    report = out["report"]
    assert (report["inputs"], report["succeeded"]) == (9, 9)
    assert out["aggregate_result"]["agent"] == "simulated-small"
    assert report["spent_usd"] == pytest.approx(items_cost + out["aggregate_result"]["cost_usd"])
    assert report["spent_usd"] > 0


async def test_a_low_budget_refuses_calls_and_is_never_exceeded(server: str) -> None:
    client = get_client(url=server)
    thread = await client.threads.create()
    # About three worst-case reservations of the simulated model: calls wait for room as
    # the ones in flight settle below their worst case, until the real spend leaves none.
    cap = 0.0005
    out = await client.runs.wait(
        thread["thread_id"],
        "fan_out",
        input=_json(items=[f"question {i}" for i in range(100)]),
        config=_settings(max_cost_usd=cap, aggregate="none", latency_s=0.05),
    )
    assert isinstance(out, dict)
    kinds = Counter(r["error_kind"] or r["status"] for r in out["results"])
    assert set(kinds) == {"ok", "budget_exceeded"}, kinds
    refused = next(r for r in out["results"] if r["error_kind"] == "budget_exceeded")
    assert refused["error"].startswith("cost budget exceeded before call to")
    report = out["report"]
    assert report["budget_usd"] == cap
    assert report["failures_by_kind"] == {"budget_exceeded": kinds["budget_exceeded"]}
    assert 0 < report["total_spent_usd"] <= cap
    assert report["spent_usd"] == pytest.approx(sum(r["cost_usd"] for r in out["results"]))
    assert report["refused_usd"] > 0
    assert report["overshoot_usd"] == 0


async def test_vote_takes_one_majority_per_item_with_settings_as_context(server: str) -> None:
    client = get_client(url=server)
    thread = await client.threads.create()
    out = await client.runs.wait(
        thread["thread_id"],
        "vote",
        input=_json(items=["Is the sky blue?", "Is water dry?"]),
        context=_json(n_voters=5, choices=["yes", "no"], seed=4),
    )
    assert isinstance(out, dict)
    results = out["results"]
    assert [(r["index"], r["sample"]) for r in results] == [(i, i % 5) for i in range(10)]
    assert all(r["status"] == "ok" for r in results)
    votes = out["aggregate"]
    assert len(votes) == 2
    for item, ballot in enumerate(votes):
        answers = Counter(_content(r["output"]) for r in results[item * 5 : item * 5 + 5])
        assert ballot["voters"] == ballot["valid_votes"] == 5
        assert ballot["counts"] == {k: float(v) for k, v in answers.items()}
        assert ballot["winner"] == answers.most_common(1)[0][0]
    assert out["report"]["succeeded"] == 10


async def test_tree_streams_each_call_and_reports_the_whole_tree(server: str) -> None:
    client = get_client(url=server)
    lines = "\n".join(f"line {i}" for i in range(8))
    thread = await client.threads.create()
    progress: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    async for part in client.runs.stream(
        thread["thread_id"],
        "tree",
        input=_json(task=lines),
        config=_settings(max_depth=3, combine="join", max_cost_usd=0.05),
        stream_mode=["custom", "values"],
    ):
        if part.event == "custom":
            progress.append(part.data)
        elif part.event == "values":
            final = part.data
    assert final["status"] == "ok"
    assert final["result"] == "\n".join(f"Simulated answer to: line {i}" for i in range(8))
    assert (final["leaves"], final["depth_reached"]) == (8, 3)
    assert len(progress) == 8 and {e["graph"] for e in progress} == {"tree"}
    assert final["report"]["succeeded"] == 8
    assert 0 < final["report"]["total_spent_usd"] <= 0.05

    # The model combines the parts instead: seven more calls (one per inner node).
    thread = await client.threads.create()
    out = await client.runs.wait(
        thread["thread_id"], "tree", input=_json(task=lines), config=_settings()
    )
    assert isinstance(out, dict)
    assert out["status"] == "ok" and out["leaves"] == 4
    assert out["report"]["inputs"] == 4 + 3
    assert out["report"]["calls_started"] == 7


async def test_a_bad_setting_fails_the_run_with_its_name(server: str) -> None:
    client = get_client(url=server)
    thread = await client.threads.create()
    with pytest.raises(Exception, match="n_voters"):
        await client.runs.wait(
            thread["thread_id"], "vote", input=_json(items=["?"]), context=_json(n_voters=0)
        )


async def test_an_assistant_presets_settings_for_its_runs(server: str) -> None:
    client = get_client(url=server)
    assistant = await client.assistants.create(
        "vote", context=_json(n_voters=3, choices=["red", "blue"]), name="three voters"
    )
    thread = await client.threads.create()
    out = await client.runs.wait(
        thread["thread_id"], assistant["assistant_id"], input=_json(items=["Colour?"])
    )
    assert isinstance(out, dict)
    assert len(out["results"]) == 3
    assert {_content(r["output"]) for r in out["results"]} <= {"red", "blue"}
    assert out["aggregate"][0]["voters"] == 3
