"""Idempotency cache for sub-agent calls: stable keys, single-flight, LangGraph backends.

A call is identified by :func:`cache_key`: the agent's identity (name, model, sampling
parameters), the rendered input, the sample index and an optional user key. The sample
index is part of the key on purpose: five voters of one vote are five distinct calls.

:class:`IdempotencyCache` stores :class:`CacheEntry` values in any LangGraph
:class:`~langgraph.cache.base.BaseCache` (``BoundedMemoryCache`` by default, ``SqliteCache`` to
persist across processes) and lets identical calls that are in flight at the same moment
share one computation (single-flight)::

    cache = IdempotencyCache()
    key = cache_key(agent={"name": "critic", "model": "gpt-4o"}, prompt="Rate this")
    entry, source = await cache.run(key, call_the_agent)   # MISS, HIT or SHARED
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import hashlib
import json
import math
import pathlib
import threading
import time
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import StrEnum
from json.encoder import encode_basestring_ascii
from typing import Any, Final

from langchain_core.messages import BaseMessage
from langchain_core.prompt_values import PromptValue, StringPromptValue
from langgraph.cache.base import BaseCache, FullKey, Namespace
from pydantic import BaseModel

from langgraph_fanout.core.checks import MAX_COUNT, MAX_SECONDS, check_number, check_type, shown
from langgraph_fanout.errors import CacheBackendWarning, CacheKeyError, ConfigurationError

CACHE_KEY_VERSION: Final = "langgraph-fanout/cache-key/1"
"""Part of every key: bump it when the canonical form changes, so old entries stop matching."""

_RECORD_VERSION: Final = 1


# ---------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------


class _Unserialisable(Exception):
    """Raised inside the encoder; collects path segments while it unwinds (free on success)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.segments: list[str] = []


def cache_key(
    *,
    agent: Mapping[str, Any],
    prompt: Any,
    sample: int = 0,
    user_key: str | None = None,
) -> str:
    """Return the idempotency key of one sub-agent call: a sha256 hex digest.

    The digest covers canonical JSON (sorted keys, no whitespace, ASCII) of the agent identity,
    the rendered input, the sample index, ``user_key`` and :data:`CACHE_KEY_VERSION`. Dict
    order never changes the key. Besides JSON values the input may hold tuples (as lists),
    sets, non-string dict keys, non-finite floats, bytes, enums, dates, UUIDs, decimals,
    paths, dataclasses, pydantic models (``model_dump(mode="json")``), prompt values and
    LangChain messages (type, content, tool calls, name, tool_call_id; ids and metadata are
    left out because they do not change what the model sees). Anything else is refused.

    Args:
        agent: what identifies the agent: name, model and every sampling parameter
            (``temperature``, ``top_p``, ``max_tokens``, ``seed``...), e.g.
            ``SubAgent.identity()``.
        prompt: the rendered input: a string, a list of messages, or JSON-like arguments.
        sample: index of the sample; distinct voters of one vote use 0, 1, 2...
        user_key: an extra discriminator chosen by the caller (tenant, session...).

    Raises:
        CacheKeyError: a value cannot be serialised; ``detail`` names its path, e.g.
            ``prompt['doc'].meta: object of type Foo``.
        ConfigurationError: ``sample`` is negative or not an int, or ``agent`` is not a mapping.

    Example:
        >>> k0 = cache_key(agent={"name": "voter", "model": "gpt-4o"}, prompt="2+2?", sample=0)
        >>> k1 = cache_key(agent={"name": "voter", "model": "gpt-4o"}, prompt="2+2?", sample=1)
        >>> k0 != k1 and len(k0) == 64
        True
    """
    return keyed_by(agent_fingerprint(agent), prompt=prompt, sample=sample, user_key=user_key)


def agent_fingerprint(agent: Mapping[str, Any]) -> str:
    """The canonical JSON of an agent identity, as ``cache_key`` hashes it: computed once
    per agent, then given to ``keyed_by`` for each of its calls.

    Raises:
        CacheKeyError: a value of the identity cannot be serialised.
        ConfigurationError: ``agent`` is not a mapping.
    """
    if not isinstance(agent, Mapping):
        raise ConfigurationError(f"agent must be a mapping (its identity), got {type(agent)!r}")
    return _canonical(_encode_root("agent", agent))


