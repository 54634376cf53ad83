"""Tests of the rate limiter, on a virtual-time event loop (nothing here waits for real)."""

from __future__ import annotations

import asyncio
import math
import uuid
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fakeclock
from langgraph_fanout.errors import ConfigurationError
from langgraph_fanout.guards.ratelimit import (
    RateLimiter,
    RateLimiterRegistry,
    RateLimits,
    default_registry,
    shared_limiter,
)

# Virtual time is exact but for 1 ns per loop iteration (see fakeclock.TICK_S).
EPS = 1e-6


def now() -> float:
    return asyncio.get_running_loop().time()


async def release_times(limiter: RateLimiter, count: int, tokens: float = 0) -> list[float]:
    """Start ``count`` acquirers at once; return when each was let through, in order."""
    released: list[float] = []

    async def one() -> None:
        await limiter.acquire(tokens)
        released.append(now())

    async with asyncio.TaskGroup() as tg:
        for _ in range(count):
            tg.create_task(one())
    return released


def test_fake_clock_jumps_instead_of_sleeping() -> None:
    async def scenario() -> float:
        await asyncio.sleep(3600)
        return now()

    assert fakeclock.run(scenario()) == pytest.approx(3600.0, abs=EPS)


def test_requests_are_paced_one_per_interval() -> None:
    limiter = RateLimiter(requests_per_second=20, name="openai")
    released = fakeclock.run(release_times(limiter, 100))
    # Burst 1: the first goes at once, the k-th at k/20 s (aiolimiter wakes each waiter by a
    # timer at the exact moment the bucket has room again).
    assert released == pytest.approx([k / 20 for k in range(100)], abs=EPS)


def test_any_one_second_window_admits_at_most_the_rate() -> None:
    limiter = RateLimiter(requests_per_second=20)
    released = fakeclock.run(release_times(limiter, 100))
    for start in released:
        in_window = [t for t in released if start - EPS <= t < start + 1 - EPS]
        assert len(in_window) <= math.ceil(20 * 1.0)


def test_request_burst_lets_that_many_through_at_once() -> None:
    limiter = RateLimiter(requests_per_second=10, request_burst=5)
    released = fakeclock.run(release_times(limiter, 8))
    assert released == pytest.approx([0, 0, 0, 0, 0, 0.1, 0.2, 0.3], abs=EPS)


def test_half_a_request_per_second() -> None:
    limiter = RateLimiter(requests_per_second=0.5)
    assert limiter.limits.request_period_s == 2.0
    released = fakeclock.run(release_times(limiter, 4))
    assert released == pytest.approx([0, 2, 4, 6], abs=EPS)


def test_acquire_returns_the_seconds_waited() -> None:
    async def scenario() -> list[float]:
        limiter = RateLimiter(requests_per_second=4)
        await asyncio.sleep(10)
        return list(await asyncio.gather(*(limiter.acquire() for _ in range(3))))

    assert fakeclock.run(scenario()) == pytest.approx([0, 0.25, 0.5], abs=EPS)


def test_tokens_are_paced_by_tokens_per_minute() -> None:
    # 600 tokens/min with a 100-token bucket: 10 tokens/s, a 100-token request every 10 s.
    limiter = RateLimiter(tokens_per_minute=600, token_burst=100)
    released = fakeclock.run(release_times(limiter, 4, tokens=100))
    assert released == pytest.approx([0, 10, 20, 30], abs=EPS)


def test_a_request_larger_than_the_bucket_is_clamped_not_deadlocked() -> None:
    async def scenario() -> list[float]:
        limiter = RateLimiter(tokens_per_minute=600)  # bucket: one minute, 600 tokens
        first = await limiter.acquire(10_000)
        second = await limiter.acquire(600)
        assert "tokens_admitted=1200" in repr(limiter)
        return [first, second]

    # The clamped request filled the bucket: the next full-bucket request waits 60 s.
    assert fakeclock.run(scenario()) == pytest.approx([0, 60], abs=EPS)


def test_both_limits_apply_and_smaller_token_requests_go_first() -> None:
    async def scenario() -> dict[str, float]:
        # 1 token/s with a 3-token bucket; requests every 0.5 s.
        limiter = RateLimiter(requests_per_second=2, tokens_per_minute=60, token_burst=3)
        released: dict[str, float] = {}

        async def one(name: str, tokens: int) -> None:
            await limiter.acquire(tokens)
            released[name] = now()

        async with asyncio.TaskGroup() as tg:
            for name, tokens in [("a", 3), ("big", 2), ("b", 1), ("c", 1)]:
                tg.create_task(one(name, tokens))
        return released

    released = fakeclock.run(scenario())
    # "a" empties the bucket; aiolimiter then serves the smallest queued request first
    # (b, c need one token each, at 1 s and 2 s); "big" needs two more and goes at 4 s.
    assert released == pytest.approx({"a": 0, "b": 1, "c": 2, "big": 4}, abs=EPS)


