"""A budget that waits for money in flight instead of refusing work it can afford.

Admission (``CostLedger.admit``) queues a call whose worst case does not fit *yet*, first in
first out, and admits it when settlements free room; it refuses only what can never fit.
Tested the way production hurts it: many calls in flight at once, real costs far below the
worst case, nesting, cancellations at random moments, and a stateful model of the ledger.
"""

from __future__ import annotations

import asyncio
import random
import warnings
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import fakeclock
from langgraph_fanout import (
    BudgetExceeded,
    DispatchResourceLimits,
    OutputLimitWarning,
    Price,
    SubAgent,
    UnpricedModel,
    dispatch_agents,
    lookup_price,
)
from langgraph_fanout.errors import ConfigurationError, UnpricedModelWarning, usd
from langgraph_fanout.graphs.tree import create_tree_graph
from langgraph_fanout.guards.ledger import CostLedger, Reservation
from langgraph_fanout.testing import SimulatedChatModel

# Output tokens only, $1 per thousand: a call's worst case is its max_tokens in cents/10.
MILLI = Price(input_per_mtok=0.0, output_per_mtok=1_000.0)


def _model(*, worst_over_real: int, latency_s: float = 0.2) -> SimulatedChatModel:
    """Every call reports 10 output tokens ($0.00001 each) of a worst case 10x or 100x that."""
    return SimulatedChatModel(
        model_name="sim-milli",
        max_tokens=10 * worst_over_real,
        usage_override=(0, 10),
        latency_s=latency_s,
    )


REAL = 10 * MILLI.output_per_mtok / 1e6  # $0.01 per call


@pytest.mark.parametrize("concurrency", [1, 10, 50])
@pytest.mark.parametrize(("worst_over_real", "budget_over_real"), [(10, 2), (100, 10)])
def test_calls_far_below_their_worst_case_all_run_at_any_concurrency(
    concurrency: int, worst_over_real: int, budget_over_real: int
) -> None:
    # 50 calls; the budget is a few times their real total but holds only a handful of
    # worst cases at once. Calls wait for the ones in flight to settle instead of failing.
    model = _model(worst_over_real=worst_over_real)
    cap = budget_over_real * 50 * REAL

    async def scenario() -> Any:
        return await dispatch_agents(
            "Question {n}",
            [{"n": i} for i in range(50)],
            agent=model,
            prices={"sim-milli": MILLI},
            limits=DispatchResourceLimits(max_concurrent=concurrency, max_total_cost_usd=cap),
        )

    result = fakeclock.run(scenario())
    report = result.report
    assert report.succeeded == 50, report.failures_by_kind
    assert report.total_spent_usd == pytest.approx(50 * REAL)
    assert report.spent_usd == pytest.approx(sum(r.cost_usd for r in result))
    assert report.refused_usd == 0 and report.uncertain_usd == 0
    # The cap holds 5 or 10 worst cases, fewer as the spend grows: past one call in flight
    # some calls had to wait for room (holding no slot).
    if concurrency > 1:
        assert report.budget_wait_s > 0
        assert all(r.duration_s < 0.2 + 1e-3 for r in result)  # waiting is not latency
    else:
        assert report.budget_wait_s == 0


def test_the_seed_case_still_refuses_what_can_never_fit() -> None:
    # 100 calls whose real cost is their worst case ($0.01) against $0.05 at 10 in flight:
    # the first 5 run, the rest wait, and once those 5 are spent nothing can ever fit.
    model = SimulatedChatModel(
        model_name="sim-cent", max_tokens=1, usage_override=(0, 1), latency_s=0.5
    )

    async def scenario() -> Any:
        return await dispatch_agents(
            "Question {n}",
            [{"n": i} for i in range(100)],
            agent=model,
            prices={"sim-cent": Price(input_per_mtok=0.0, output_per_mtok=10_000.0)},
            limits=DispatchResourceLimits(max_concurrent=10, max_total_cost_usd=0.05),
        )

    result = fakeclock.run(scenario())
    report = result.report
    assert report.succeeded == 5 and model.calls == 5
    assert report.total_spent_usd == pytest.approx(0.05)
    assert report.failures_by_kind == {"budget_exceeded": 95}
    refused = [r.error for r in result if not r.ok]
    assert all(isinstance(e, BudgetExceeded) for e in refused)
    assert all(e.estimate_usd == pytest.approx(0.01) for e in refused)  # type: ignore[union-attr]
    assert "$0.0500 spent" in str(refused[-1])


