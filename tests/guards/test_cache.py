"""Tests of the idempotency cache: keys, single-flight, modes, TTL and LangGraph backends."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import json
import logging
import pickle
import subprocess
import sys
import textwrap
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import langgraph.cache.memory
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompt_values import ChatPromptValue
from langgraph.cache.base import BaseCache, FullKey, Namespace
from langgraph.cache.memory import InMemoryCache
from langgraph.cache.sqlite import SqliteCache
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel, ConfigDict

from langgraph_fanout.errors import (
    CacheBackendWarning,
    CacheKeyError,
    ConfigurationError,
    RefusedError,
)
from langgraph_fanout.guards.cache import (
    CACHE_KEY_VERSION,
    BoundedMemoryCache,
    CacheEntry,
    CacheMode,
    CacheSource,
    IdempotencyCache,
    cache_key,
)

AGENT = {"name": "voter", "model": "gpt-4o", "temperature": 0.7, "top_p": 1.0, "seed": 7}


class Verdict(BaseModel):
    label: str
    score: float
    reasons: list[str]


class Foo:
    pass


@dataclasses.dataclass
class Doc:
    text: str
    meta: Any


class Counter:
    """A compute function that counts its calls and can be held at a gate."""

    def __init__(self, output: Any = "answer", gate: asyncio.Event | None = None) -> None:
        self.calls = 0
        self.output = output
        self.gate = gate
        self.started = asyncio.Event()

    async def __call__(self) -> CacheEntry:
        self.calls += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return CacheEntry(
            output=self.output, agent_used="voter", input_tokens=10, output_tokens=5, cost_usd=0.01
        )


# --------------------------------------------------------------------------- keys


def test_key_is_sha256_of_canonical_json() -> None:
    key = cache_key(agent={"name": "a", "model": "m"}, prompt="hi", sample=2, user_key="u")
    canonical = json.dumps(
        {
            "agent": {"model": "m", "name": "a"},
            "input": "hi",
            "sample": 2,
            "user_key": "u",
            "version": CACHE_KEY_VERSION,
        },
        separators=(",", ":"),
        sort_keys=True,
    )
    assert key == hashlib.sha256(canonical.encode()).hexdigest()


def test_every_part_of_the_identity_changes_the_key() -> None:
    base = cache_key(agent=AGENT, prompt="Is it spam?")
    variants = [
        cache_key(agent=AGENT, prompt="Is it spam?", sample=1),
        cache_key(agent={**AGENT, "model": "gpt-4o-mini"}, prompt="Is it spam?"),
        cache_key(agent={**AGENT, "temperature": 0.2}, prompt="Is it spam?"),
        cache_key(agent={**AGENT, "max_tokens": 100}, prompt="Is it spam?"),
        cache_key(agent={**AGENT, "name": "judge"}, prompt="Is it spam?"),
        cache_key(agent=AGENT, prompt="Is it ham?"),
        cache_key(agent=AGENT, prompt="Is it spam?", user_key="tenant-1"),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_five_voters_are_five_keys() -> None:
    keys = {cache_key(agent=AGENT, prompt="vote", sample=i) for i in range(5)}
    assert len(keys) == 5


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def _reorder(value: Any, rng: Any) -> Any:
    if isinstance(value, dict):
        items = [(k, _reorder(v, rng)) for k, v in value.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(value, list):
        return [_reorder(v, rng) for v in value]
    return value


@given(
    value=json_values,
    agent_extra=st.dictionaries(st.text(max_size=6), json_values),
    rng=st.randoms(),
)
@settings(max_examples=200)
def test_dict_order_never_changes_the_key(value: Any, agent_extra: Any, rng: Any) -> None:
    agent = {"name": "a", "model": "m", **agent_extra}
    original = cache_key(agent=agent, prompt=value)
    assert cache_key(agent=_reorder(agent, rng), prompt=_reorder(value, rng)) == original


@given(members=st.sets(st.integers() | st.text(max_size=4), max_size=8), rng=st.randoms())
def test_set_order_never_changes_the_key(members: set[Any], rng: Any) -> None:
    shuffled = list(members)
    rng.shuffle(shuffled)
    assert cache_key(agent=AGENT, prompt=members) == cache_key(
        agent=AGENT, prompt=frozenset(shuffled)
    )


def test_messages_key_on_what_the_model_sees() -> None:
    def conversation(ids: str, answer: str = "4") -> list[Any]:
        return [
            SystemMessage("Be terse.", id=f"{ids}-0"),
            HumanMessage("2+2?", id=f"{ids}-1"),
            AIMessage(
                "",
                id=f"{ids}-2",
                tool_calls=[{"name": "calc", "args": {"expr": "2+2"}, "id": "call-1"}],
                response_metadata={"model_name": "gpt-4o"},
                usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
            ),
            ToolMessage(answer, tool_call_id="call-1", id=f"{ids}-3"),
        ]

    key = cache_key(agent=AGENT, prompt=conversation("a"))
    assert cache_key(agent=AGENT, prompt=conversation("b")) == key
    assert cache_key(agent=AGENT, prompt=conversation("a", answer="5")) != key
    assert cache_key(agent=AGENT, prompt=ChatPromptValue(messages=conversation("c"))) == key
    # The tool call is part of the key, not only the (empty) content.
    other_call = conversation("a")
    other_call[2] = AIMessage("", tool_calls=[{"name": "calc", "args": {"expr": "3"}, "id": "x"}])
    assert cache_key(agent=AGENT, prompt=other_call) != key


def test_values_of_different_types_do_not_collide() -> None:
    def key(prompt: Any) -> str:
        return cache_key(agent=AGENT, prompt=prompt)

    assert key((1, 2)) == key([1, 2])  # a tuple renders like a list
    assert key({"$set": [1]}) != key({1})  # user dict keys starting with $ are escaped
    assert key({"$$set": [1]}) != key({"$set": [1]})
    assert key({1: "a"}) != key({"1": "a"})
    assert key(True) != key(1)
    assert key(1) != key(1.0)
    assert key(b"ab") != key("6162")
    assert key(datetime.date(2024, 1, 2)) != key("2024-01-02")
    assert key(Verdict(label="a", score=1, reasons=[])) != key(
        {"label": "a", "score": 1.0, "reasons": []}
    )


def test_non_finite_floats_have_stable_keys() -> None:
    nan = cache_key(agent=AGENT, prompt={"x": float("nan")})
    assert nan == cache_key(agent=AGENT, prompt={"x": float("nan")})
    assert nan != cache_key(agent=AGENT, prompt={"x": float("inf")})


@pytest.mark.parametrize(
    ("agent", "prompt", "detail"),
    [
        (AGENT, {"doc": Doc(text="t", meta=Foo())}, "prompt['doc'].meta: object of type Foo"),
        (AGENT, ["ok", (1, lambda: 0)], "prompt[1][1]: object of type function"),
        ({**AGENT, "client": object()}, "hi", "agent['client']: object of type object"),
        (
            AGENT,
            [HumanMessage(content=[{"type": "text", "text": Foo()}])],
            "prompt[0].content[0]['text']: object of type Foo",
        ),
    ],
)
def test_unserialisable_values_name_their_path(
    agent: Mapping[str, Any], prompt: Any, detail: str
) -> None:
    with pytest.raises(CacheKeyError) as info:
        cache_key(agent=agent, prompt=prompt)
    err = info.value
    assert err.detail == detail
    assert str(err) == f"cannot build cache key: {detail} (pass JSON-like arguments or cache=False)"
    assert isinstance(err, RefusedError)
    assert err.kind == "cache_key"
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), again.detail) == (CacheKeyError, detail)


def test_unserialisable_pydantic_field_is_named() -> None:
    class Holder(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        name: str
        thing: Foo

    with pytest.raises(CacheKeyError) as info:
        cache_key(agent=AGENT, prompt={"h": Holder(name="n", thing=Foo())})
    assert info.value.detail.startswith("prompt['h'].thing: object of type Foo")


def test_circular_values_are_refused() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(CacheKeyError, match=r"prompt\[1\]: circular reference to list"):
        cache_key(agent=AGENT, prompt=loop)


@pytest.mark.parametrize("sample", [-1, 1.0, True])
def test_sample_must_be_a_non_negative_int(sample: Any) -> None:
    with pytest.raises(ConfigurationError, match="sample must be an int >= 0"):
        cache_key(agent=AGENT, prompt="x", sample=sample)


# --------------------------------------------------------------------------- entries


def test_entry_record_roundtrip_and_validation() -> None:
    entry = CacheEntry(output={"a": [1]}, agent_used="x", input_tokens=3, cost_usd=0.5)
    assert CacheEntry.from_record(entry.to_record()) == entry
    with pytest.raises(ValueError, match="not a cache record"):
        CacheEntry.from_record({"output": 1})
    with pytest.raises(ConfigurationError, match="input_tokens must be an int >= 0"):
        CacheEntry(output=1, agent_used="x", input_tokens=-1)
    with pytest.raises(ConfigurationError, match="cost_usd must be a finite number"):
        CacheEntry(output=1, agent_used="x", cost_usd=float("nan"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.output = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl_s": 0}, "ttl_s must be a finite number > 0 and <= 1e9 or None"),
        ({"ttl_s": float("inf")}, "ttl_s must be a finite number > 0 and <= 1e9 or None"),
        ({"namespace": "a,b"}, "namespace must be a non-empty str without commas"),
        ({"namespace": ""}, "namespace must be a non-empty str without commas"),
    ],
)
def test_cache_configuration_is_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        IdempotencyCache(**kwargs)


# --------------------------------------------------------------------------- single-flight


async def test_ten_identical_concurrent_calls_compute_once() -> None:
    cache = IdempotencyCache()
    gate = asyncio.Event()
    compute = Counter(gate=gate)
    key = cache_key(agent=AGENT, prompt="same")
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(cache.run(key, compute)) for _ in range(10)]
        await compute.started.wait()
        gate.set()
    results = [t.result() for t in tasks]
    assert compute.calls == 1
    assert sorted(s for _, s in results) == sorted([CacheSource.MISS] + [CacheSource.SHARED] * 9)
    assert all(e.output == "answer" for e, _ in results)
    assert cache.in_flight == 0
    assert (await cache.run(key, compute))[1] is CacheSource.HIT


async def test_five_samples_are_five_computes_then_five_hits() -> None:
    cache = IdempotencyCache()
    compute = Counter()
    keys = [cache_key(agent=AGENT, prompt="vote", sample=i) for i in range(5)]
    first = await asyncio.gather(*(cache.run(k, compute) for k in keys))
    assert compute.calls == 5
    assert {s for _, s in first} == {CacheSource.MISS}
    second = await asyncio.gather(*(cache.run(k, compute) for k in keys))
    assert compute.calls == 5
    assert {s for _, s in second} == {CacheSource.HIT}
    assert [e.cost_usd for e, _ in second] == [0.01] * 5  # what the original call cost


async def test_leader_failure_is_shared_and_not_stored() -> None:
    cache = IdempotencyCache()
    gate = asyncio.Event()
    calls = 0

    async def failing() -> CacheEntry:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise ValueError("model exploded")

    leader = asyncio.create_task(cache.run("k", failing))
    await asyncio.sleep(0)
    followers = [asyncio.create_task(cache.run("k", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(leader, *followers, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(o, ValueError) and str(o) == "model exploded" for o in outcomes)
    assert await cache.get("k") is None
    entry, source = await cache.run("k", Counter())
    assert (entry.output, source) == ("answer", CacheSource.MISS)


async def test_cancelled_leader_hands_over_to_a_follower() -> None:
    cache = IdempotencyCache()
    never = asyncio.Event()
    leader_compute = Counter(gate=never)
    follower_gate = asyncio.Event()
    follower_compute = Counter(output="from follower", gate=follower_gate)
    leader = asyncio.create_task(cache.run("k", leader_compute))
    await leader_compute.started.wait()
    followers = [asyncio.create_task(cache.run("k", follower_compute)) for _ in range(3)]
    await asyncio.sleep(0)  # each follower runs up to its wait on the leader's flight
    assert follower_compute.calls == 0

    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    await follower_compute.started.wait()  # one follower took over as the new leader
    await asyncio.sleep(0)  # the other two joined its flight
    follower_gate.set()
    results = await asyncio.gather(*followers)

    assert leader.cancelled()
    assert follower_compute.calls == 1
    assert sorted(s for _, s in results) == [
        CacheSource.MISS,
        CacheSource.SHARED,
        CacheSource.SHARED,
    ]
    assert {e.output for e, _ in results} == {"from follower"}
    assert cache.in_flight == 0
    assert (await cache.get("k")) == results[0][0]


async def test_cancelled_follower_leaves_the_leader_alone() -> None:
    cache = IdempotencyCache()
    gate = asyncio.Event()
    compute = Counter(gate=gate)
    leader = asyncio.create_task(cache.run("k", compute))
    await compute.started.wait()
    follower = asyncio.create_task(cache.run("k", compute))
    other = asyncio.create_task(cache.run("k", compute))
    await asyncio.sleep(0)
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    gate.set()
    assert (await leader)[1] is CacheSource.MISS
    assert (await other)[1] is CacheSource.SHARED
    assert compute.calls == 1


async def test_concurrent_calls_share_a_stored_hit() -> None:
    cache = IdempotencyCache()
    await cache.set("k", CacheEntry(output="stored", agent_used="voter"))
    compute = Counter()
    results = await asyncio.gather(*(cache.run("k", compute) for _ in range(4)))
    assert compute.calls == 0
    assert {s for _, s in results} == {CacheSource.HIT}


# --------------------------------------------------------------------------- modes


async def test_refresh_recomputes_and_overwrites() -> None:
    cache = IdempotencyCache()
    await cache.set("k", CacheEntry(output="old", agent_used="voter"))
    entry, source = await cache.run("k", Counter(output="new"), mode=CacheMode.REFRESH)
    assert (entry.output, source) == ("new", CacheSource.MISS)
    stored = await cache.get("k")
    assert stored is not None and stored.output == "new"


async def test_bypass_neither_reads_nor_writes() -> None:
    cache = IdempotencyCache()
    compute = Counter(output="fresh")
    entry, source = await cache.run("k", compute, mode=CacheMode.BYPASS)
    assert (entry.output, source) == ("fresh", CacheSource.MISS)
    assert await cache.get("k") is None
    await cache.set("k", CacheEntry(output="old", agent_used="voter"))
    entry, _ = await cache.run("k", compute, mode="bypass")  # type: ignore[arg-type]
    assert entry.output == "fresh"
    assert compute.calls == 2
    stored = await cache.get("k")
    assert stored is not None and stored.output == "old"


async def test_read_only_reads_but_never_stores() -> None:
    cache = IdempotencyCache()
    compute = Counter()
    assert (await cache.run("k", compute, mode=CacheMode.READ_ONLY))[1] is CacheSource.MISS
    assert await cache.get("k") is None
    await cache.set("k", CacheEntry(output="stored", agent_used="voter"))
    entry, source = await cache.run("k", compute, mode=CacheMode.READ_ONLY)
    assert (entry.output, source, compute.calls) == ("stored", CacheSource.HIT, 1)


async def test_a_refresh_does_not_join_a_use_in_flight() -> None:
    cache = IdempotencyCache()
    gate = asyncio.Event()
    use = Counter(gate=gate)
    refresh = Counter(output="refreshed")
    first = asyncio.create_task(cache.run("k", use))
    await use.started.wait()
    entry, source = await cache.run("k", refresh, mode=CacheMode.REFRESH)
    gate.set()
    await first
    assert (entry.output, source, refresh.calls) == ("refreshed", CacheSource.MISS, 1)


async def test_should_store_filters_entries() -> None:
    cache = IdempotencyCache(should_store=lambda e: e.output is not None)
    await cache.run("none", Counter(output=None))
    await cache.run("some", Counter(output="x"))
    assert await cache.get("none") is None
    assert await cache.get("some") is not None


async def test_compute_must_return_an_entry() -> None:
    async def wrong() -> CacheEntry:
        return "raw"  # type: ignore[return-value]

    with pytest.raises(ConfigurationError, match="compute must return a CacheEntry"):
        await IdempotencyCache().run("k", wrong)


# --------------------------------------------------------------------------- backends


class BrokenCache(BaseCache[Any]):
    """A backend whose every operation fails."""

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        raise OSError("disk on fire")

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        raise OSError("disk on fire")

    def set(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        raise OSError("disk on fire")

    async def aset(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        raise OSError("disk on fire")

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        raise OSError("disk on fire")

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        raise OSError("disk on fire")


async def test_backend_failures_warn_and_the_call_still_runs() -> None:
    cache = IdempotencyCache(BrokenCache())
    with pytest.warns(CacheBackendWarning) as record:
        entry, source = await cache.run("k", Counter())
    assert (entry.output, source) == ("answer", CacheSource.MISS)
    messages = [str(w.message) for w in record]
    assert any("cache read failed" in m and "disk on fire" in m for m in messages)
    assert any("cache write failed" in m for m in messages)


async def test_unstorable_output_warns_and_is_returned() -> None:
    cache = IdempotencyCache()
    with pytest.warns(CacheBackendWarning, match="entry not stored"):
        entry, _ = await cache.run("k", Counter(output=Foo()))
    assert isinstance(entry.output, Foo)
    assert await cache.get("k") is None


async def test_foreign_record_counts_as_a_miss() -> None:
    backend: InMemoryCache[Any] = InMemoryCache()
    cache = IdempotencyCache(backend)
    await backend.aset({(("langgraph-fanout",), "k"): ({"something": "else"}, None)})
    with pytest.warns(CacheBackendWarning, match="not a cache record"):
        assert await cache.get("k") is None


def _backends(tmp_path: Path) -> dict[str, BaseCache[Any]]:
    serde = JsonPlusSerializer(allowed_msgpack_modules=[Verdict])
    return {
        "memory": InMemoryCache(serde=serde),
        "sqlite": SqliteCache(path=str(tmp_path / "cache.db"), serde=serde),
    }


@pytest.mark.parametrize("backend_name", ["memory", "sqlite"])
@pytest.mark.parametrize(
    "output",
    [
        "plain text",
        {"label": "spam", "scores": [0.9, 0.1], "nested": {"ok": True}},
        AIMessage(
            "4",
            tool_calls=[{"name": "calc", "args": {"x": 1}, "id": "c1"}],
            response_metadata={"model_name": "gpt-4o"},
            usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
        ),
        Verdict(label="spam", score=0.9, reasons=["link", "urgency"]),
    ],
    ids=["str", "dict", "aimessage", "pydantic"],
)
async def test_outputs_roundtrip_through_langgraph_backends(
    tmp_path: Path, backend_name: str, output: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = IdempotencyCache(_backends(tmp_path)[backend_name])
    original = CacheEntry(
        output=output, agent_used="judge", input_tokens=12, output_tokens=3, cost_usd=0.004
    )
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("error")
        await cache.set("k", original)
        restored = await cache.get("k")
    assert restored == original
    assert type(restored.output) is type(output)
    assert not caplog.records  # no "unregistered type" warnings from the serializer


async def test_sqlite_entry_is_read_by_a_new_process(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    key = cache_key(agent=AGENT, prompt=[HumanMessage("Summarise the memo")], sample=3)
    writer = IdempotencyCache(SqliteCache(path=str(db)))
    entry, source = await writer.run(
        key, Counter(output=AIMessage("Short memo.", response_metadata={"model_name": "gpt-4o"}))
    )
    assert source is CacheSource.MISS

    script = textwrap.dedent(
        """
        import asyncio, json, sys
        from langchain_core.messages import HumanMessage
        from langgraph.cache.sqlite import SqliteCache
        from langgraph_fanout.guards.cache import IdempotencyCache, cache_key

        agent = json.loads(sys.argv[2])
        key = cache_key(agent=agent, prompt=[HumanMessage("Summarise the memo")], sample=3)

        async def must_not_run():
            raise AssertionError("computed instead of hitting the cache")

        async def main():
            cache = IdempotencyCache(SqliteCache(path=sys.argv[1]))
            entry, source = await cache.run(key, must_not_run)
            print(json.dumps({
                "key": key, "source": source.value, "type": type(entry.output).__name__,
                "content": entry.output.content, "cost": entry.cost_usd,
            }))

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        str(db),
        json.dumps(AGENT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    seen = json.loads(out)
    assert seen == {
        "key": key,
        "source": "hit",
        "type": "AIMessage",
        "content": "Short memo.",
        "cost": entry.cost_usd,
    }


class FakeWallClock:
    """Replaces the wall clock LangGraph's InMemoryCache reads to compute expiry."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: float = 1_700_000_000.0) -> None:
        self.now = start
        clock = self

        class FrozenDateTime(datetime.datetime):
            @classmethod
            def now(cls, tz: datetime.tzinfo | None = None) -> FrozenDateTime:  # type: ignore[override]
                return cls.fromtimestamp(clock.now, tz)

        fake_module = types.SimpleNamespace(
            datetime=FrozenDateTime, timezone=datetime.timezone, timedelta=datetime.timedelta
        )
        monkeypatch.setattr(langgraph.cache.memory, "datetime", fake_module)


class FakeTimer:
    """Monotonic seconds for ``BoundedMemoryCache`` (the default backend)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _clocked(kind: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Callable[..., Any]]:
    """A clock to move and a backend factory: the default bounded one, or LangGraph's."""
    if kind == "bounded":
        timer = FakeTimer()
        return timer, lambda: BoundedMemoryCache(timer=timer)
    return FakeWallClock(monkeypatch), InMemoryCache


@pytest.mark.parametrize("kind", ["bounded", "langgraph"])
async def test_entries_expire_after_ttl(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, backend = _clocked(kind, monkeypatch)
    cache = IdempotencyCache(backend(), ttl_s=60)
    compute = Counter()
    assert (await cache.run("k", compute))[1] is CacheSource.MISS
    clock.now += 59.9
    assert (await cache.run("k", compute))[1] is CacheSource.HIT
    clock.now += 0.2
    assert (await cache.run("k", compute))[1] is CacheSource.MISS
    assert compute.calls == 2


@pytest.mark.parametrize("kind", ["bounded", "langgraph"])
async def test_ttl_is_rounded_up_to_whole_seconds_and_none_never_expires(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, backend = _clocked(kind, monkeypatch)
    short = IdempotencyCache(backend(), ttl_s=0.2)
    forever = IdempotencyCache(backend(), ttl_s=None)
    entry = CacheEntry(output="x", agent_used="voter")
    await short.set("k", entry)
    await forever.set("k", entry)
    clock.now += 0.9
    assert await short.get("k") == entry
    clock.now += 10 * 365 * 86400
    assert await short.get("k") is None
    assert await forever.get("k") == entry


async def test_the_default_backend_holds_at_most_max_entries_and_drops_expired_ones() -> None:
    # A long-lived process: 30,000 distinct calls through a cache bounded at 1,000.
    timer = FakeTimer()
    backend = BoundedMemoryCache(max_entries=1_000, timer=timer)
    cache = IdempotencyCache(backend, ttl_s=60)
    for i in range(30_000):
        await cache.set(f"k{i}", CacheEntry(output=f"answer {i}", agent_used="a"))
    assert len(backend) == 1_000
    assert await cache.get("k29999") is not None  # the most recent stay
    assert await cache.get("k0") is None  # the least recently used went first
    timer.now += 61
    assert len(backend) == 0  # expired entries are dropped, not held
    assert len(IdempotencyCache(max_entries=5).backend) == 0
    with pytest.raises(ConfigurationError, match="max_entries must be an int >= 1"):
        IdempotencyCache(max_entries=0)


async def test_the_default_backend_returns_copies_and_clears_by_namespace() -> None:
    backend = BoundedMemoryCache()
    ours = IdempotencyCache(backend, namespace="ours")
    theirs = IdempotencyCache(backend, namespace="theirs")
    output = {"items": [1, 2]}
    await ours.set("k", CacheEntry(output=output, agent_used="a"))
    await theirs.set("k", CacheEntry(output="x", agent_used="a"))
    output["items"].append(3)  # the caller changes its output afterwards
    got = await ours.get("k")
    assert got is not None and got.output == {"items": [1, 2]}
    await ours.clear()
    assert await ours.get("k") is None and await theirs.get("k") is not None


async def test_clear_drops_only_our_namespace() -> None:
    backend: InMemoryCache[Any] = InMemoryCache()
    ours = IdempotencyCache(backend, namespace="ours")
    theirs = IdempotencyCache(backend, namespace="theirs")
    entry = CacheEntry(output="x", agent_used="voter")
    await ours.set("k", entry)
    await theirs.set("k", entry)
    await ours.clear()
    assert await ours.get("k") is None
    assert await theirs.get("k") == entry
    assert "InMemoryCache" in repr(ours) and "in_flight=0" in repr(ours)


@pytest.mark.parametrize(
    "prompt", ["2+2?", {"text": "hi", "n": [1, 2.5, None]}, ["a", {"b": True}], ""]
)
def test_the_key_is_the_documented_digest_whether_or_not_the_identity_is_precomputed(
    prompt: Any,
) -> None:
    # sha256 of the canonical JSON of {version, agent, input, sample, user_key}: persistent
    # caches written before the agent's part was computed once per agent still hit.
    from langgraph_fanout.guards.cache import CACHE_KEY_VERSION, agent_fingerprint, keyed_by

    agent = {"name": "critic", "model": "gpt-4o", "temperature": 0.2}
    payload = {
        "version": CACHE_KEY_VERSION,
        "agent": agent,
        "input": prompt,
        "sample": 3,
        "user_key": "tenant-1",
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    expected = hashlib.sha256(text.encode("ascii")).hexdigest()
    assert cache_key(agent=agent, prompt=prompt, sample=3, user_key="tenant-1") == expected
    assert (
        keyed_by(agent_fingerprint(agent), prompt=prompt, sample=3, user_key="tenant-1") == expected
    )