def test_requests_stay_paced_when_tokens_are_plentiful() -> None:
    limiter = RateLimiter(requests_per_second=2, tokens_per_minute=60_000)
    released = fakeclock.run(release_times(limiter, 4, tokens=10))
    assert released == pytest.approx([0, 0.5, 1, 1.5], abs=EPS)


@given(
    tpm=st.integers(min_value=60, max_value=50_000),
    burst_fraction=st.sampled_from([None, 0.1, 0.5]),
    requests=st.lists(
        st.tuples(st.floats(min_value=0, max_value=90), st.floats(min_value=0.01, max_value=1.5)),
        min_size=1,
        max_size=40,
    ),
)
@settings(max_examples=60, deadline=None)
def test_tokens_in_any_minute_stay_within_rate_plus_burst(
    tpm: int, burst_fraction: float | None, requests: list[tuple[float, float]]
) -> None:
    token_burst = None if burst_fraction is None else max(1.0, tpm * burst_fraction)
    limiter = RateLimiter(tokens_per_minute=tpm, token_burst=token_burst)
    capacity = limiter.limits.token_capacity
    assert capacity is not None

    async def scenario() -> list[tuple[float, float]]:
        admitted: list[tuple[float, float]] = []

        async def one(at: float, share: float) -> None:
            await asyncio.sleep(at)
            tokens = capacity * share  # shares above 1 are clamped to the capacity
            await limiter.acquire(tokens)
            admitted.append((now(), min(tokens, capacity)))

        async with asyncio.TaskGroup() as tg:
            for at, share in requests:
                tg.create_task(one(at, share))
        return admitted

    admitted = fakeclock.run(scenario())
    assert len(admitted) == len(requests)
    bound = capacity + tpm  # bucket capacity + one minute of refill
    for start, _ in admitted:
        in_window = sum(n for t, n in admitted if start - EPS <= t <= start + 60 + EPS)
        assert in_window <= bound * (1 + 1e-9)


def test_pause_holds_every_acquirer_until_it_ends() -> None:
    async def scenario() -> tuple[list[float], list[float]]:
        limiter = RateLimiter(requests_per_second=20)
        limiter.pause(5)
        assert limiter.pause_remaining_s == 5
        assert "paused_for=5s" in repr(limiter)
        waited = await asyncio.gather(*(limiter.acquire() for _ in range(3)))
        return list(waited), [now()]

    waited, end = fakeclock.run(scenario())
    assert waited == pytest.approx([5, 5.05, 5.1], abs=EPS)
    assert end == pytest.approx([5.1], abs=EPS)


def test_pause_during_a_queue_holds_the_rest_and_keeps_pacing_after() -> None:
    async def scenario() -> list[float]:
        limiter = RateLimiter(requests_per_second=20)

        async def pause_at_0_12() -> None:
            await asyncio.sleep(0.12)
            limiter.pause(5)  # e.g. a 429 with Retry-After: 5

        async with asyncio.TaskGroup() as tg:
            tg.create_task(pause_at_0_12())
            released = tg.create_task(release_times(limiter, 10))
        return released.result()

    released = fakeclock.run(scenario())
    before = [0, 0.05, 0.1]
    after = [5.12 + 0.05 * i for i in range(7)]
    assert released == pytest.approx(before + after, abs=1e-6)


def test_a_longer_pause_extends_a_shorter_one_never_shortens() -> None:
    async def scenario() -> list[float]:
        limiter = RateLimiter()  # no rates: a pause-only limiter
        limiter.pause(5)
        limiter.pause(1)  # shorter: ignored
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(2)
        limiter.pause(10)  # now until t=12
        first = await waiter
        second = await limiter.acquire()
        return [first, second, now()]

    assert fakeclock.run(scenario()) == pytest.approx([12, 0, 12], abs=EPS)


def test_unlimited_limiter_never_waits() -> None:
    limiter = RateLimiter()
    assert fakeclock.run(release_times(limiter, 50, tokens=10**9)) == pytest.approx(
        [0] * 50, abs=EPS
    )
    assert str(limiter.limits) == "unlimited"


def test_cancelled_waiter_frees_its_place() -> None:
    async def scenario() -> tuple[list[float], str]:
        limiter = RateLimiter(requests_per_second=1, name="slow")
        await limiter.acquire()
        doomed = asyncio.ensure_future(limiter.acquire())
        later = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0.5)
        shown = repr(limiter)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        waited = await later
        return [waited, now(), limiter.waiting], shown

    (waited, at, waiting), shown = fakeclock.run(scenario())
    assert (waited, at, waiting) == pytest.approx((1, 1, 0), abs=EPS)
    assert shown == "<RateLimiter 'slow' rps=1 [waiting=2 admitted=1]>"