def test_a_tree_of_32_leaves_with_three_times_its_real_cost_completes_every_leaf() -> None:
    # Each leaf's worst case is 10x its real cost: the cap holds 9 of the 32 leaves' worst
    # cases at once, and every leaf still runs, waiting for its siblings to settle.
    leaf = _model(worst_over_real=10, latency_s=0.1)

    def split(task: list[int]) -> list[list[int]] | None:
        if len(task) <= 1:
            return None
        middle = len(task) // 2
        return [task[:middle], task[middle:]]

    def combine(task: list[int], parts: list[Any]) -> list[Any]:
        return [p for part in parts for p in (part if isinstance(part, list) else [part])]

    graph = create_tree_graph(
        leaf,
        split=split,
        combine=combine,
        max_depth=5,
        prices={"sim-milli": MILLI},
        limits=DispatchResourceLimits(max_concurrent=32, max_total_cost_usd=3 * 32 * REAL),
    ).compile()

    async def scenario() -> Any:
        return await graph.ainvoke({"task": list(range(32))})

    out = fakeclock.run(scenario())
    assert out["status"] == "ok", out["error"]
    assert out["leaves"] == 32 and leaf.calls == 32
    assert out["report"]["total_spent_usd"] == pytest.approx(32 * REAL)


async def test_a_nested_call_never_waits_for_the_reservation_of_the_call_it_runs_in() -> None:
    # The parent holds $0.06 of a $0.10 cap while its children run: a child asking $0.05
    # can never fit while its own parent holds its room, so it is refused at once.
    ledger = CostLedger(limit_usd=0.10)
    parent = ledger.reserve(agent="parent", estimate_usd=0.06)
    with pytest.raises(BudgetExceeded) as info:
        await asyncio.wait_for(
            ledger.admit(agent="child", estimate_usd=0.05, inside=(parent,)), timeout=5
        )
    assert info.value.waited_s == 0
    # A child that fits beside its parent waits for a sibling instead.
    sibling = ledger.reserve(agent="sibling", estimate_usd=0.03)
    waiting = asyncio.create_task(ledger.admit(agent="child", estimate_usd=0.04, inside=(parent,)))
    await asyncio.sleep(0)
    assert ledger.waiting == 1
    sibling.commit(0.0)
    child = await asyncio.wait_for(waiting, timeout=5)
    assert child.estimate_usd == 0.04 and ledger.waiting == 0


async def test_when_every_call_in_flight_waits_on_queued_calls_the_queue_moves() -> None:
    # Two parents each hold $0.04 of $0.10; each starts a child asking $0.03. Neither
    # parent can settle before its child runs, and the first child needs the other
    # parent's room: rather than wait forever, the head of the queue is refused, which
    # lets its parent settle and the other child in.
    ledger = CostLedger(limit_usd=0.10)
    first = ledger.reserve(agent="p1", estimate_usd=0.04)
    second = ledger.reserve(agent="p2", estimate_usd=0.04)
    child_one = asyncio.create_task(ledger.admit(agent="c1", estimate_usd=0.03, inside=(first,)))
    await asyncio.sleep(0)
    assert ledger.waiting == 1  # p2 is running: it may still settle
    child_two = asyncio.create_task(ledger.admit(agent="c2", estimate_usd=0.03, inside=(second,)))
    with pytest.raises(BudgetExceeded):
        await asyncio.wait_for(child_one, timeout=5)
    first.commit(0.01)  # the refused child's parent ends
    granted = await asyncio.wait_for(child_two, timeout=5)
    assert granted.agent == "c2"


