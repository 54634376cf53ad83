"""Ensembles that decide early, and hedged calls (virtual time: nothing waits for real)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import fakeclock
from langgraph_fanout import DispatchResourceLimits, SubAgent, SyncInAsyncError, dispatch_agents
from langgraph_fanout.aggregate.voting import Vote, majority_vote
from langgraph_fanout.engine.ensemble import vote, vote_sync
from langgraph_fanout.errors import CallCancelled, ConfigurationError, VoterNotNeeded
from langgraph_fanout.guards.hedging import HedgePolicy
from langgraph_fanout.guards.ledger import CostLedger
from langgraph_fanout.guards.pricing import Price
from langgraph_fanout.testing import SimulatedChatModel

CENT = Price(input_per_mtok=0.0, output_per_mtok=10_000.0)  # one output token = $0.01


def voter(name: str, answer: str, latency_s: float = 0.0, max_tokens: int = 1) -> SubAgent:
    model = SimulatedChatModel(
        model_name=name,
        responses=[answer],
        cycle_responses=True,
        latency_s=latency_s,
        usage_override=(10, 1),
        max_tokens=max_tokens,  # the simulator cuts answers to it
    )
    return SubAgent.of(model, price=CENT)


async def test_nine_voters_first_five_agree_stops_after_five() -> None:
    model = SimulatedChatModel(
        model_name="judge", responses=["yes"] * 5 + ["no"] * 4, usage_override=(10, 1), max_tokens=1
    )
    result = await vote(
        "Is {x} a fruit?",
        {"x": "apple"},
        agent=SubAgent.of(model, price=CENT),
        n=9,
        limits=DispatchResourceLimits(max_concurrent=1, max_total_cost_usd=1.0),
    )
    outcome = result.aggregate
    assert isinstance(outcome, Vote)
    assert outcome.winner == "yes"
    assert outcome.decided_early
    assert model.calls == 5
    assert result.report.spent_usd == pytest.approx(0.05)
    assert result.report.calls_saved == 4
    assert result.report.cost_saved_usd == pytest.approx(0.04)
    assert all(isinstance(r.error, CallCancelled) and not r.error.started for r in result[5:])


def test_voters_start_in_waves_and_the_unneeded_ones_are_never_started() -> None:
    async def scenario() -> Any:
        agents = [voter(f"v{i}", "yes" if i < 5 else "no", latency_s=1.0 + i) for i in range(9)]
        ledger = CostLedger(1.0)
        result = await vote("Q?", agents=agents, ledger=ledger)
        return result, ledger

    result, ledger = fakeclock.run(scenario())
    assert result.aggregate.winner == "yes"
    assert result.report.succeeded == 5
    # The first wave is the 5 of 9 that could settle it; they did, so 4 never started.
    not_needed = [r for r in result if isinstance(r.error, CallCancelled)]
    assert len(not_needed) == 4
    assert all(isinstance(r.error, VoterNotNeeded) and not r.error.started for r in not_needed)
    assert result.report.voters_not_needed == 4 and result.report.calls_started == 5
    assert ledger.spent_usd == pytest.approx(0.05)
    assert ledger.reserved_usd == 0.0
    assert result.report.wall_time_s < 9.0  # never waited for the slowest, unneeded voter


async def test_five_models_vote_on_a_classification() -> None:
    answers = ["electronics", "Electronics.", "electronics", "toys", "electronics "]
    result = await vote(
        "Classify: {item}",
        {"item": "USB-C charger"},
        agents=[voter(f"model-{i}", a, max_tokens=20) for i, a in enumerate(answers)],
        by=majority_vote(early=None),
    )
    outcome = result.aggregate
    assert outcome.winner.strip().rstrip(".").lower() == "electronics"
    assert outcome.counts[outcome.winner_key] == 4
    assert not outcome.unanimous and not outcome.decided_early
    assert outcome.share == pytest.approx(0.8)


async def test_vote_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="exactly one of"):
        await vote("Q", agents=[voter("a", "x")], agent=voter("b", "y"))
    with pytest.raises(ConfigurationError, match="distinct"):
        await vote("Q", agents=[voter("a", "x"), voter("a", "y")])
    with pytest.raises(SyncInAsyncError):
        vote_sync("Q", agent=voter("a", "x"))


def test_vote_sync_outside_a_loop() -> None:
    result = vote_sync("Q", agent=voter("solo", "x"), n=3)
    assert result.aggregate.winner == "x"


# ----------------------------------------------------------------------------------- hedging


class TwoSpeed:
    """An agent whose first call takes 10 s and every later one 0.1 s."""

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0

    async def __call__(self, prompt: str) -> str:
        self.calls += 1
        delay = 10.0 if self.calls == 1 else 0.1
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return f"done after {delay}"


def test_slow_call_is_beaten_by_its_hedge() -> None:
    agent = TwoSpeed()

    async def scenario() -> Any:
        ledger = CostLedger(1.0)
        result = await dispatch_agents(
            None,
            ["q"],
            agent=SubAgent.of(agent, cost_per_call_usd=0.01),
            ledger=ledger,
            hedge=HedgePolicy(after_s=1.0, max_extra_ratio=1.0),
        )
        return result, ledger

    result, ledger = fakeclock.run(scenario())
    r = result[0]
    assert r.ok and r.output == "done after 0.1"
    assert (r.hedges, r.hedge_won) == (1, True)
    assert agent.calls == 2 and agent.cancelled == 1  # the loser was cancelled
    assert r.duration_s == pytest.approx(1.1, abs=1e-3)
    assert ledger.reserved_usd == 0.0 and ledger.in_flight == 0  # its reservation settled
    assert ledger.spent_usd == pytest.approx(0.02)  # the loser was sent: it is billed too
    assert result.report.hedges_launched == 1 and result.report.hedges_won == 1
    assert result.report.calls_started == 2


def test_hedges_are_capped() -> None:
    agent = TwoSpeed()

    async def scenario() -> Any:
        return await dispatch_agents(
            None, ["q"], agent=agent, hedge=HedgePolicy(after_s=1.0, max_extra_ratio=0.05)
        )

    result = fakeclock.run(scenario())
    assert result[0].hedges == 0  # 1 hedge would be 100% extra calls, above the 5% cap
    assert result[0].duration_s == pytest.approx(10.0, abs=1e-3)


def test_adaptive_threshold_waits_for_enough_samples() -> None:
    policy = HedgePolicy(min_samples=3, percentile=0.5, min_ratio_to_median=1.0)
    from langgraph_fanout.guards.hedging import HedgeTracker

    tracker = HedgeTracker(policy)
    assert tracker.threshold_s() is None
    for latency in (3.0, 1.0, 2.0):
        tracker.observe(latency)
    assert tracker.threshold_s() == 2.0
    with pytest.raises(ConfigurationError):
        HedgePolicy(percentile=1.5)
    with pytest.raises(ConfigurationError, match="min_ratio_to_median"):
        HedgePolicy(min_ratio_to_median=0.5)


def test_the_ordinary_tail_is_not_hedged_only_stragglers_are() -> None:
    # 95 calls near 20 ms and 5 near 30 ms (p95 is 30 ms): hedging after p95 would hedge
    # calls that finish before their hedge could. The threshold is at least twice the
    # median: 40 ms.
    from langgraph_fanout.guards.hedging import HedgeTracker

    tracker = HedgeTracker(HedgePolicy())
    for i in range(100):
        tracker.observe(0.030 if i % 20 == 0 else 0.020 + i * 1e-6)
    assert tracker.threshold_s() == pytest.approx(2 * 0.02005, rel=1e-3)


def test_the_threshold_follows_the_latencies_without_sorting_them_on_every_call() -> None:
    from langgraph_fanout.guards.hedging import HedgeTracker

    tracker = HedgeTracker(HedgePolicy(min_ratio_to_median=1.0, window=100))
    for _ in range(100):
        tracker.observe(0.02)
    assert tracker.threshold_s() == pytest.approx(0.02)
    for _ in range(4):  # under 5% of the window is new: the threshold is kept
        tracker.observe(1.0)
    assert tracker.threshold_s() == pytest.approx(0.02)
    for _ in range(96):  # the window moved on: so did the threshold
        tracker.observe(1.0)
    assert tracker.threshold_s() == pytest.approx(1.0)


# -- one meaning of a vote: per input, in waves --------------------------------------------


async def test_distinct_inputs_with_a_vote_are_never_cancelled_by_each_other() -> None:
    calls: list[str] = []

    async def label(prompt: Any) -> str:
        calls.append(prompt)
        return f"label of {prompt}"

    done = await dispatch_agents(
        "{receipt}",
        [{"receipt": f"r{i}"} for i in range(10)],
        agent=label,
        aggregate=majority_vote(),
    )
    assert len(calls) == 10 and done.report.succeeded == 10 and done.report.cancelled == 0
    assert done.aggregate.winners == [f"label of r{i}" for i in range(10)]
    assert done.aggregate.decided_by == {"complete": 10}


@pytest.mark.parametrize("concurrency", [1, 10, 100])
async def test_five_samples_whose_first_three_agree_cost_three_calls_each(
    concurrency: int,
) -> None:
    # Each input's samples answer "a", "a", "a", "b", "b": the first wave (3 of 5) settles it.
    answers = ["a", "a", "a", "b", "b"]
    started: dict[str, int] = {}

    async def sample(prompt: Any) -> str:
        n = started.get(prompt, 0)
        started[prompt] = n + 1
        await asyncio.sleep(0)
        return answers[n]

    done = await dispatch_agents(
        "{q}",
        [{"q": f"question {i}"} for i in range(10)],
        agent=sample,
        samples=5,
        aggregate=majority_vote(),
        limits=DispatchResourceLimits(max_concurrent=concurrency),
    )
    assert sum(started.values()) == 30 and all(n == 3 for n in started.values())
    votes = done.aggregate
    assert len(votes) == 10 and votes.winners == ["a"] * 10
    assert all((v.calls, v.calls_saved, v.decided_by) == (3, 2, "exact") for v in votes)
    assert done.report.voters_not_needed == 20 and done.report.calls_started == 30
    assert votes.cancelled == 0  # nothing started was cancelled
    assert len(done.results) == 50  # every input still ends as one result


async def test_a_vote_that_cannot_afford_its_next_wave_ends_with_its_leader() -> None:
    # 9 voters alternating "yes"/"no" at a cent each under a 6-cent cap: the first wave
    # (5) leaves the vote open at 3-2 and the next one (2) fits, then at 4-3 the next
    # wave no longer fits what is left: the leader wins, the rest never start.
    answers = ["yes", "no"] * 5
    model = SimulatedChatModel(
        model_name="judge", responses=answers, usage_override=(10, 1), max_tokens=1
    )
    result = await dispatch_agents(
        "Is {x} a fruit?",
        [{"x": "apple"}],
        agent=SubAgent.of(model, cost_per_call_usd=0.01),
        samples=9,
        aggregate=majority_vote(),
        limits=DispatchResourceLimits(max_concurrent=1, max_total_cost_usd=0.065),
    )
    (outcome,) = result.aggregate
    assert outcome.decided_by == "budget" and outcome.winner == "yes"
    assert model.calls == outcome.calls < 9
    assert result.report.total_spent_usd <= 0.065
    assert all(isinstance(r.error, VoterNotNeeded) for r in result.results[outcome.calls :])
