"""Requests-per-second and tokens-per-minute limits, shared by every dispatch of a process.

A :class:`RateLimiter` is two ``aiolimiter.AsyncLimiter`` leaky buckets (one per limit) and a
pause deadline. Waiters are woken by timers exactly when capacity frees up; nothing polls.

Burst semantics (leaky bucket of capacity ``B`` draining at rate ``r``): in any window of
``W`` seconds at most ``B + r * W`` units are admitted.

* Requests: ``B = request_burst``, 1 by default, so requests are paced ``1 / rps`` apart
  (the first one at once) and any half-open window of ``W`` seconds admits at most
  ``ceil(rps * W)`` of them. ``requests_per_second=0.5`` is ``AsyncLimiter(1, 2.0)``.
* Tokens: ``B = token_burst``, one minute's worth (``tokens_per_minute``) by default, as
  providers allow; any 60 s window then admits at most ``token_burst + tokens_per_minute``.
  A request for more tokens than ``B`` would never fit: it is clamped to ``B`` (it waits for
  an empty bucket and then takes it all) instead of deadlocking.

aiolimiter binds a limiter to the first event loop that uses it. A :class:`RateLimiter` keeps
one pair of buckets per running loop, so it can be created at import time and used from any
loop; limits are therefore per event loop (one loop per process is the usual case).
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from aiolimiter import AsyncLimiter

from langgraph_fanout.core.checks import MAX_COUNT, check_number, check_text, check_type
from langgraph_fanout.errors import ConfigurationError


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimits:
    """What a :class:`RateLimiter` allows; ``None`` means that limit is off.

    Args:
        requests_per_second: sustained request rate.
        tokens_per_minute: sustained token rate (prompt + expected completion tokens).
        request_burst: requests that may start back to back after an idle period (>= 1).
        token_burst: token capacity of the bucket (>= 1); ``None`` means ``tokens_per_minute``.

    Raises:
        ConfigurationError: a rate is not a finite number > 0, or a burst is below 1.

    Example:
        >>> RateLimits(requests_per_second=0.5).request_period_s
        2.0
    """

    requests_per_second: float | None = None
    tokens_per_minute: float | None = None
    request_burst: float = 1
    token_burst: float | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_second", "tokens_per_minute"):
            check_number(name, getattr(self, name), above=0, at_most=MAX_COUNT, optional=True)
        # Below 1 a single request (or token) could never be admitted.
        check_number("request_burst", self.request_burst, at_least=1, at_most=MAX_COUNT)
        check_number("token_burst", self.token_burst, at_least=1, at_most=MAX_COUNT, optional=True)

    @property
    def request_period_s(self) -> float | None:
        """Seconds for the request bucket to drain ``request_burst`` requests."""
        if self.requests_per_second is None:
            return None
        return self.request_burst / self.requests_per_second

    @property
    def token_capacity(self) -> float | None:
        """Most tokens one acquire can take (larger requests are clamped to it)."""
        if self.tokens_per_minute is None:
            return None
        return self.token_burst if self.token_burst is not None else self.tokens_per_minute

    def __str__(self) -> str:
        parts = []
        if self.requests_per_second is not None:
            parts.append(f"rps={self.requests_per_second:g}")
            if self.request_burst != 1:
                parts.append(f"request_burst={self.request_burst:g}")
        if self.tokens_per_minute is not None:
            parts.append(f"tpm={self.tokens_per_minute:g}")
            if self.token_burst is not None:
                parts.append(f"token_burst={self.token_burst:g}")
        return " ".join(parts) or "unlimited"


def _bucket(capacity: float, per_second: float) -> AsyncLimiter:
    """A leaky bucket holding ``capacity`` that drains ``per_second``."""
    return AsyncLimiter(capacity, capacity / per_second)


class _LoopState:
    """The buckets, pause deadline and counters of one limiter on one event loop."""

    __slots__ = (
        "admitted",
        "paused_until",
        "requests",
        "resume_timer",
        "resumed",
        "tokens",
        "tokens_admitted",
        "waiting",
    )

    def __init__(self, limits: RateLimits) -> None:
        self.requests: AsyncLimiter | None = None
        self.tokens: AsyncLimiter | None = None
        if limits.requests_per_second is not None:
            # Capacity request_burst, draining requests_per_second: 0.5 rps -> (1, 2.0).
            self.requests = _bucket(limits.request_burst, limits.requests_per_second)
        if limits.tokens_per_minute is not None:
            capacity = limits.token_capacity or limits.tokens_per_minute
            self.tokens = _bucket(capacity, limits.tokens_per_minute / 60)
        # A pause is one timer that sets ``resumed``; every acquirer waits on the event.
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.resume_timer: asyncio.TimerHandle | None = None
        self.paused_until = -math.inf
        self.waiting = 0
        self.admitted = 0
        self.tokens_admitted = 0.0


class RateLimiter:
    """Requests/s and tokens/min limits with a pause for ``Retry-After``, without polling.

    Args:
        requests_per_second: sustained request rate, e.g. ``0.5`` for one every 2 s;
            ``None`` for no request limit.
        tokens_per_minute: sustained token rate; ``None`` for no token limit.
        name: shown in ``repr`` and errors (the registry key for shared limiters).
        request_burst: see :class:`RateLimits` (default 1: evenly paced).
        token_burst: see :class:`RateLimits` (default: one minute of tokens).

    Raises:
        ConfigurationError: a rate is not a finite number > 0, or a burst is below 1.

    Example:
        >>> limiter = RateLimiter(requests_per_second=20, tokens_per_minute=30_000, name="openai")
        >>> async def call() -> float:
        ...     return await limiter.acquire(tokens=1_200)  # seconds spent waiting
        >>> asyncio.run(call()) < 0.01
        True
    """

    __slots__ = ("_limits", "_lock", "_name", "_states", "_token_capacity")

    def __init__(
        self,
        *,
        requests_per_second: float | None = None,
        tokens_per_minute: float | None = None,
        name: str = "default",
        request_burst: float = 1,
        token_burst: float | None = None,
    ) -> None:
        self._limits = RateLimits(
            requests_per_second=requests_per_second,
            tokens_per_minute=tokens_per_minute,
            request_burst=request_burst,
            token_burst=token_burst,
        )
        check_text("RateLimiter.name", name)
        self._name = name
        self._token_capacity = self._limits.token_capacity or 0.0
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_limits(cls, limits: RateLimits, *, name: str = "default") -> RateLimiter:
        """Build a limiter from a :class:`RateLimits` value."""
        return cls(
            requests_per_second=limits.requests_per_second,
            tokens_per_minute=limits.tokens_per_minute,
            name=name,
            request_burst=limits.request_burst,
            token_burst=limits.token_burst,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def limits(self) -> RateLimits:
        """The configured limits (a frozen value)."""
        return self._limits

    def _state(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        state = self._states.get(loop)
        if state is None:
            with self._lock:
                # Forget loops that were closed: their waiters are gone with them.
                for old in [lp for lp in self._states if lp.is_closed()]:
                    del self._states[old]
                state = self._states.setdefault(loop, _LoopState(self._limits))
        return state

    async def acquire(self, tokens: float = 0) -> float:
        """Wait until one request of ``tokens`` tokens may start; return the seconds waited.

        Tokens are taken first and the request slot last, so releases keep the request
        pacing even when tokens were the bottleneck. A pause (:meth:`pause`) holds every
        acquirer until it ends, including those already queued in a bucket.

        Args:
            tokens: expected tokens of the request (prompt + maximum completion); ignored
                without a token limit; clamped to the bucket capacity (see the module doc).

        Raises:
            ConfigurationError: ``tokens`` is negative or not a number.
            asyncio.CancelledError: the caller was cancelled while waiting (capacity already
                taken is not returned: a cancelled request may have reached the provider).
        """
        if isinstance(tokens, bool) or not isinstance(tokens, int | float) or not tokens >= 0:
            raise ConfigurationError(f"tokens must be a number >= 0, got {tokens!r}")
        loop = asyncio.get_running_loop()
        state = self._state(loop)
        start = loop.time()
        state.waiting += 1
        try:
            if not state.resumed.is_set():
                await state.resumed.wait()
            if state.tokens is not None and tokens > 0:
                amount = min(float(tokens), self._token_capacity)
                await state.tokens.acquire(amount)
                state.tokens_admitted += amount
            while True:
                if state.requests is not None:
                    await state.requests.acquire(1)
                if state.resumed.is_set():
                    break
                # A pause began while we queued: wait it out, then queue for a fresh slot so
                # that the requests held by the pause leave paced, not all at its end.
                await state.resumed.wait()
        finally:
            state.waiting -= 1
        state.admitted += 1
        return loop.time() - start

    def pause(self, seconds: float) -> None:
        """Hold every acquirer on the running loop for ``seconds`` (e.g. a 429's Retry-After).

        Pauses never shorten one already running: the later end wins.

        Raises:
            ConfigurationError: ``seconds`` is negative or not finite.
            RuntimeError: no event loop is running.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ConfigurationError(f"pause seconds must be a number, got {seconds!r}")
        if not 0 <= seconds < math.inf:
            raise ConfigurationError(f"pause seconds must be finite and >= 0, got {seconds!r}")
        loop = asyncio.get_running_loop()
        state = self._state(loop)
        until = loop.time() + seconds
        if until <= state.paused_until or seconds == 0:
            return
        state.paused_until = until
        state.resumed.clear()
        if state.resume_timer is not None:
            state.resume_timer.cancel()
        state.resume_timer = loop.call_at(until, state.resumed.set)

    @property
    def pause_remaining_s(self) -> float:
        """Seconds left of the current pause on the running loop (0 when not paused)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return 0.0
        state = self._states.get(loop)
        if state is None or state.resumed.is_set():
            return 0.0
        return max(0.0, state.paused_until - loop.time())

    @property
    def waiting(self) -> int:
        """Acquirers currently waiting, over all event loops."""
        return sum(s.waiting for s in list(self._states.values()))

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        states = list(self._states.values())
        admitted = sum(s.admitted for s in states)
        tokens = sum(s.tokens_admitted for s in states)
        state = f"waiting={sum(s.waiting for s in states)} admitted={admitted}"
        if self._limits.tokens_per_minute is not None:
            state += f" tokens_admitted={tokens:g}"
        if (paused := self.pause_remaining_s) > 0:
            state += f" paused_for={paused:.3g}s"
        return f"<RateLimiter {self._name!r} {self._limits} [{state}]>"


class RateLimiterRegistry:
    """One :class:`RateLimiter` per key (``"openai:gpt-4o"``, ``"anthropic"``...).

    Asking for a key again returns the same limiter, so every dispatch of the process,
    nested ones included, draws from one budget. Asking with *different* limits raises
    :class:`~langgraph_fanout.errors.ConfigurationError` rather than silently keeping one
    of the two; asking with no limits at all returns whatever is registered (and registers
    an unlimited limiter that can still be paused if the key is new).

    Example:
        >>> registry = RateLimiterRegistry()
        >>> a = registry.get("openai", requests_per_second=10)
        >>> registry.get("openai") is a is registry.get("openai", requests_per_second=10)
        True
    """

    __slots__ = ("_limiters", "_lock")

    def __init__(self) -> None:
        self._limiters: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def get(
        self,
        key: str,
        *,
        requests_per_second: float | None = None,
        tokens_per_minute: float | None = None,
        request_burst: float = 1,
        token_burst: float | None = None,
    ) -> RateLimiter:
        """Return the limiter of ``key``, creating it with these limits if it is new.

        Raises:
            ConfigurationError: the key is registered with other limits, or a limit is invalid.
        """
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"rate limiter key must be a non-empty str, got {key!r}")
        wanted = RateLimits(
            requests_per_second=requests_per_second,
            tokens_per_minute=tokens_per_minute,
            request_burst=request_burst,
            token_burst=token_burst,
        )
        with self._lock:
            limiter = self._limiters.get(key)
            if limiter is None:
                limiter = self._limiters[key] = RateLimiter.from_limits(wanted, name=key)
            elif wanted != limiter.limits and wanted != _UNSPECIFIED:
                raise ConfigurationError(
                    f"rate limiter {key!r} is already registered with {limiter.limits}; "
                    f"asked again with {wanted}: configure each key once"
                )
            return limiter

    def __contains__(self, key: object) -> bool:
        return key in self._limiters

    def __len__(self) -> int:
        return len(self._limiters)

    def clear(self) -> None:
        """Forget every limiter (tests; limiters already handed out keep working)."""
        with self._lock:
            self._limiters.clear()

    def __repr__(self) -> str:
        return f"<RateLimiterRegistry keys={sorted(self._limiters)}>"


_UNSPECIFIED: Final = RateLimits()
_DEFAULT_REGISTRY: Final = RateLimiterRegistry()


def default_registry() -> RateLimiterRegistry:
    """Return the process-wide registry used by :func:`shared_limiter`."""
    return _DEFAULT_REGISTRY


def shared_limiter(
    key: str,
    *,
    requests_per_second: float | None = None,
    tokens_per_minute: float | None = None,
    request_burst: float = 1,
    token_burst: float | None = None,
) -> RateLimiter:
    """Return the process-wide limiter of ``key`` (see :class:`RateLimiterRegistry`).

    Raises:
        ConfigurationError: ``key`` is registered with other limits, or a limit is invalid.

    Example:
        >>> limiter = shared_limiter("doc:example", requests_per_second=5)
        >>> shared_limiter("doc:example") is limiter
        True
    """
    return _DEFAULT_REGISTRY.get(
        key,
        requests_per_second=requests_per_second,
        tokens_per_minute=tokens_per_minute,
        request_burst=request_burst,
        token_burst=token_burst,
    )


class EndpointPauses:
    """The provider's Retry-After, held for every call to the endpoint that sent it.

    A 429 or an overloaded 503 with a Retry-After speaks for the endpoint (the account's
    quota, the deployment's queue), not for the one request: after it, every call to that
    endpoint waits until the time the provider named, whether or not a rate limit is set.
    Keys are what is called (``SubAgent.circuit_key``: a chat model's model and endpoint,
    else the object), so a paused endpoint never holds calls to another. Each held call
    leaves at the end of the pause plus a random share of it up to ``spread`` so that they
    do not all arrive at once. Pauses are per event loop, like :class:`RateLimiter`.

    Args:
        spread: the largest random share of a pause added to each held call's wait.
        rng: source of that spread.

    Example:
        >>> pauses = EndpointPauses()
        >>> async def held() -> float:
        ...     pauses.pause("gpt-4o-mini@api.openai.com", 0.01)
        ...     return await pauses.wait("gpt-4o-mini@api.openai.com")
        >>> asyncio.run(held()) >= 0.01
        True
    """

    __slots__ = ("_limiters", "_lock", "_prune_at", "rng", "spread")

    def __init__(self, *, spread: float = 0.1, rng: random.Random | None = None) -> None:
        check_number("EndpointPauses.spread", spread, at_least=0, below=1)
        check_type("EndpointPauses.rng", rng, random.Random, optional=True)
        self.spread = float(spread)
        self.rng = rng if rng is not None else random.Random()
        self._limiters: dict[Hashable, RateLimiter] = {}
        self._lock = threading.Lock()
        self._prune_at = 64

    def pause(self, key: Hashable, seconds: float) -> None:
        """Hold every call to ``key`` on the running loop for ``seconds`` (the later end wins).

        Raises:
            ConfigurationError: ``seconds`` is negative or not finite.
            RuntimeError: no event loop is running.
        """
        limiter = self._limiters.get(key)
        if limiter is None:
            with self._lock:
                limiter = self._limiters.setdefault(key, RateLimiter(name=str(key)))
                if len(self._limiters) >= self._prune_at:
                    self._prune()
        limiter.pause(seconds)

    def paused(self, key: Hashable) -> bool:
        """Whether calls to ``key`` must wait for its pause now (``wait`` would sleep)."""
        limiter = self._limiters.get(key)
        return limiter is not None and limiter.pause_remaining_s > 0

    async def wait(self, key: Hashable, *, rng: random.Random | None = None) -> float:
        """Wait out the pause of ``key``, if any, plus its spread; return the seconds waited.

        Args:
            key: the endpoint's key.
            rng: source of the spread for this call (the registry's own when omitted).
        """
        limiter = self._limiters.get(key)
        if limiter is None:
            return 0.0
        paused = limiter.pause_remaining_s
        if paused <= 0:
            return 0.0
        waited = await limiter.acquire()
        source = self.rng if rng is None else rng
        extra = source.uniform(0.0, self.spread * paused) if self.spread else 0.0
        if extra > 0:
            await asyncio.sleep(extra)
        return waited + extra

    def remaining_s(self, key: Hashable) -> float:
        """Seconds left of the pause of ``key`` on the running loop (0 when not paused)."""
        limiter = self._limiters.get(key)
        return 0.0 if limiter is None else limiter.pause_remaining_s

    def _prune(self) -> None:
        """Forget the keys of objects that no longer exist (their keys never match)."""
        for key in [k for k in self._limiters if not getattr(k, "alive", True)]:
            del self._limiters[key]
        self._prune_at = max(64, 2 * len(self._limiters))

    def reset(self) -> None:
        """Forget every pause."""
        with self._lock:
            self._limiters.clear()

    def __len__(self) -> int:
        return len(self._limiters)

    def __repr__(self) -> str:
        return f"<EndpointPauses endpoints={len(self)}>"


default_pauses: Final = EndpointPauses()
"""The process-wide pauses used when a dispatch does not pass its own."""