async def test_a_waiter_gives_up_at_its_timeout_and_a_cancelled_one_holds_nothing() -> None:
    ledger = CostLedger(limit_usd=0.10)
    held = ledger.reserve(agent="a", estimate_usd=0.08)
    with pytest.raises(BudgetExceeded) as info:
        await ledger.admit(agent="b", estimate_usd=0.05, timeout_s=0.01)
    assert info.value.waited_s >= 0.01
    assert "after waiting" in str(info.value)
    assert ledger.refused_calls == 1 and ledger.waiting == 0
    cancelled = asyncio.create_task(ledger.admit(agent="c", estimate_usd=0.05))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    held.release()
    snapshot = ledger.snapshot()
    assert (snapshot.waiting, snapshot.in_flight, snapshot.reserved_usd) == (0, 0, 0.0)
    assert ledger.refused_calls == 1  # a cancelled wait is not a refusal


async def test_a_cut_off_call_is_billed_its_input_and_its_output_stays_uncertain() -> None:
    ledger = CostLedger(limit_usd=0.10)
    reservation = await ledger.admit(agent="a", estimate_usd=0.05)
    reservation.cut_off(0.01, 0.04)
    snapshot = ledger.snapshot()
    assert (snapshot.spent_usd, snapshot.uncertain_usd) == (0.01, 0.04)
    assert snapshot.remaining_usd == pytest.approx(0.05)
    assert not ledger.can_fit(0.06)  # the uncertain output still counts against the cap
    reservation.commit(0.03)  # the real usage arrived late: it replaces both
    assert (ledger.spent_usd, ledger.uncertain_usd) == (0.03, 0.0)
    assert ledger.spent_by_agent == {"a": 0.03}
    with pytest.raises(RuntimeError, match="settle it only once"):
        reservation.commit(0.03)


# ---------------------------------------------------------------------------- stateful model


