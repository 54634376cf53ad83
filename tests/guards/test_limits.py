"""DispatchResourceLimits validation, and the error tree's contract."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from langgraph_fanout import errors
from langgraph_fanout.guards.limits import DispatchResourceLimits


def test_defaults_do_not_throttle_silently() -> None:
    limits = DispatchResourceLimits()
    assert limits.requests_per_second is None
    assert limits.tokens_per_minute is None
    assert limits.max_total_cost_usd is None
    assert limits.max_concurrent == 10


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_concurrent": 0}, "max_concurrent must be an int >= 1"),
        ({"max_concurrent": 2.5}, "max_concurrent must be an int"),
        ({"max_total_cost_usd": -1}, "max_total_cost_usd must be a finite number >= 0"),
        ({"max_failure_rate": 1.5}, "max_failure_rate must be a finite number >= 0 and < 1"),
        ({"max_agent_duration_s": 0}, "max_agent_duration_s must be a finite number > 0"),
        ({"max_total_duration_s": float("inf")}, "finite"),
        ({"requests_per_second": float("nan")}, "got nan"),
        ({"max_dispatch_depth": 0}, "max_dispatch_depth must be an int >= 1"),
        ({"min_success_count": -1}, "min_success_count must be an int >= 0"),
        ({"max_total_agents": True}, "max_total_agents must be an int"),
        ({"max_failure_rate": "0.5"}, "max_failure_rate must be a finite number >= 0 and < 1"),
        (
            {"max_total_cost_usd": 1e308},
            "max_total_cost_usd must be a finite number >= 0 and <= 1e12",
        ),
        ({"default_max_output_tokens": None}, "default_max_output_tokens must be an int >= 1"),
        ({"allow_unpriced": "no"}, "allow_unpriced must be True or False, got 'no' (str)"),
        ({"cancel_in_flight_on_failure_rate": 0}, "must be True or False, got 0"),
    ],
)
def test_invalid_limits_raise_at_construction(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(errors.ConfigurationError) as info:
        DispatchResourceLimits(**kwargs)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_rates_below_one_per_second_are_valid() -> None:
    assert DispatchResourceLimits(requests_per_second=0.2).requests_per_second == 0.2


SAMPLES: list[errors.FanoutError] = [
    errors.ConfigurationError("bad"),
    errors.InvalidInputError(problems=[(2, "missing field(s) ['x']"), (-1, "oops")]),
    errors.SyncInAsyncError(sync_name="run_sync", async_name="run"),
    errors.AgentError(
        agent="a",
        cause_type="RateLimitError",
        detail="slow down",
        retryable=True,
        status_code=429,
        retry_after_s=1.5,
    ),
    errors.CallTimeout(agent="a", timeout_s=2.0),
    errors.CircuitOpen(agent="a", failures=5, retry_in_s=3.0),
    errors.CallSkipped(agent="a", cause="x"),
    errors.CallCancelled(reason="deadline", started=True),
    errors.BudgetExceeded(
        agent="researcher", spent_usd=0.42, reserved_usd=0.0, estimate_usd=0.10, limit_usd=0.50
    ),
    errors.UnpricedModel(agent="a", model="my-model"),
    errors.AgentLimitExceeded(limit=3),
    errors.DepthLimitExceeded(depth=4, limit=3),
    errors.InjectionDetected(field="text", markers=["ignore_previous"]),
    errors.CacheKeyError(detail="args['x']: object"),
    errors.InvalidItem(index=3, reason="missing"),
]


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_attributes(error: errors.FanoutError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert {k: v for k, v in vars(copy).items()} == {k: v for k, v in vars(error).items()}
    assert isinstance(copy, errors.FanoutError)


def test_budget_message_carries_the_numbers() -> None:
    err = errors.BudgetExceeded(
        agent="researcher", spent_usd=0.42, reserved_usd=0.0, estimate_usd=0.10, limit_usd=0.50
    )
    assert str(err) == (
        "cost budget exceeded before call to 'researcher': "
        "$0.4200 spent + $0 reserved + $0.1000 estimate > $0.5000"
    )
    assert err.remaining_usd == pytest.approx(0.08)
    assert err.kind == "budget_exceeded"
    assert isinstance(err, errors.RefusedError) and isinstance(err, errors.CallError)


def test_retries_exhausted_nests_the_last_error() -> None:
    last = errors.CallTimeout(agent="a", timeout_s=1.0)
    err = errors.RetriesExhausted(agent="a", attempts=3, last_error=last)
    copy = pickle.loads(pickle.dumps(err))
    assert copy.attempts == 3 and isinstance(copy.last_error, errors.CallTimeout)
    assert "after 3 attempt(s)" in str(copy)


def test_dispatch_failed_carries_results() -> None:
    err = errors.DispatchFailed(reason="input 2 failed", results=[])
    assert "0 of 0 inputs succeeded" in str(err)


async def test_slots_wake_waiters_in_order_and_let_a_hedge_jump_the_line() -> None:
    import asyncio

    from langgraph_fanout.guards.limits import Slots

    slots = Slots(1)
    await slots.acquire()
    order: list[str] = []

    async def take(name: str, first: bool = False) -> None:
        await slots.acquire(first=first)
        order.append(name)
        slots.release()

    waiters = [asyncio.create_task(take("a")), asyncio.create_task(take("b"))]
    await asyncio.sleep(0)
    waiters.append(asyncio.create_task(take("hedge", first=True)))
    await asyncio.sleep(0)
    slots.release()
    await asyncio.gather(*waiters)
    assert order == ["hedge", "a", "b"]
    assert slots.available == 1


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    import asyncio

    from langgraph_fanout.guards.limits import Slots

    slots = Slots(1)
    await slots.acquire()
    first = asyncio.create_task(slots.acquire())
    second = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # handed to `first`...
    first.cancel()  # ...which is cancelled before it runs: the slot must reach `second`
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, timeout=5)
    assert slots.available == 0
