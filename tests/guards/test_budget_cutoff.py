"""Calls cut off in flight are billed as the provider bills them.

A request that reached the provider is billed at least its input, whether the client is
still waiting or not: a deadline, an attempt timeout, a hedge that lost and a voter no
longer needed all cut calls off after they were sent. Through the real ``ChatOpenAI`` to an
OpenAI-compatible server on 127.0.0.1 that keeps its own invoice (the input of every
request it received, the output of every answer it finished): the ledger's spend plus its
uncertain output must cover that invoice, and stay within the cap.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from langchain_openai import ChatOpenAI

from langgraph_fanout import (
    CostLedger,
    DispatchResourceLimits,
    ErrorRecoveryPolicy,
    HedgePolicy,
    dispatch_agents,
    lookup_price,
    majority_vote,
)
from provider import ProviderServer

PRICE = lookup_price("gpt-4o-mini")
assert PRICE is not None
# The server counts 9 prompt tokens for "Question n" (tiktoken counts 10 with the message
# overhead): the provider never bills more input than the ledger's estimate.
PROMPT_TOKENS, COMPLETION_TOKENS, MAX_TOKENS = 9, 5, 20


def _model(server: ProviderServer) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-4o-mini",
        base_url=server.base_url,
        api_key="sk-test",
        max_retries=0,
        max_tokens=MAX_TOKENS,
    )


def _server(latency_s: Any, content: str | None = None) -> ProviderServer:
    return ProviderServer(
        latency_s=latency_s,
        prompt_tokens=PROMPT_TOKENS,
        completion_tokens=COMPLETION_TOKENS,
        content=content,
    )


def _invoice(server: ProviderServer) -> float:
    return server.invoice(
        input_per_mtok=PRICE.input_per_mtok, output_per_mtok=PRICE.output_per_mtok
    )


def _check_books(server: ProviderServer, ledger: CostLedger, cap: float) -> None:
    books = ledger.snapshot()
    invoice = _invoice(server)
    assert books.cut_off_calls > 0  # the scenario did cut calls off
    # Whatever the provider bills is covered by what the ledger spent or holds uncertain,
    # and that never passes the cap.
    assert invoice <= books.spent_usd + books.uncertain_usd + 1e-12
    assert books.spent_usd + books.uncertain_usd <= cap + 1e-12
    # Each cut-off request is billed its input (nothing is released at $0).
    input_usd = PRICE.cost(PROMPT_TOKENS, 0)
    assert books.spent_usd >= books.cut_off_calls * input_usd - 1e-12
    assert (books.in_flight, books.waiting, books.reserved_usd) == (0, 0, 0.0)


async def test_a_deadline_bills_the_calls_it_cuts_off() -> None:
    cap = 0.01
    ledger = CostLedger(limit_usd=cap)
    async with _server(latency_s=0.3) as server:
        result = await dispatch_agents(
            "Question {n}",
            [{"n": i} for i in range(40)],
            agent=_model(server),
            ledger=ledger,
            limits=DispatchResourceLimits(max_concurrent=10, max_total_duration_s=0.45),
        )
    assert result.report.cancelled > 0
    _check_books(server, ledger, cap)
    assert result.report.uncertain_usd == pytest.approx(ledger.uncertain_usd)


async def test_an_attempt_timeout_bills_the_request_it_abandons() -> None:
    cap = 0.01
    ledger = CostLedger(limit_usd=cap)
    async with _server(latency_s=0.3) as server:
        result = await dispatch_agents(
            "Question {n}",
            [{"n": i} for i in range(6)],
            agent=_model(server),
            ledger=ledger,
            policy=ErrorRecoveryPolicy(max_retries=1, backoff_initial_s=0.01, jitter_s=0.0),
            limits=DispatchResourceLimits(max_concurrent=6, max_agent_duration_s=0.1),
        )
    assert result.report.failures_by_kind == {"retries_exhausted": 6}
    # The server finished every answer nobody waited for any more: it bills their output.
    assert 0 < server.answered == server.requests <= 12
    _check_books(server, ledger, cap)
    assert ledger.snapshot().cut_off_calls == 12  # each attempt was sent, or may have been


async def test_a_hedge_that_loses_is_billed() -> None:
    cap = 0.01
    ledger = CostLedger(limit_usd=cap)
    arrivals = iter(range(1_000))
    # One request in four is slow: its hedge answers first and the slow one is cut off.
    async with _server(latency_s=lambda: 0.6 if next(arrivals) % 4 == 0 else 0.02) as server:
        result = await dispatch_agents(
            "Question {n}",
            [{"n": i} for i in range(24)],
            agent=_model(server),
            ledger=ledger,
            hedge=HedgePolicy(after_s=0.1, max_extra_ratio=1.0),
            limits=DispatchResourceLimits(max_concurrent=8),
        )
    assert result.report.succeeded == 24
    assert result.report.hedges_launched > 0
    _check_books(server, ledger, cap)


async def test_a_voter_no_longer_needed_is_billed() -> None:
    cap = 0.01
    ledger = CostLedger(limit_usd=cap)
    rng = random.Random(2)
    # Every voter says the same: the vote is decided by the majority of 9, and the voters
    # still in flight then are cut off.
    async with _server(latency_s=lambda: rng.uniform(0.02, 0.3), content="42") as server:
        result = await dispatch_agents(
            "Question {n}",
            [{"n": 1}] * 9,
            agent=_model(server),
            ledger=ledger,
            # Nine inputs as voters of one question, all started at once: the vote across
            # inputs (group_by=None) stops the dispatch and cuts off the ones in flight.
            aggregate=majority_vote(group_by=None),
            limits=DispatchResourceLimits(max_concurrent=9),
        )
    assert result.report.cancelled > 0  # the vote was decided before every voter answered
    _check_books(server, ledger, cap)