def test_one_limiter_works_on_successive_event_loops_without_warnings() -> None:
    limiter = RateLimiter(requests_per_second=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # aiolimiter warns when reused across loops
        first = fakeclock.run(release_times(limiter, 3))
        second = fakeclock.run(release_times(limiter, 3), start=100.0)
        third = asyncio.run(limiter.acquire())
    assert first == pytest.approx([0, 0.1, 0.2], abs=EPS)
    assert second == pytest.approx([100, 100.1, 100.2], abs=EPS)
    assert third == pytest.approx(0, abs=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"requests_per_second": 0}, "requests_per_second must be a finite number > 0"),
        ({"requests_per_second": -1}, "requests_per_second must be a finite number > 0"),
        ({"requests_per_second": float("nan")}, "requests_per_second must be a finite number > 0"),
        ({"tokens_per_minute": float("inf")}, "tokens_per_minute must be a finite number > 0"),
        ({"tokens_per_minute": True}, "tokens_per_minute must be a finite number > 0"),
        ({"requests_per_second": 1, "request_burst": 0.5}, "request_burst must be .* >= 1"),
        ({"tokens_per_minute": 10, "token_burst": 0}, "token_burst must be a finite number >= 1"),
    ],
)
def test_limits_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        RateLimiter(**kwargs)
    assert isinstance(info.value, ValueError)


def test_acquire_and_pause_arguments_are_validated() -> None:
    async def scenario() -> None:
        limiter = RateLimiter(requests_per_second=1)
        with pytest.raises(ConfigurationError, match="tokens must be a number >= 0"):
            await limiter.acquire(-1)
        with pytest.raises(ConfigurationError, match="finite and >= 0"):
            limiter.pause(-1)
        with pytest.raises(ConfigurationError, match="finite and >= 0"):
            limiter.pause(float("inf"))

    fakeclock.run(scenario())


def test_async_with_acquires_one_request() -> None:
    async def scenario() -> float:
        limiter = RateLimiter(requests_per_second=2)
        async with limiter:
            pass
        async with limiter:
            return now()

    assert fakeclock.run(scenario()) == pytest.approx(0.5, abs=EPS)


# --------------------------------------------------------------------------- registry


def test_registry_returns_one_limiter_per_key() -> None:
    registry = RateLimiterRegistry()
    openai = registry.get("openai:gpt-4o", requests_per_second=20, tokens_per_minute=30_000)
    assert registry.get("openai:gpt-4o", requests_per_second=20, tokens_per_minute=30_000) is openai
    assert registry.get("openai:gpt-4o") is openai  # no limits given: a lookup
    assert registry.get("anthropic", requests_per_second=5) is not openai
    assert openai.name == "openai:gpt-4o"
    assert "openai:gpt-4o" in registry and len(registry) == 2


def test_registry_refuses_other_limits_for_a_known_key() -> None:
    registry = RateLimiterRegistry()
    registry.get("openai", requests_per_second=20)
    with pytest.raises(ConfigurationError) as info:
        registry.get("openai", requests_per_second=10)
    assert str(info.value) == (
        "rate limiter 'openai' is already registered with rps=20; asked again with rps=10: "
        "configure each key once"
    )


def test_shared_limiter_is_process_wide_and_shared_by_nested_tasks() -> None:
    key = f"test:{uuid.uuid4()}"

    async def scenario() -> list[float]:
        outer = shared_limiter(key, requests_per_second=10)
        released: list[float] = []

        async def nested() -> None:
            # A nested dispatch asks by key only and draws from the same budget.
            inner = shared_limiter(key)
            assert inner is outer
            await inner.acquire()
            released.append(now())

        async with asyncio.TaskGroup() as tg:
            for _ in range(2):
                tg.create_task(nested())
            tg.create_task(nested())
        return released

    assert fakeclock.run(scenario()) == pytest.approx([0, 0.1, 0.2], abs=EPS)
    assert key in default_registry()


def test_limits_value_is_frozen_and_printable() -> None:
    limits = RateLimits(requests_per_second=0.5, tokens_per_minute=1000, token_burst=200)
    assert str(limits) == "rps=0.5 tpm=1000 token_burst=200"
    assert limits.token_capacity == 200
    with pytest.raises(AttributeError):
        limits.requests_per_second = 1  # type: ignore[misc]
    assert RateLimiter.from_limits(limits, name="x").limits == limits
