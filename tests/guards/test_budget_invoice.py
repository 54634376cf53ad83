"""The cap holds against the provider's invoice, not only against our ledger.

50 seeds, each a random mix of what cuts calls off or multiplies them (retries of 429s and
500s, fallbacks, hedges of stragglers, a decided vote, a deadline, nested dispatches) at
concurrency 30, against a simulated provider that bills like a real one: the input of every
request it received, and the output of every answer it finished (whether the caller still
waited for it or not); errors are not billed. The output size is known (``max_tokens``), so
the invoice must never pass the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig

import fakeclock
from langgraph_fanout import (
    CostLedger,
    DispatchResourceLimits,
    ErrorRecoveryPolicy,
    ErrorStrategy,
    HedgePolicy,
    Price,
    dispatch_agents,
    majority_vote,
)
from langgraph_fanout.testing import SimulatedChatModel, heavy_tail_latency

PRICE = Price(input_per_mtok=100.0, output_per_mtok=400.0)
INPUT, OUTPUT, MAX_TOKENS = 8, 15, 20  # tiktoken counts 13+ for these prompts: input is known


class BilledModel(SimulatedChatModel):
    """A simulated provider endpoint that keeps its invoice in ``billed``."""

    billed: list[float]

    async def _agenerate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        try:
            result = await super()._agenerate(messages, stop, run_manager, **kwargs)
        except asyncio.CancelledError:
            self.billed.append(PRICE.cost(INPUT, 0))  # received, then abandoned by the caller
            raise
        except Exception:
            raise  # an error answer is not billed
        self.billed.append(PRICE.cost(INPUT, OUTPUT))  # the caller cancelling later changes nothing
        return result


def _model(name: str, rng: random.Random) -> BilledModel:
    return BilledModel(
        model_name=name,
        max_tokens=MAX_TOKENS,
        usage_override=(INPUT, OUTPUT),
        latency=heavy_tail_latency(0.05, rng.choice([0.5, 2.0]), p_slow=0.2),
        failure_rate=rng.choice([0.0, 0.05, 0.2]),
        failure_kind=rng.choice(["rate_limit", "server_error"]),
        seed=rng.randrange(1 << 30),
        billed=[],
    )


@pytest.mark.filterwarnings("ignore::langgraph_fanout.UnestimatedCostWarning")  # the parent
@pytest.mark.parametrize("seed", range(50))
def test_the_invoice_never_passes_the_cap(seed: int) -> None:
    rng = random.Random(seed)
    primary = _model("sim-a", rng)
    backup = _model("sim-b", rng)
    prices = {"sim-a": PRICE, "sim-b": PRICE}
    worst = PRICE.cost(13, MAX_TOKENS)
    cap = worst * rng.choice([5, 20, 60])  # some runs end on the budget, some do not
    ledger = CostLedger(limit_usd=cap)
    policy = ErrorRecoveryPolicy(
        strategy=rng.choice([ErrorStrategy.RETRY, ErrorStrategy.FALLBACK]),
        fallback_tools=(),
        breaker=None,
    )
    if policy.strategy is ErrorStrategy.FALLBACK:
        policy = ErrorRecoveryPolicy(
            strategy=ErrorStrategy.FALLBACK, fallback_tools=[backup], breaker=None
        )
    hedge = HedgePolicy(after_s=0.2, max_extra_ratio=0.5) if rng.random() < 0.6 else None
    vote = majority_vote() if rng.random() < 0.3 else None
    deadline = rng.choice([None, 0.3, 0.6, 1.0])
    nested = rng.random() < 0.4

    async def parent(prompt: str, config: RunnableConfig) -> list[Any]:
        inner = await dispatch_agents(
            "sub {k} of " + prompt,
            [{"k": k} for k in range(3)],
            agent=primary,
            prices=prices,
            policy=policy,
            hedge=hedge,
            config=config,
        )
        return inner.outputs

    async def scenario() -> Any:
        return await dispatch_agents(
            "Q {n}" if vote is None else "Q 1",
            [{"n": i} for i in range(120)],
            agent=parent if nested else primary,
            prices=prices,
            ledger=ledger,
            policy=policy,
            hedge=None if nested else hedge,
            aggregate=vote,
            limits=DispatchResourceLimits(max_concurrent=30, max_total_duration_s=deadline),
        )

    fakeclock.run(scenario())
    books = ledger.snapshot()
    invoice = sum(primary.billed) + sum(backup.billed)  # each model keeps its own list
    assert primary.billed
    assert invoice <= cap + 1e-12, (invoice, cap, books)
    assert invoice <= books.spent_usd + books.uncertain_usd + 1e-12
    assert (books.in_flight, books.waiting) == (0, 0)


class ArrivalModel(SimulatedChatModel):
    """Counts the usage of every answer that reached the process (returned by the model)."""

    arrived: list[int]
    started: Any = None  # an asyncio.Event set by the first call

    async def _agenerate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        if self.started is not None:
            self.started.set()
        result = await super()._agenerate(messages, stop, run_manager, **kwargs)
        self.arrived.append(OUTPUT)
        return result


@pytest.mark.parametrize("trial", range(60))
def test_a_cancel_at_any_moment_bills_every_answer_that_arrived(trial: int) -> None:
    # 60 dispatches of 500 inputs, each cancelled at a random moment. Output-only prices:
    # a call cut off before its answer is billed nothing certain (its output is uncertain),
    # so the ledger's spend must equal the usage of the answers that arrived, exactly.
    price = Price(input_per_mtok=0.0, output_per_mtok=1_000.0)
    moment = random.Random(trial).uniform(0.01, 1.5)
    model = ArrivalModel(
        model_name="sim-a",
        max_tokens=MAX_TOKENS,
        usage_override=(INPUT, OUTPUT),
        latency=heavy_tail_latency(0.05, 0.3, p_slow=0.2),
        seed=trial,
        arrived=[],
    )
    ledger = CostLedger(limit_usd=100.0)

    async def scenario() -> None:
        model.started = asyncio.Event()
        run = asyncio.create_task(
            dispatch_agents(
                "Q {n}",
                [{"n": i} for i in range(500)],
                agent=model,
                prices={"sim-a": price},
                ledger=ledger,
                limits=DispatchResourceLimits(max_concurrent=30),
            )
        )
        await model.started.wait()  # the process's first count of a model runs in a thread
        await asyncio.sleep(moment)
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run

    fakeclock.run(scenario())
    books = ledger.snapshot()
    arrived = price.cost(0, sum(model.arrived))
    assert books.spent_usd == pytest.approx(arrived, abs=1e-12), (moment, books)
    assert books.committed_calls == len(model.arrived)
    assert books.cut_off_calls > 0  # the cancel did cut calls off in flight
    assert books.uncertain_usd == pytest.approx(books.cut_off_calls * price.cost(0, MAX_TOKENS))
    assert (books.in_flight, books.waiting) == (0, 0)