class LedgerMachine(RuleBasedStateMachine):
    """Admissions, commits, releases, cut-offs and cancellations in any order.

    Each call commits at most its estimate (the output size is known), so the cap must hold
    against ``spent + uncertain``; queued admissions are granted in the order they queued.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.cap = 100
        self.ledger = CostLedger(limit_usd=self.cap / 1000)
        self.tasks: list[tuple[int, asyncio.Task[Reservation]]] = []
        self.held: list[Reservation] = []
        self.queued: list[int] = []  # ids of admissions that had to wait, in queue order
        self.granted_after_wait: list[int] = []
        self.next_id = 0

    def _spin(self) -> None:
        async def spin() -> None:
            for _ in range(5):
                await asyncio.sleep(0)

        self.loop.run_until_complete(spin())
        still: list[tuple[int, asyncio.Task[Reservation]]] = []
        for ident, task in self.tasks:
            if not task.done():
                still.append((ident, task))
                continue
            if task.cancelled():
                continue
            if task.exception() is None:
                self.held.append(task.result())
                if ident in self.queued:
                    self.granted_after_wait.append(ident)
        self.tasks = still

    @rule(estimate=st.integers(0, 60))
    def admit(self, estimate: int) -> None:
        ident = self.next_id
        self.next_id += 1
        before = self.ledger.waiting
        task = self.loop.create_task(
            self.ledger.admit(agent=f"a{ident}", estimate_usd=estimate / 1000)
        )
        self.tasks.append((ident, task))
        self._spin()
        if self.ledger.waiting > before and not task.done():
            self.queued.append(ident)

    @precondition(lambda self: self.held)
    @rule(pick=st.integers(0, 1000), share=st.floats(0, 1), how=st.sampled_from("ccrx"))
    def settle(self, pick: int, share: float, how: str) -> None:
        reservation = self.held.pop(pick % len(self.held))
        estimate = reservation.estimate_usd
        if how == "c":
            reservation.commit(estimate * share)
        elif how == "r":
            reservation.release()
        else:
            reservation.cut_off(estimate * share / 2, estimate * (1 - share / 2) * share)
        self._spin()

    @precondition(lambda self: self.tasks)
    @rule(pick=st.integers(0, 1000))
    def cancel(self, pick: int) -> None:
        _, task = self.tasks[pick % len(self.tasks)]
        task.cancel()
        self._spin()

    @invariant()
    def the_cap_holds_against_what_the_provider_may_bill(self) -> None:
        s = self.ledger.snapshot()
        assert s.spent_usd + s.uncertain_usd + s.reserved_usd <= self.cap / 1000 + 1e-9
        assert s.in_flight == len(self.held)
        assert s.waiting == len(self.tasks)

    @invariant()
    def waiters_are_granted_first_in_first_out(self) -> None:
        waiting = {ident for ident, _ in self.tasks}
        for ident in self.granted_after_wait:
            earlier = [q for q in self.queued if q < ident]
            assert not (waiting & set(earlier)), (ident, waiting)

    def teardown(self) -> None:
        # Releasing everything held admits or refuses every waiter: none is left behind.
        for _ in range(len(self.held) + len(self.tasks) + 2):
            while self.held:
                self.held.pop().release()
            self._spin()
        assert not self.tasks and self.ledger.waiting == 0
        assert self.ledger.reserved_usd == 0 or self.held
        self.loop.close()


LedgerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_the_ledger_under_any_interleaving = LedgerMachine.TestCase


def test_random_cancels_leave_no_waiter_and_no_reservation_behind() -> None:
    # 200 admissions racing 20 settlers and random cancels on one loop.
    rng = random.Random(7)
    ledger = CostLedger(limit_usd=0.05)

    async def one(i: int) -> None:
        try:
            r = await ledger.admit(agent=f"a{i}", estimate_usd=rng.choice([0.01, 0.02, 0.03]))
        except BudgetExceeded:
            return
        await asyncio.sleep(rng.random() / 100)
        r.commit(r.estimate_usd * rng.random() / 20)

    async def scenario() -> None:
        tasks = [asyncio.create_task(one(i)) for i in range(200)]
        for _ in range(40):
            await asyncio.sleep(rng.random() / 200)
            rng.choice(tasks).cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    fakeclock.run(scenario())
    s = ledger.snapshot()
    assert (s.waiting, s.in_flight, s.reserved_usd) == (0, 0, 0.0)
    assert s.spent_usd <= 0.05


def test_the_offline_simulator_is_priced_and_runs_under_a_budget() -> None:
    # The quickstart with SimulatedChatModel() and a cap: no prices= needed, nonzero spend.
    model = SimulatedChatModel()

    async def scenario() -> Any:
        return await dispatch_agents(
            "Classify this receipt: {text}",
            [{"text": f"receipt {i}"} for i in range(50)],
            agent=model,
            limits=DispatchResourceLimits(max_concurrent=10, max_total_cost_usd=0.05),
        )

    result = fakeclock.run(scenario())
    assert result.report.succeeded == 50
    price = lookup_price("simulated-small")
    assert price == Price(input_per_mtok=0.15, output_per_mtok=0.60)
    expected = sum(price.cost(r.input_tokens, r.output_tokens) for r in result)
    assert 0 < result.report.total_spent_usd == pytest.approx(expected)
    assert "$0 " not in result.report.summary()  # small spend is shown, never as zero
    assert "$0.0000" not in result.report.summary()


# ------------------------------------------------------------------ no silent unbilled work


async def _plain(prompt: str) -> str:
    return f"done: {prompt}"


def test_a_plain_function_under_a_budget_is_refused_with_what_to_do() -> None:
    async def scenario() -> Any:
        return await dispatch_agents(
            "{n}",
            [{"n": i} for i in range(5)],
            agent=_plain,
            limits=DispatchResourceLimits(max_total_cost_usd=0.05),
        )

    result = fakeclock.run(scenario())
    assert result.report.failures_by_kind == {"unpriced_model": 5}
    error = result[0].error
    assert isinstance(error, UnpricedModel) and error.model is None
    for fix in ("cost_per_call_usd=", "config argument", "allow_unpriced=True"):
        assert fix in str(error)


def test_a_plain_function_with_a_price_per_call_is_billed_exactly() -> None:
    async def scenario() -> Any:
        return await dispatch_agents(
            "{n}",
            [{"n": i} for i in range(100)],
            agent=SubAgent.of(_plain, cost_per_call_usd=0.001),
            limits=DispatchResourceLimits(max_concurrent=10, max_total_cost_usd=0.05),
        )

    result = fakeclock.run(scenario())
    # The seed's scenario: $1.00 of work against $0.05 stops at $0.05 exactly.
    assert result.report.succeeded == 50
    assert result.report.total_spent_usd == pytest.approx(0.05)
    assert result.report.failures_by_kind == {"budget_exceeded": 50}


def test_allow_unpriced_runs_a_plain_function_and_says_so_once() -> None:
    async def scenario() -> Any:
        return await dispatch_agents(
            "{n}",
            [{"n": i} for i in range(5)],
            agent=_plain,
            limits=DispatchResourceLimits(max_total_cost_usd=0.05, allow_unpriced=True),
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fakeclock.run(scenario())
    assert result.report.succeeded == 5
    named = [w for w in caught if issubclass(w.category, UnpricedModelWarning)]
    assert len(named) == 1 and "'_plain'" in str(named[0].message)


@pytest.mark.parametrize("bad", [-0.01, float("inf"), "0.01", True])
def test_a_price_per_call_must_be_a_finite_amount(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="cost_per_call_usd must be a finite number"):
        SubAgent.of(_plain, cost_per_call_usd=bad)


def test_a_server_ignoring_max_tokens_is_charged_and_the_run_reserves_more() -> None:
    # The model promises 10 output tokens and returns 40: the first call's excess is
    # charged and reported, then every later call reserves 40 (no more overshoot).
    model = SimulatedChatModel(model_name="sim-milli", max_tokens=10, usage_override=(0, 40))

    async def scenario() -> Any:
        return await dispatch_agents(
            "{n}",
            [{"n": i} for i in range(10)],
            agent=model,
            prices={"sim-milli": MILLI},
            limits=DispatchResourceLimits(max_concurrent=1, max_total_cost_usd=1.0),
        )

    with pytest.warns(
        OutputLimitWarning, match="returned 40 output tokens, more than its max of 10"
    ):
        result = fakeclock.run(scenario())
    assert result.report.succeeded == 10
    assert result.report.overshoot_usd == pytest.approx(0.03)  # only the first call's 30
    assert result[9].estimated_cost_usd == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        (0.0, "$0"),
        (0.05, "$0.0500"),
        (0.000041, "$0.000041"),
        (4e-9, "$0.0000000040"),
        (12.5, "$12.5000"),
        (0.00099999, "$0.00100"),
    ],
)
def test_money_is_shown_with_enough_digits_never_a_nonzero_amount_as_zero(
    amount: float, shown: str
) -> None:
    assert usd(amount) == shown


async def test_a_tool_answer_shows_a_small_spend() -> None:
    from langgraph_fanout import create_dispatch_tool

    tool = create_dispatch_tool(
        {"small": SimulatedChatModel(usage_override=(100, 20))},
        limits=DispatchResourceLimits(max_total_cost_usd=0.05),
    )
    message = await tool.ainvoke(
        {
            "type": "tool_call",
            "id": "c1",
            "name": tool.name,
            "args": {"instruction": "Echo {item}", "items": ["a"]},
        }
    )
    # 100 input and 20 output tokens of simulated-small: $0.000027, not "$0.0000".
    assert "spent $0.000027" in message.content


# ---------------------------------------------------------------------- agents of many calls


def _three_call_agent() -> Any:
    """A ``create_agent`` graph that calls its model 3 times per input (2 tools, 1 answer)."""
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool

    @tool
    def lookup(query: str) -> str:
        """Look something up."""
        return f"found {query}"

    def step(i: int) -> AIMessage:
        return AIMessage(
            "", tool_calls=[{"name": "lookup", "args": {"query": f"q{i}"}, "id": f"c{i}"}]
        )

    model = SimulatedChatModel(
        model_name="sim-milli",
        max_tokens=10,
        usage_override=(0, 10),
        responses=[step(1), step(2), AIMessage("done")],
        cycle_responses=True,
    )
    return create_agent(model, tools=[lookup]), model


def test_an_agent_declaring_three_model_calls_reserves_three_and_stays_under_the_cap() -> None:
    graph, model = _three_call_agent()
    agent = SubAgent.of(
        graph, name="researcher", model="sim-milli", max_output_tokens=10, max_model_calls=3
    )
    cap = 0.25  # each input really costs 3 x $0.01; the cap covers 8 inputs and a bit
    # One input at a time: the model's script (tool, tool, answer) is shared by the inputs.

    async def scenario() -> Any:
        return await dispatch_agents(
            "Research {n}",
            [{"n": i} for i in range(12)],
            agent=agent,
            prices={"sim-milli": MILLI},
            limits=DispatchResourceLimits(max_concurrent=1, max_total_cost_usd=cap),
        )

    result = fakeclock.run(scenario())
    report = result.report
    assert report.succeeded == 8 and report.failures_by_kind == {"budget_exceeded": 4}
    assert report.total_spent_usd == pytest.approx(0.24) and report.overshoot_usd == 0
    assert all(r.estimated_cost_usd == pytest.approx(0.03) for r in result)
    assert model.calls == 24


def test_a_model_call_beyond_what_was_reserved_is_admitted_or_refused_inside_the_agent() -> None:
    # Declared as one model call, the agent makes three: each further call is admitted
    # against the budget as it starts, and the one that does not fit is refused inside
    # the agent (its input ends as budget_exceeded); the spend never passes the cap.
    graph, model = _three_call_agent()
    agent = SubAgent.of(graph, name="researcher", model="sim-milli", max_output_tokens=10)
    cap = 0.05  # room for one input's three calls, and two calls more

    async def scenario() -> Any:
        return await dispatch_agents(
            "Research {n}",
            [{"n": i} for i in range(2)],
            agent=agent,
            prices={"sim-milli": MILLI},
            limits=DispatchResourceLimits(max_concurrent=1, max_total_cost_usd=cap),
        )

    result = fakeclock.run(scenario())
    first, second = result
    assert first.ok and first.cost_usd == pytest.approx(0.03)
    assert second.error_kind == "budget_exceeded"
    assert model.calls == 5  # the second input's third model call was never made
    assert result.report.total_spent_usd <= cap + 1e-12
    assert result.report.total_spent_usd == pytest.approx(0.05)


def test_each_prompt_is_tokenized_once_per_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    # The budget's estimate, the token-rate limiter and the learning from reported usage
    # all read one count: tiktoken encodes each prompt once.
    import uuid

    import tiktoken

    from langgraph_fanout import RateLimiter

    encoded: list[str] = []
    original = tiktoken.Encoding.encode_ordinary

    def counting(self: tiktoken.Encoding, text: str) -> list[int]:
        encoded.append(text)
        return original(self, text)

    monkeypatch.setattr(tiktoken.Encoding, "encode_ordinary", counting)
    run_id = uuid.uuid4().hex  # prompts no earlier test has counted
    model = SimulatedChatModel(model_name="gpt-4o-mini", max_tokens=20)

    async def scenario() -> Any:
        return await dispatch_agents(
            "Question {n} of run " + run_id,
            [{"n": i} for i in range(20)],
            agent=model,
            rate_limiter=RateLimiter(tokens_per_minute=10_000_000),
            limits=DispatchResourceLimits(max_concurrent=5, max_total_cost_usd=1.0),
        )

    result = fakeclock.run(scenario())
    assert result.report.succeeded == 20
    ours = [t for t in encoded if run_id in t]
    assert len(ours) == 20 and len(set(ours)) == 20


async def test_an_enclosing_call_listed_twice_pins_its_room_once() -> None:
    ledger = CostLedger(limit_usd=1.0)
    parent = ledger.reserve(agent="parent", estimate_usd=0.5)
    other = ledger.reserve(agent="other", estimate_usd=0.3)
    waiting = asyncio.create_task(
        ledger.admit(agent="child", estimate_usd=0.4, inside=(parent, parent))
    )
    await asyncio.sleep(0)
    assert ledger.waiting == 1  # it may fit once `other` settles: it waits, not refused
    other.release()
    assert (await asyncio.wait_for(waiting, timeout=5)).agent == "child"


def test_a_late_commit_beyond_what_a_cut_off_held_is_overshoot() -> None:
    # Cut off with $0.1 billed and $0.1 uncertain: the other $0.8 was freed and taken.
    ledger = CostLedger(limit_usd=1.0)
    cut = ledger.reserve(agent="a", estimate_usd=1.0)
    cut.cut_off(0.1, 0.1)
    ledger.reserve(agent="b", estimate_usd=0.8)
    cut.commit(1.0)  # the real usage arrives: all of it was used
    books = ledger.snapshot()
    assert (books.overshoot_usd, books.overshoot_calls) == (pytest.approx(0.8), 1)
