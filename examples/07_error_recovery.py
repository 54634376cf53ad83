"""Error recovery: retries for transient errors, a fallback model, a circuit breaker.

Shows three guards of `ErrorRecoveryPolicy`, with provider-like failures injected:
1. Retry: a 500 and a 429 carrying `Retry-After` are retried (the 429 waits what the
   provider said, plus up to 10% so retries spread out); every input still succeeds.
2. Fallback: the primary model is down (every call a 500); `strategy=FALLBACK` with
   `fallback_tools=["backup"]` answers every input from the backup model.
3. Breaker: after 3 failures the primary's circuit opens and later inputs go straight to
   the backup without calling the dead primary at all.
Backoff is shortened (`backoff_initial_s=0.01`, no jitter) so the example runs in a blink;
the defaults are 0.5 s doubling to 30 s with 0.5 s of jitter.

Real model: replace `SimulatedChatModel(...)` with `ChatOpenAI(model="gpt-4o-mini", max_retries=0)`
and the backup with `ChatAnthropic(model="claude-3-5-haiku-latest", max_retries=0)`
(`max_retries=0` because this policy owns retries), and drop the injected failures.

Run: python examples/07_error_recovery.py
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph_fanout import (
    BreakerConfig,
    BreakerRegistry,
    DispatchResourceLimits,
    ErrorRecoveryPolicy,
    ErrorStrategy,
    dispatch_agents,
)
from langgraph_fanout.testing import SimulatedChatModel, rate_limit_error, server_error

ITEMS = [{"n": n} for n in range(10)]
ONE_AT_A_TIME = DispatchResourceLimits(max_concurrent=1)  # so the failure order is exact
RETRY_AFTER_S = 0.05


async def main() -> dict[str, Any]:
    # 1. Retry: the first two calls fail transiently (a 500, then a 429 with Retry-After).
    flaky = SimulatedChatModel(
        model_name="primary",
        failures=[server_error(), rate_limit_error(retry_after_s=RETRY_AFTER_S)],
    )
    policy = ErrorRecoveryPolicy(max_retries=2, backoff_initial_s=0.01, jitter_s=0.0)
    retried = await dispatch_agents(
        "Item {n}", ITEMS, agent=flaky, policy=policy, limits=ONE_AT_A_TIME,
        breakers=BreakerRegistry(),  # this example's own breakers, not the process-wide ones
    )  # fmt: skip
    waits = [a.wait_before_s for r in retried for a in r.attempts if a.wait_before_s]
    print(
        f"Retry: {retried.report.succeeded}/{len(ITEMS)} ok after "
        f"{retried.report.retries} retries; waits {waits} s (the 429 said {RETRY_AFTER_S})"
    )

    # 2. Fallback and 3. breaker: the primary is down; the breaker opens after 3 failures.
    down = SimulatedChatModel(model_name="primary", failure_rate=1.0, failure_kind="server_error")
    backup = SimulatedChatModel(model_name="backup", latency_s=0.01)
    policy = ErrorRecoveryPolicy(
        strategy=ErrorStrategy.FALLBACK, fallback_tools=["backup"], max_retries=0,
        breaker=BreakerConfig(minimum_calls=3, cooldown_s=30.0),
    )  # fmt: skip
    rescued = await dispatch_agents(
        "Item {n}", ITEMS, agent=down, agents={"backup": backup}, policy=policy,
        limits=ONE_AT_A_TIME, breakers=BreakerRegistry(),
    )  # fmt: skip
    report = rescued.report
    # Calls the primary really received: attempts refused by its open breaker made none.
    primary_calls = sum(
        a.agent == "primary" and a.error != "circuit_open" for r in rescued for a in r.attempts
    )
    print(f"Fallback: {report.succeeded}/{len(ITEMS)} answered, {report.fallbacks} by backup")
    print(
        f"Breaker: opened {report.breaker_openings}x; the dead primary was called "
        f"{primary_calls} times for {len(ITEMS)} inputs, then skipped"
    )
    return {"retried": retried.report, "waits": waits, "fallback": report,
            "primary_calls": primary_calls, "agents_used": [r.agent_used for r in rescued],
            "models": (flaky, down, backup)}  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
