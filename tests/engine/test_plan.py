"""plan_dispatch: the dry run's cost range and wall estimate, checked against the engine."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from langgraph_fanout import (
    ConfigurationError,
    DispatchResourceLimits,
    InvalidInputError,
    SubAgent,
    dispatch_agents,
)
from langgraph_fanout.engine.plan import DispatchPlan, plan_dispatch
from langgraph_fanout.guards.pricing import Price
from langgraph_fanout.guards.tokens import count_message_tokens
from langgraph_fanout.testing import SimulatedChatModel

PRICE = Price(input_per_mtok=0.15, output_per_mtok=0.60)
PRICES = {"simulated-small": PRICE}
# Output-only price with usage equal to max_tokens: every call costs its estimate exactly.
CENT = Price(input_per_mtok=0.0, output_per_mtok=100.0)


def items(n: int) -> list[dict[str, Any]]:
    return [{"text": f"receipt number {i} " + "x" * i} for i in range(n)]


def test_cost_range_is_prompt_only_to_worst_case() -> None:
    model = SimulatedChatModel(max_tokens=100)
    plan = plan_dispatch("Classify: {text}", items(7), agent=model, prices=PRICES)
    prompts = [f"Classify: {a['text']}" for a in items(7)]
    worst = sum(PRICE.cost(count_message_tokens(p, "simulated-small"), 100) for p in prompts)
    floor = sum(PRICE.cost(count_message_tokens(p, "simulated-small"), 0) for p in prompts)
    assert plan.calls == 7
    assert plan.max_output_tokens == 100
    assert plan.prompt_tokens == sum(count_message_tokens(p, "simulated-small") for p in prompts)
    assert plan.max_cost_usd == pytest.approx(worst)
    assert plan.min_cost_usd == pytest.approx(floor)
    assert plan.min_cost_usd < plan.max_cost_usd


async def test_worst_case_is_what_the_engine_reserves() -> None:
    model = SimulatedChatModel(max_tokens=100)
    limits = DispatchResourceLimits(max_total_cost_usd=1.0)
    plan = plan_dispatch("Classify: {text}", items(6), agent=model, prices=PRICES, limits=limits)
    result = await dispatch_agents(
        "Classify: {text}", items(6), agent=model, prices=PRICES, limits=limits
    )
    assert sum(r.estimated_cost_usd for r in result) == pytest.approx(plan.max_cost_usd)
    assert plan.min_cost_usd is not None and plan.max_cost_usd is not None
    assert plan.min_cost_usd <= result.report.spent_usd <= plan.max_cost_usd


async def test_calls_within_budget_match_the_engine_when_cost_equals_estimate() -> None:
    model = SimulatedChatModel(model_name="sim-cent", max_tokens=100, usage_override=(5, 100))
    agent = SubAgent.of(model, price=CENT)  # $0.01 per call, estimated and real
    limits = DispatchResourceLimits(max_total_cost_usd=0.035, max_concurrent=1)
    plan = plan_dispatch("{text}", items(10), agent=agent, limits=limits)
    result = await dispatch_agents("{text}", items(10), agent=agent, limits=limits)
    assert plan.calls_within_budget == 3 == result.report.succeeded
    assert plan.fits_budget is False
    assert plan.max_cost_usd == pytest.approx(0.10)


def test_wall_estimate_and_recommendation() -> None:
    model = SimulatedChatModel()
    plan = plan_dispatch(
        "{text}",
        items(25),
        agent=model,
        latency_s=2.0,
        limits=DispatchResourceLimits(max_concurrent=10),
    )
    assert plan.parallel_wall_s == 3 * 2.0  # ceil(25 / 10) rounds
    assert plan.sequential_wall_s == 25 * 2.0
    assert plan.speedup == pytest.approx(25 / 3)
    assert plan.pays_off
    # 9 slots finish in the same 3 rounds as 10.
    assert plan.recommended_max_concurrent == 9
    assert math.ceil(25 / plan.recommended_max_concurrent) == 3


def test_one_call_does_not_pay_off() -> None:
    plan = plan_dispatch("{text}", items(1), agent=SimulatedChatModel(), latency_s=1.0)
    assert plan.speedup == 1.0
    assert not plan.pays_off
    assert plan.recommended_max_concurrent == 1


def test_rate_limit_caps_the_useful_concurrency() -> None:
    limits = DispatchResourceLimits(max_concurrent=50, requests_per_second=2)
    plan = plan_dispatch(
        "{text}", items(20), agent=SimulatedChatModel(), latency_s=1.5, limits=limits
    )
    assert plan.max_concurrent == 3  # ceil(2/s * 1.5 s): more would only queue
    assert plan.parallel_wall_s == pytest.approx(max(math.ceil(20 / 3) * 1.5, 19 / 2 + 1.5))


def test_samples_multiply_calls_and_cost() -> None:
    one = plan_dispatch("{text}", items(4), agent=SimulatedChatModel(), prices=PRICES)
    five = plan_dispatch("{text}", items(4), agent=SimulatedChatModel(), prices=PRICES, samples=5)
    assert five.calls == 20
    assert five.prompt_tokens == 5 * one.prompt_tokens
    assert one.max_cost_usd is not None
    assert five.max_cost_usd == pytest.approx(5 * one.max_cost_usd)


def test_unpriced_model_has_no_cost_but_a_wall_estimate() -> None:
    plan = plan_dispatch(
        "{text}",
        items(3),
        agent=SimulatedChatModel(model_name="nobody-knows-me"),
        limits=DispatchResourceLimits(max_total_cost_usd=1.0),
    )
    assert plan.price is None
    assert plan.min_cost_usd is None and plan.max_cost_usd is None
    assert plan.fits_budget is None
    assert plan.calls_within_budget == 3
    assert "cost unknown" in plan.summary()


def test_template_none_counts_each_argument_as_the_prompt() -> None:
    plan = plan_dispatch(None, ["hello world", {"q": 1}], agent=SimulatedChatModel())
    expected = count_message_tokens("hello world", "simulated-small") + count_message_tokens(
        json.dumps({"q": 1}), "simulated-small"
    )
    assert plan.prompt_tokens == expected


def test_bad_inputs_fail_like_a_dispatch() -> None:
    with pytest.raises(InvalidInputError) as caught:
        plan_dispatch("{missing}", items(2), agent=SimulatedChatModel())
    assert caught.value.indices == (0, 1)
    with pytest.raises(ConfigurationError, match="latency_s"):
        plan_dispatch("{text}", items(2), agent=SimulatedChatModel(), latency_s=0)
    with pytest.raises(ConfigurationError, match="samples"):
        plan_dispatch("{text}", items(2), agent=SimulatedChatModel(), samples=0)


def test_plan_is_a_frozen_json_ready_value() -> None:
    plan = plan_dispatch("{text}", items(3), agent=SimulatedChatModel(), prices=PRICES)
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["calls"] == 3
    assert data["speedup"] == plan.speedup
    assert data["price"]["output_per_mtok"] == 0.60
    assert "3 calls" in plan.summary()
    with pytest.raises(AttributeError):
        plan.calls = 4  # type: ignore[misc]
    assert isinstance(plan, DispatchPlan)


_GPT = Price(input_per_mtok=2.5, output_per_mtok=10.0)


@pytest.mark.parametrize(
    ("template", "arguments"),
    [
        pytest.param("Classify: {text}", [{"text": "a receipt"}, {"text": "b"}], id="ascii"),
        pytest.param(
            "Classify: {text}",
            [{"text": "Quittung für Café Ørsted: 12,50 € — 東京"}],
            id="non-ascii",
        ),
        pytest.param(
            None,
            [[SystemMessage("You classify."), HumanMessage("Quittung für Café: 12,50 €")]],
            id="message-list",
        ),
        pytest.param(
            None,
            [{"händler": "Café Ørsted", "betrag": "12,50 €", "zeilen": ["東京", "€"]}],
            id="dict",
        ),
    ],
)
async def test_plan_and_engine_reserve_the_same_worst_case(
    template: str | None, arguments: list[Any]
) -> None:
    async def echo(prompt: Any) -> str:
        return "ok"

    agent = SubAgent.of(echo, name="echo", model="gpt-4o", price=_GPT, max_output_tokens=20)
    limits = DispatchResourceLimits(max_total_cost_usd=1.0)
    plan = plan_dispatch(template, arguments, agent=agent, limits=limits)
    result = await dispatch_agents(template, arguments, agent=agent, limits=limits)
    reserved = [r.estimated_cost_usd for r in result]
    assert all(reserved)
    assert sum(reserved) == pytest.approx(plan.max_cost_usd, rel=1e-12)