def keyed_by(fingerprint: str, *, prompt: Any, sample: int = 0, user_key: str | None = None) -> str:
    """``cache_key`` of an agent whose ``agent_fingerprint`` is known: the same digest.

    Raises:
        CacheKeyError: a value of ``prompt`` cannot be serialised.
        ConfigurationError: ``sample`` or ``user_key`` is out of its domain.
    """
    if type(sample) is not int or sample < 0:
        raise ConfigurationError(f"sample must be an int >= 0, got {sample!r}")
    if user_key is not None and not isinstance(user_key, str):
        raise ConfigurationError(f"user_key must be a str or None, got {type(user_key)!r}")
    # The canonical JSON of {"agent", "input", "sample", "user_key", "version"} (sorted
    # keys, nested too), with the agent's part already encoded; a text prompt is one
    # JSON string, written directly.
    encoded = (
        encode_basestring_ascii(prompt)
        if type(prompt) is str
        else _canonical(_encode_root("prompt", prompt))
    )
    user = "null" if user_key is None else encode_basestring_ascii(user_key)
    text = (
        f'{{"agent":{fingerprint},"input":{encoded},"sample":{sample},'
        f'"user_key":{user},"version":{_VERSION_JSON}}}'
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


_VERSION_JSON: Final = json.dumps(CACHE_KEY_VERSION)


def _canonical(value: Any) -> str:
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except ValueError as exc:  # an int past Python's 4300-digit str() limit
        raise CacheKeyError(detail=f"a value cannot be written as JSON: {exc}") from None


def _encode_root(root: str, value: Any) -> Any:
    try:
        return _encode(value, set())
    except _Unserialisable as exc:
        path = root + "".join(reversed(exc.segments))
        raise CacheKeyError(detail=f"{path}: {exc.reason}") from None
    except RecursionError:
        raise CacheKeyError(detail=f"{root}: nested too deeply") from None
    except ValueError as exc:  # an int past Python's 4300-digit str() limit
        raise CacheKeyError(detail=f"{root}: {exc}") from None


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _dump(value: Any) -> str:
    # Orders the members of sets and the pairs of non-string-keyed maps deterministically.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _encode(value: Any, active: set[int]) -> Any:
    """Turn ``value`` into plain JSON data that is equal exactly when the inputs are.

    Non-JSON values become single-key dicts whose key starts with one ``$`` (``{"$set": [...]}``);
    user dict keys starting with ``$`` get a second ``$``, so the two can never collide.
    ``active`` holds ids of the containers being encoded, to report cycles instead of recursing.
    """
    kind = type(value)
    # Fast path for the common leaves.
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, enum.Enum):
        return {"$enum": [_qualname(value), _member(_ATTR, "value", value.value, active)]}
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):  # bool was handled above; int subclasses compare as ints
        return int(value)
    if isinstance(value, float):
        return _encode(float(value), active)

    ident = id(value)
    if ident in active:
        raise _Unserialisable(f"circular reference to {kind.__name__}")
    active.add(ident)
    try:
        return _encode_container(value, active)
    finally:
        active.discard(ident)


# How a member hangs off its container, formatted into the error path only on failure.
_ITEM, _ATTR, _KEY, _ELEMENT = "[{!r}]", ".{}", " key {!r}", "{{{!r}}}"


def _member(how: str, label: Any, value: Any, active: set[int]) -> Any:
    try:
        return _encode(value, active)
    except _Unserialisable as exc:
        exc.segments.append(how.format(label))
        raise


def _encode_container(value: Any, active: set[int]) -> Any:
    if isinstance(value, Mapping):
        if all(type(k) is str for k in value):
            return {
                ("$" + k if k.startswith("$") else k): _member(_ITEM, k, v, active)
                for k, v in value.items()
            }
        pairs = [
            [_member(_KEY, k, k, active), _member(_ITEM, k, v, active)] for k, v in value.items()
        ]
        pairs.sort(key=_dump)
        return {"$map": pairs}
    if isinstance(value, list | tuple):
        return [_member(_ITEM, i, v, active) for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        members = [_member(_ELEMENT, v, v, active) for v in value]
        members.sort(key=_dump)
        return {"$set": members}
    if isinstance(value, BaseMessage):
        return {"$message": _encode_message(value, active)}
    if isinstance(value, StringPromptValue):
        return _member(_ATTR, "text", value.to_string(), active)
    if isinstance(value, PromptValue):
        return _member(_ATTR, "messages", value.to_messages(), active)
    if isinstance(value, BaseModel):
        return {"$model": [_qualname(value), _encode_model(value, active)]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {
            f.name: _member(_ATTR, f.name, getattr(value, f.name), active)
            for f in dataclasses.fields(value)
        }
        return {"$dataclass": [_qualname(value), fields]}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, datetime.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"$date": value.isoformat()}
    if isinstance(value, datetime.time):
        return {"$time": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, pathlib.PurePath):
        return {"$path": value.as_posix()}
    raise _Unserialisable(f"object of type {type(value).__name__}")


def _encode_message(message: BaseMessage, active: set[int]) -> dict[str, Any]:
    # Only what the model sees: ids, usage and response metadata differ between identical calls.
    out: dict[str, Any] = {
        "type": message.type,
        "content": _member(_ATTR, "content", message.content, active),
    }
    present = vars(message)  # pydantic keeps field values here; getattr on a missing one is slow
    for attr in ("name", "tool_calls", "tool_call_id", "role"):
        value = present.get(attr)
        if value:
            out[attr] = _member(_ATTR, attr, value, active)
    return out


def _encode_model(model: BaseModel, active: set[int]) -> Any:
    try:
        dumped = model.model_dump(mode="json")
    except Exception as exc:
        # Walk the fields to name the one pydantic could not serialise.
        for name in type(model).model_fields:
            _member(_ATTR, name, getattr(model, name, None), active)
        raise _Unserialisable(f"{type(model).__name__}.model_dump failed: {exc}") from None
    return _encode(dumped, active)


# ---------------------------------------------------------------------------------------
# Entries, modes, sources
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CacheEntry:
    """One cached sub-agent output and what producing it cost.

    Stored in the backend as a plain dict (:meth:`to_record`), so no allowlist of ours is
    needed by LangGraph's serializer; ``output`` goes through the backend's serde as is
    (str, dict, list, LangChain messages and pydantic models round-trip with the default
    ``JsonPlusSerializer``; tuples come back as lists).

    Attributes:
        output: what the agent returned.
        agent_used: the agent that produced it (a fallback may differ from the one asked).
        input_tokens: prompt tokens of the original call.
        output_tokens: completion tokens of the original call.
        cost_usd: what the original call cost; a hit costs nothing again.
        created_at: wall-clock time (epoch seconds) the output was produced.

    Example:
        >>> CacheEntry(output="42", agent_used="solver", cost_usd=0.002).output
        '42'
    """

    output: Any
    agent_used: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    created_at: float = dataclasses.field(default_factory=time.time)

    def __post_init__(self) -> None:
        if (  # the common case in one expression (an entry is built per cache miss)
            type(self.agent_used) is str
            and type(self.input_tokens) is int
            and type(self.output_tokens) is int
            and type(self.cost_usd) is float
            and self.input_tokens >= 0
            and self.output_tokens >= 0
            and 0.0 <= self.cost_usd < math.inf
        ):
            return
        if not isinstance(self.agent_used, str):
            raise ConfigurationError(f"agent_used must be a str, got {self.agent_used!r}")
        for name in ("input_tokens", "output_tokens"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ConfigurationError(f"{name} must be an int >= 0, got {value!r}")
        if not (isinstance(self.cost_usd, int | float) and 0 <= self.cost_usd < math.inf):
            raise ConfigurationError(
                f"cost_usd must be a finite number >= 0, got {self.cost_usd!r}"
            )

    def to_record(self) -> dict[str, Any]:
        """Return the dict stored in the backend."""
        return {
            "v": _RECORD_VERSION,
            "output": self.output,
            "agent_used": self.agent_used,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": float(self.cost_usd),
            "created_at": float(self.created_at),
        }

    @classmethod
    def from_record(cls, record: Any) -> CacheEntry:
        """Rebuild an entry from :meth:`to_record` output.

        Raises:
            ValueError: ``record`` was not written by :meth:`to_record` of this version.
        """
        if not isinstance(record, Mapping) or record.get("v") != _RECORD_VERSION:
            raise ValueError(f"not a cache record of version {_RECORD_VERSION}")
        try:
            return cls(
                output=record["output"],
                agent_used=record["agent_used"],
                input_tokens=record["input_tokens"],
                output_tokens=record["output_tokens"],
                cost_usd=record["cost_usd"],
                created_at=record["created_at"],
            )
        except (KeyError, ConfigurationError) as exc:
            raise ValueError(f"malformed cache record: {exc}") from None


class CacheMode(StrEnum):
    """Whether a call reads the cache and whether it stores its result."""

    USE = "use"
    """Read; on a miss compute and store."""
    REFRESH = "refresh"
    """Skip the read, compute and overwrite."""
    READ_ONLY = "read_only"
    """Read; on a miss compute but do not store."""
    BYPASS = "bypass"
    """Neither read nor store, and share nothing with calls in flight."""

    @property
    def reads(self) -> bool:
        return self in (CacheMode.USE, CacheMode.READ_ONLY)

    @property
    def writes(self) -> bool:
        return self in (CacheMode.USE, CacheMode.REFRESH)


class CacheSource(StrEnum):
    """Where the entry returned by :meth:`IdempotencyCache.run` came from."""

    MISS = "miss"
    """Computed by this call (the only source that cost anything)."""
    HIT = "hit"
    """Read from the backend."""
    SHARED = "shared"
    """Computed by an identical call that was in flight at the same moment."""


@dataclasses.dataclass(slots=True, kw_only=True)  # not frozen: built on every miss
class _Outcome:
    entry: CacheEntry | None = None
    source: CacheSource = CacheSource.MISS
    error: Exception | None = None


# Set on a flight whose leader stopped without an outcome (cancelled, or a BaseException):
# followers then start over, and one of them leads a new flight.
_ABANDONED: Final = _Outcome()


class _Flight:
    """One computation in flight: its outcome once known, and the future its followers
    wait on, created by the first follower (most flights have none)."""

    __slots__ = ("future", "outcome")

    def __init__(self) -> None:
        self.outcome: _Outcome | None = None
        self.future: asyncio.Future[_Outcome] | None = None

    def finish(self, outcome: _Outcome) -> None:
        self.outcome = outcome
        if self.future is not None:
            self.future.set_result(outcome)

    async def wait(self) -> _Outcome:
        if self.outcome is not None:  # finished, still registered while it is stored
            return self.outcome
        if self.future is None:
            self.future = asyncio.get_running_loop().create_future()
        # shield: cancelling this follower must not cancel the future the others share.
        return await asyncio.shield(self.future)


# In-flight computations are per event loop: a Future can only be awaited on its own loop.
_FlightKey = tuple[asyncio.AbstractEventLoop, CacheMode, str]


def _store_all(entry: CacheEntry) -> bool:
    return True


class BoundedMemoryCache(BaseCache[Any]):
    """LangGraph's ``BaseCache`` in process memory, bounded: at most ``max_entries``
    entries (the least recently used go first) and none kept past its TTL. Values are
    stored serialised, as ``InMemoryCache`` does, so a caller changing an output never
    changes the cached one; a flat dict of immutable scalars (str, int, float, bool,
    None: a cache record of a text output) is kept as a copy instead, which nothing can
    change and which the serializer would give back equal. Thread-safe.

    Every operation is O(1) (amortised for the expiry sweep): entries sit in one
    ``OrderedDict`` in recency order, and each distinct TTL keeps its own ``OrderedDict``
    in insertion order, which for one TTL and a monotonic timer is also expiry order, so
    expired entries are dropped from the front without a heap. (cachetools' ``TLRUCache``,
    which allows any expiry function, pays a heap of Python-level comparisons on every
    write: about a quarter of a cache miss.)

    Args:
        max_entries: the most entries held.
        timer: monotonic seconds (inject a fake clock in tests).

    Raises:
        ConfigurationError: ``max_entries`` is not an int >= 1.
    """

    def __init__(
        self, *, max_entries: int = 10_000, timer: Callable[[], float] = time.monotonic
    ) -> None:
        check_number("max_entries", max_entries, at_least=1, at_most=MAX_COUNT, integer=True)
        super().__init__()
        self.max_entries = max_entries
        self._timer = timer
        # key -> (serde type, bytes, expiry deadline, ttl group), least recently used first.
        self._entries: OrderedDict[FullKey, tuple[Any, Any, float, float]] = OrderedDict()
        # ttl -> keys with that ttl, oldest write first (= soonest to expire).
        self._groups: dict[float, OrderedDict[FullKey, None]] = {}
        self._lock = threading.Lock()

    def _drop(self, key: FullKey) -> None:
        held = self._entries.pop(key)
        del self._groups[held[3]][key]

    def _expire(self, now: float) -> None:
        for ttl, keys in self._groups.items():
            if ttl == math.inf:
                continue
            while keys:
                key = next(iter(keys))
                if self._entries[key][2] > now:
                    break
                del keys[key]
                del self._entries[key]

    def get(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        found: dict[FullKey, Any] = {}
        for key in keys:
            value = self.get_one(key)
            if value is not _MISSING:
                found[key] = value
        return found

    def get_one(self, key: FullKey) -> Any:
        """The value of one key, or ``_MISSING``: ``get`` without its list and dict."""
        with self._lock:
            held = self._entries.get(key)
            if held is None:
                return _MISSING
            if held[2] <= self._timer():
                self._drop(key)
                return _MISSING
            self._entries.move_to_end(key)
        if held[0] is _PLAIN:
            return dict(held[1])
        return self.serde.loads_typed((held[0], held[1]))

    async def aget(self, keys: Sequence[FullKey]) -> dict[FullKey, Any]:
        return self.get(keys)

    def set(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        encoded = [(key, self._encoded(v), _ttl(ttl)) for key, (v, ttl) in pairs.items()]
        with self._lock:
            now = self._timer()
            self._expire(now)
            for key, held, ttl in encoded:
                self._put(key, held, ttl, now)

    def set_one(self, key: FullKey, value: Any, ttl: int | None) -> None:
        """``set`` of one pair, without building the mapping."""
        held = self._encoded(value)
        seconds = _ttl(ttl)
        with self._lock:
            now = self._timer()
            self._expire(now)
            self._put(key, held, seconds, now)

    def _put(self, key: FullKey, held: tuple[Any, Any], ttl: float, now: float) -> None:
        if key in self._entries:
            self._drop(key)
        elif len(self._entries) >= self.max_entries:
            self._drop(next(iter(self._entries)))
        self._entries[key] = (held[0], held[1], now + ttl, ttl)
        group = self._groups.get(ttl)
        if group is None:
            group = self._groups[ttl] = OrderedDict()
        group[key] = None

    def _encoded(self, value: Any) -> tuple[Any, Any]:
        if type(value) is dict and _IMMUTABLE.issuperset(map(type, value.values())):
            return _PLAIN, dict(value)
        return self.serde.dumps_typed(value)

    async def aset(self, pairs: Mapping[FullKey, tuple[Any, int | None]]) -> None:
        self.set(pairs)

    def clear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        with self._lock:
            if namespaces is None:
                self._entries.clear()
                self._groups.clear()
                return
            wanted = {tuple(ns) for ns in namespaces}
            for key in [k for k in self._entries if tuple(k[0]) in wanted]:
                self._drop(key)

    async def aclear(self, namespaces: Sequence[Namespace] | None = None) -> None:
        self.clear(namespaces)

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._timer())
            return len(self._entries)


_MISSING: Final = object()
_PLAIN: Final = object()  # the kind of a value kept as a copy, not serialised
_IMMUTABLE: Final = frozenset({str, int, float, bool, type(None)})


def _ttl(ttl: int | None) -> float:
    return math.inf if ttl is None else float(ttl)


class IdempotencyCache:
    """Cache of sub-agent outputs with single-flight, on a LangGraph ``BaseCache`` backend.

    Single-flight: while a call for a key is in flight, identical calls (same key, same mode,
    same event loop) wait for it instead of computing again, and report ``SHARED`` (or ``HIT``
    when the leader found the entry stored). If the leader's computation raises, every
    follower raises the same exception and nothing is stored; the next call computes again.
    If the leader is cancelled (its caller's deadline, a stop condition), its followers are
    not left waiting: one of them becomes the leader and computes. A cancelled follower
    affects nobody else. ``CancelledError`` always propagates.

    Backend failures never fail a call: a read error counts as a miss and a write error
    leaves the entry unstored; both emit :class:`CacheBackendWarning`.

    Args:
        backend: any LangGraph ``BaseCache``; by default a fresh ``BoundedMemoryCache``
            (at most ``max_entries``, expired entries dropped),
            ``SqliteCache(path=...)`` to share entries between processes. For outputs that
            are pydantic models of your own, give it
            ``serde=JsonPlusSerializer(allowed_msgpack_modules=[MyModel])``: LangGraph
            otherwise logs a warning on each read (and returns a dict in strict mode).
        ttl_s: lifetime of stored entries; ``None`` keeps them forever. Rounded up to whole
            seconds, the unit of LangGraph's backends.
        namespace: namespace of our entries in the backend (no commas: ``SqliteCache``
            joins namespaces with them).
        should_store: decides which computed entries are stored (all by default), e.g.
            ``lambda e: e.output is not None``.
        max_entries: the bound of the default in-memory backend (ignored with ``backend``):
            a long-lived process holds at most this many entries.

    Raises:
        ConfigurationError: ``ttl_s`` is not positive, or ``namespace`` is empty or has a comma.

    Example:
        >>> cache = IdempotencyCache(ttl_s=600)
        >>> async def call() -> CacheEntry:
        ...     return CacheEntry(output="hi", agent_used="greeter")
        >>> entry, source = asyncio.run(cache.run("k", call))
        >>> (entry.output, source)
        ('hi', <CacheSource.MISS: 'miss'>)
    """

    __slots__ = (
        "_backend",
        "_flights",
        "_memory",
        "_namespace",
        "_should_store",
        "_ttl",
        "_ttl_s",
    )

    def __init__(
        self,
        backend: BaseCache[Any] | None = None,
        *,
        ttl_s: float | None = 3600,
        namespace: str = "langgraph-fanout",
        should_store: Callable[[CacheEntry], bool] | None = None,
        max_entries: int = 10_000,
    ) -> None:
        check_number("IdempotencyCache ttl_s", ttl_s, above=0, at_most=MAX_SECONDS, optional=True)
        check_type("IdempotencyCache backend", backend, BaseCache, optional=True)
        check_number(
            "IdempotencyCache max_entries",
            max_entries,
            at_least=1,
            at_most=MAX_COUNT,
            integer=True,
        )
        if should_store is not None and not callable(should_store):
            raise ConfigurationError(
                "IdempotencyCache should_store must be a function or None, "
                f"got {shown(should_store)}"
            )
        if not isinstance(namespace, str) or not namespace or "," in namespace:
            raise ConfigurationError(
                f"namespace must be a non-empty str without commas, got {namespace!r}"
            )
        self._backend: BaseCache[Any] = (
            backend if backend is not None else BoundedMemoryCache(max_entries=max_entries)
        )
        # Our own in-memory backend never blocks: called directly, not through its
        # coroutine twins (a subclass may override either, so only the exact type).
        self._memory = self._backend if type(self._backend) is BoundedMemoryCache else None
        self._ttl_s = ttl_s
        self._ttl = None if ttl_s is None else math.ceil(ttl_s)
        self._namespace = namespace
        self._should_store = should_store or _store_all
        self._flights: dict[tuple[asyncio.AbstractEventLoop, CacheMode, str], _Flight] = {}

    @property
    def backend(self) -> BaseCache[Any]:
        """The LangGraph cache the entries live in."""
        return self._backend

    @property
    def ttl_s(self) -> float | None:
        """Lifetime of stored entries, as configured."""
        return self._ttl_s

    @property
    def namespace(self) -> str:
        """Namespace of our entries in the backend."""
        return self._namespace

    @property
    def in_flight(self) -> int:
        """Number of computations currently shared by single-flight."""
        return len(self._flights)

    def _full_key(self, key: str) -> FullKey:
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"cache key must be a non-empty str, got {key!r}")
        return ((self._namespace,), key)

    async def get(self, key: str) -> CacheEntry | None:
        """Return the stored entry for ``key``, or ``None`` if absent or expired.

        A value that is not a record of ours (another writer, an older version) counts as
        absent and emits :class:`CacheBackendWarning`.
        """
        return await self._get(self._full_key(key))

    async def _get(self, full: FullKey) -> CacheEntry | None:
        memory = self._memory
        if memory is not None:  # never blocks: read inline, no coroutine of the backend
            return self._decoded(full, memory.get_one(full))
        found = await self._backend.aget([full])
        return self._decoded(full, found.get(full, _MISSING))

    def _decoded(self, full: FullKey, record: Any) -> CacheEntry | None:
        if record is _MISSING:
            return None
        try:
            return CacheEntry.from_record(record)
        except ValueError as exc:
            warnings.warn(
                CacheBackendWarning(f"ignoring cache entry {full[1][:12]}...: {exc}"),
                stacklevel=3,
            )
            return None

    async def set(self, key: str, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key`` with the configured TTL (overwrites)."""
        if not isinstance(entry, CacheEntry):
            raise ConfigurationError(f"expected a CacheEntry, got {type(entry)!r}")
        await self._backend.aset({self._full_key(key): (entry.to_record(), self._ttl)})

    async def clear(self) -> None:
        """Delete every entry of this cache's namespace from the backend."""
        await self._backend.aclear([(self._namespace,)])

    async def run(
        self,
        key: str,
        compute: Callable[[], Awaitable[CacheEntry]],
        *,
        mode: CacheMode = CacheMode.USE,
    ) -> tuple[CacheEntry, CacheSource]:
        """Return the entry for ``key``: stored, shared with an identical call, or computed.

        Args:
            key: from :func:`cache_key`.
            compute: makes the call; awaited at most once per call of ``run``, and only
                when no stored or in-flight result can be used.
            mode: see :class:`CacheMode`. Calls share a flight only with calls of the same
                mode, so a ``REFRESH`` never receives a stale stored entry.

        Raises:
            Exception: whatever ``compute`` raised (also raised in every follower).
            asyncio.CancelledError: this call was cancelled.

        Example:
            >>> cache = IdempotencyCache()
            >>> async def call() -> CacheEntry:
            ...     return CacheEntry(output=4, agent_used="calc")
            >>> async def twice() -> list[CacheSource]:
            ...     return [(await cache.run("2+2", call))[1] for _ in range(2)]
            >>> asyncio.run(twice())
            [<CacheSource.MISS: 'miss'>, <CacheSource.HIT: 'hit'>]
        """
        if type(mode) is not CacheMode:
            mode = CacheMode(mode)
        full_key = self._full_key(key)
        if mode is CacheMode.BYPASS:
            return _checked(await compute()), CacheSource.MISS
        flight_key = (asyncio.get_running_loop(), mode, key)
        while True:
            flight = self._flights.get(flight_key)
            if flight is None:
                return await self._lead(flight_key, full_key, compute, mode)
            outcome = await flight.wait()
            if outcome is _ABANDONED:
                continue
            if outcome.error is not None:
                raise outcome.error
            assert outcome.entry is not None
            source = CacheSource.HIT if outcome.source is CacheSource.HIT else CacheSource.SHARED
            return outcome.entry, source

    async def _lead(
        self,
        flight_key: _FlightKey,
        full_key: FullKey,
        compute: Callable[[], Awaitable[CacheEntry]],
        mode: CacheMode,
    ) -> tuple[CacheEntry, CacheSource]:
        flight = _Flight()
        # Registered before the first await, so every identical call from now on joins it.
        self._flights[flight_key] = flight
        try:
            try:
                stored = None
                if mode.reads:
                    try:
                        stored = await self._get(full_key)
                    except Exception as exc:
                        warnings.warn(
                            CacheBackendWarning(f"cache read failed, computing instead: {exc!r}"),
                            stacklevel=2,
                        )
                if stored is not None:
                    flight.finish(_Outcome(entry=stored, source=CacheSource.HIT))
                    return stored, CacheSource.HIT
                entry = _checked(await compute())
            except Exception as exc:
                # Outcomes travel as results, not exceptions: a future holding an exception
                # nobody retrieves would be logged as an error when no follower joined.
                flight.finish(_Outcome(error=exc))
                raise
            flight.finish(_Outcome(entry=entry, source=CacheSource.MISS))
            # Still registered while storing: calls arriving now take the result at once
            # instead of missing the backend and computing again.
            if mode.writes and self._should_store(entry):
                try:
                    record = entry.to_record()
                    if self._memory is not None:
                        self._memory.set_one(full_key, record, self._ttl)
                    else:
                        await self._backend.aset({full_key: (record, self._ttl)})
                except Exception as exc:
                    warnings.warn(
                        CacheBackendWarning(f"cache write failed, entry not stored: {exc!r}"),
                        stacklevel=2,
                    )
            return entry, CacheSource.MISS
        finally:
            if flight.outcome is None:
                flight.finish(_ABANDONED)
            if self._flights.get(flight_key) is flight:
                del self._flights[flight_key]

    def __repr__(self) -> str:
        ttl = "none" if self._ttl_s is None else f"{self._ttl_s:g}s"
        return (
            f"<IdempotencyCache {type(self._backend).__name__} namespace={self._namespace!r} "
            f"ttl={ttl} in_flight={len(self._flights)}>"
        )


def _checked(entry: Any) -> CacheEntry:
    if not isinstance(entry, CacheEntry):
        raise ConfigurationError(f"compute must return a CacheEntry, got {type(entry)!r}")
    return entry
