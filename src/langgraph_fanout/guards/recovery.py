"""Retry, fallback and circuit breaking around one sub-agent call.

Two pieces, each usable alone, on top of the classification of failures (``classify.py``,
whose ``classify_error``, ``is_transient`` and ``retry_after_s`` are re-exported here):

- policy (``ErrorRecoveryPolicy``, ``ErrorStrategy``, ``backoff_wait``): what to do when an
  attempt fails, with tenacity's wait objects for the backoff.
- the loop (``run_with_recovery``): attempts of the primary agent, then of each fallback,
  each guarded by that agent's circuit breaker (``breaker.py``), with every attempt recorded.

``asyncio.CancelledError``, ``KeyboardInterrupt`` and other ``BaseException`` that are not
``Exception`` are never caught, classified or retried.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from langgraph.errors import GraphBubbleUp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
)
from tenacity.wait import wait_base

from langgraph_fanout.core.checks import MAX_SECONDS, check_number
from langgraph_fanout.core.results import Attempt
from langgraph_fanout.errors import (
    AgentError,
    CallCancelled,
    CallError,
    CallSkipped,
    CircuitOpen,
    ConfigurationError,
    RefusedError,
    RetriesExhausted,
)
from langgraph_fanout.guards.breaker import (
    BreakerConfig,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    default_breakers,
)
from langgraph_fanout.guards.classify import (
    classify_error,
    is_backpressure,
    is_outage,
    is_transient,
    retry_after_s,
)

A = TypeVar("A")
T = TypeVar("T")

# --------------------------------------------------------------------------- policy


class ErrorStrategy(StrEnum):
    """What a call does when an attempt fails.

    - ``RETRY``: retry transient errors on the primary agent only.
    - ``FALLBACK``: retry each agent, then move on to the next fallback, in order.
    - ``SKIP``: like ``RETRY``, but a final failure ends the input as skipped.
    - ``FAIL``: no retries; the first failure is final.
    """

    RETRY = "retry"
    FALLBACK = "fallback"
    SKIP = "skip"
    FAIL = "fail"


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRecoveryPolicy:
    """How a sub-agent call recovers from failed attempts.

    Each agent gets ``1 + max_retries`` attempts (one under ``FAIL``), and up to
    ``backpressure_retries`` more for answers that only say "not now" (a 429, an overloaded
    503/529, any error with a Retry-After: ``is_backpressure``): the provider did no work
    and told us when to come back, so such an answer does not use up the retries meant for
    failures. Only errors that
    ``retry_on`` calls transient are retried on the same agent; under ``FALLBACK`` any other
    failure moves straight on to the next fallback, except a ``RefusedError`` (budget, limits),
    which ends the whole recovery at once because another agent would be refused too.

    Backoff before retry *n* (1-based) is ``min(backoff_initial_s * backoff_multiplier **
    (n - 1), backoff_max_s)`` plus additive jitter drawn uniformly from ``[0, jitter_s]``.
    When the error carries the provider's Retry-After, that wait, capped at
    ``retry_after_cap_s``, replaces the backoff, plus up to 10% of it at random
    (``RETRY_AFTER_SPREAD``), so calls told to come back at the same second do not all
    come back at the same instant.

    Attributes:
        strategy: what to do after a failure (see ``ErrorStrategy``).
        max_retries: retries per agent after its first attempt.
        backpressure_retries: further retries per agent for backpressure answers only
            (``0`` counts them like any failure; not used under ``FAIL``).
        fallback_tools: fallback agents, as names for the caller's registry or agent objects;
            only used with ``FALLBACK``.
        backoff_initial_s: the first backoff.
        backoff_multiplier: growth of each next backoff (>= 1).
        backoff_max_s: cap of the backoff before jitter.
        jitter_s: upper bound of the random amount added to each backoff.
        retry_after_cap_s: cap of a provider's Retry-After.
        retry_on: the transient test applied to the original exception.
        outage_on: which classified failures count toward opening the agent's breaker
            (``is_outage``: timeouts, connection failures, 5xx without Retry-After; never
            backpressure such as 429/503/529 or the input's own fault).
        breaker: circuit-breaker thresholds, or ``None`` to call agents without a breaker.

    Example:
        >>> policy = ErrorRecoveryPolicy(
        ...     strategy=ErrorStrategy.FALLBACK, fallback_tools=["backup_agent"], max_retries=2
        ... )
        >>> policy.fallback_tools, policy.attempts_per_agent
        (('backup_agent',), 3)
    """

    strategy: ErrorStrategy = ErrorStrategy.RETRY
    max_retries: int = 2
    backpressure_retries: int = 5
    fallback_tools: tuple[str | Any, ...] = ()
    backoff_initial_s: float = 0.5
    backoff_multiplier: float = 2.0
    backoff_max_s: float = 30.0
    jitter_s: float = 0.5
    retry_after_cap_s: float = 60.0
    retry_on: Callable[[BaseException], bool] = is_transient
    outage_on: Callable[[CallError], bool] = is_outage
    breaker: BreakerConfig | None = field(default_factory=BreakerConfig)

    def __post_init__(self) -> None:
        try:
            strategy = ErrorStrategy(self.strategy)
        except ValueError:
            choices = ", ".join(s.value for s in ErrorStrategy)
            raise ConfigurationError(
                f"ErrorRecoveryPolicy.strategy must be one of {choices}, got {self.strategy!r}"
            ) from None
        object.__setattr__(self, "strategy", strategy)
        for name in ("max_retries", "backpressure_retries"):
            check_number(
                f"ErrorRecoveryPolicy.{name}",
                getattr(self, name),
                at_least=0,
                at_most=1000,
                integer=True,
            )
        if isinstance(self.fallback_tools, str | bytes) or not isinstance(
            self.fallback_tools, Sequence
        ):
            raise ConfigurationError(
                "ErrorRecoveryPolicy.fallback_tools must be a list of agent names or agents, "
                f"got {self.fallback_tools!r}"
            )
        object.__setattr__(self, "fallback_tools", tuple(self.fallback_tools))
        if self.fallback_tools and strategy is not ErrorStrategy.FALLBACK:
            raise ConfigurationError(
                f"ErrorRecoveryPolicy.fallback_tools is only used with strategy=FALLBACK, "
                f"got strategy={strategy.value}"
            )
        for name in ("backoff_initial_s", "backoff_max_s", "jitter_s", "retry_after_cap_s"):
            check_number(
                f"ErrorRecoveryPolicy.{name}",
                getattr(self, name),
                at_least=0,
                at_most=MAX_SECONDS,
            )
        check_number(
            "ErrorRecoveryPolicy.backoff_multiplier",
            self.backoff_multiplier,
            at_least=1,
            at_most=1000,
        )
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigurationError(
                f"ErrorRecoveryPolicy.backoff_max_s ({self.backoff_max_s:g}) must be >= "
                f"backoff_initial_s ({self.backoff_initial_s:g})"
            )
        for name in ("retry_on", "outage_on"):
            if not callable(getattr(self, name)):
                raise ConfigurationError(
                    f"ErrorRecoveryPolicy.{name} must be callable, got {getattr(self, name)!r}"
                )
        if self.breaker is not None and not isinstance(self.breaker, BreakerConfig):
            raise ConfigurationError(
                f"ErrorRecoveryPolicy.breaker must be a BreakerConfig or None, got {self.breaker!r}"
            )

    @property
    def attempts_per_agent(self) -> int:
        """Attempts each agent gets: ``1 + max_retries``, or 1 under ``FAIL``."""
        return 1 if self.strategy is ErrorStrategy.FAIL else 1 + self.max_retries

    @property
    def most_attempts_per_agent(self) -> int:
        """The most attempts an agent can get, backpressure retries included."""
        if self.strategy is ErrorStrategy.FAIL:
            return 1
        return self.attempts_per_agent + self.backpressure_retries


_SHARED_RNG = random.Random()


class wait_jitter(wait_base):
    """A uniform random wait in ``[0, jitter_s]`` drawn from an injectable ``rng``.

    Tenacity's ``wait_random`` draws from the ``random`` module; this one is reproducible.
    """

    def __init__(self, jitter_s: float, rng: random.Random | None = None) -> None:
        self.jitter_s = jitter_s
        # Seeding a new Random costs more than a whole call's bookkeeping: share one.
        self.rng = rng if rng is not None else _SHARED_RNG

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.rng.uniform(0.0, self.jitter_s) if self.jitter_s > 0 else 0.0


RETRY_AFTER_SPREAD = 0.1
"""A wait the provider asked for is lengthened by a random share of it up to this."""


class wait_retry_after(wait_base):
    """Wait what the provider asked for (capped at ``cap``, spread by up to
    ``RETRY_AFTER_SPREAD`` of it), else ``fallback_wait``.

    Reads ``retry_after_s`` of the failed attempt's exception (an ``AgentError``), or parses
    it from any other exception's headers.
    """

    def __init__(
        self, fallback_wait: wait_base, cap: float, rng: random.Random | None = None
    ) -> None:
        self.fallback_wait = fallback_wait
        self.cap = cap
        self.rng = rng if rng is not None else _SHARED_RNG

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if exc is not None:
            asked = exc.retry_after_s if isinstance(exc, AgentError) else retry_after_s(exc)
            if asked is not None:
                wait = min(max(0.0, asked), self.cap)
                return wait * (1.0 + self.rng.uniform(0.0, RETRY_AFTER_SPREAD))
        return float(self.fallback_wait(retry_state))


def backoff_wait(policy: ErrorRecoveryPolicy, *, rng: random.Random | None = None) -> wait_base:
    """The tenacity wait of ``policy``: Retry-After when given, else exponential plus jitter.

    Args:
        policy: the recovery policy.
        rng: source of the jitter; a fresh ``random.Random()`` when omitted.

    Example:
        >>> wait = backoff_wait(ErrorRecoveryPolicy(jitter_s=0.0))
        >>> state = RetryCallState(AsyncRetrying(), None, (), {})
        >>> state.attempt_number = 3
        >>> wait(state)
        2.0
    """
    exponential = wait_exponential(
        multiplier=policy.backoff_initial_s,
        exp_base=policy.backoff_multiplier,
        max=policy.backoff_max_s,
    )
    return wait_retry_after(
        exponential + wait_jitter(policy.jitter_s, rng), policy.retry_after_cap_s, rng
    )


# --------------------------------------------------------------------------- the loop


_CONTROLLERS: dict[tuple[int, int], tuple[ErrorRecoveryPolicy, Any, AsyncRetrying]] = {}
_MAX_CONTROLLERS = 64


def _controller(policy: ErrorRecoveryPolicy, rng: random.Random | None) -> AsyncRetrying:
    """tenacity's wait and retry for ``policy``: built once, then only read (per-call state
    lives in each ``RetryCallState``). Keyed by identity: hashing the policy on every call
    would cost more than the lookup saves; the entry keeps both objects alive."""
    key = (id(policy), id(rng))
    entry = _CONTROLLERS.get(key)
    if entry is not None and entry[0] is policy and entry[1] is rng:
        return entry[2]
    controller = AsyncRetrying(
        wait=backoff_wait(policy, rng=rng),
        retry=retry_if_exception(
            lambda e: isinstance(e, CallError) and _is_retryable(e, policy.retry_on)
        ),
    )
    if len(_CONTROLLERS) >= _MAX_CONTROLLERS:
        # A caller that builds a policy or an rng per dispatch: forget the oldest, so a
        # long-lived process holds at most this many (each keeps its policy and rng alive).
        del _CONTROLLERS[next(iter(_CONTROLLERS))]
    _CONTROLLERS[key] = (policy, rng, controller)
    return controller


@dataclass(slots=True, kw_only=True)
class RecoveryOutcome(Generic[T]):
    """How one call ended after retries and fallbacks (read-only; not frozen because one
    is built per call on the engine's hot path, where a frozen dataclass costs twice as
    much to construct).

    Attributes:
        output: the output of the agent that succeeded (``None`` on failure).
        error: ``None`` on success; else the raw error when a single attempt was made,
            ``RetriesExhausted`` after several, ``CallSkipped`` under ``SKIP``, ``CircuitOpen``
            when no agent could be called, or the ``RefusedError``/``CallCancelled`` that
            ended the recovery.
        attempts: every attempt, including ``circuit_open`` ones that never called the agent.
        agent_used: name of the agent that produced the output.
        fallback_used: the recovery moved on to a fallback agent (whether or not it succeeded).
        retries: attempts repeated on the same agent after a failure.
        breaker_opened: breakers this call's failures opened.
    """

    output: T | None = None
    error: CallError | None = None
    attempts: tuple[Attempt, ...] = ()
    agent_used: str | None = None
    fallback_used: bool = False
    retries: int = 0
    breaker_opened: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def _is_retryable(err: CallError, retry_on: Callable[[BaseException], bool]) -> bool:
    if isinstance(err, RefusedError | CallCancelled):
        return False
    if isinstance(err, AgentError):
        return err.retryable
    return retry_on(err)


def _final_error(
    *,
    strategy: ErrorStrategy,
    primary: str,
    last: CallError,
    calls: int,
    first_open: CircuitOpen | None,
) -> CallError:
    if strategy is ErrorStrategy.SKIP:
        return CallSkipped(agent=primary, cause=str(last))
    if calls == 0 and first_open is not None:
        return first_open
    if calls <= 1 and not isinstance(last, CircuitOpen):
        return last
    return RetriesExhausted(agent=primary, attempts=calls, last_error=last)


async def run_with_recovery(
    attempt: Callable[[A], Awaitable[T]],
    *,
    primary: A,
    fallbacks: Sequence[A] = (),
    policy: ErrorRecoveryPolicy,
    name_of: Callable[[A], str],
    key_of: Callable[[A], Hashable] | None = None,
    breakers: BreakerRegistry | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RecoveryOutcome[T]:
    """Run ``attempt`` on ``primary``, retrying and falling back as ``policy`` says.

    Before each attempt the agent's circuit breaker is asked; an open one records a
    ``circuit_open`` attempt and sends the call on to the next fallback without calling the
    agent. Each failure is classified (``classify_error``) and reported to the breaker:
    refusals, cancellations and request faults (HTTP 400/413/422) carry no verdict on the
    agent's health. A ``RefusedError`` or ``CallCancelled`` raised by ``attempt`` ends the
    recovery at once with that error, under every strategy. Failures are returned in the
    outcome, never raised.

    Args:
        attempt: performs one attempt of an agent (a retry is a new call, so per-call guards
            such as the budget check belong inside it) and returns its output or raises.
        primary: the agent the call is addressed to.
        fallbacks: agents to try in order after the primary (``FALLBACK`` only).
        policy: the recovery policy.
        name_of: the name of an agent (for records and errors).
        key_of: the key of an agent's circuit breaker (its name when omitted).
        breakers: the breaker registry; ``default_breakers`` (process-wide) when omitted.
        sleep: the async sleep used for backoff.
        rng: source of the backoff jitter.
        on_attempt: called with each attempt's record as soon as it ends.
        clock: monotonic seconds, for attempt durations.

    Raises:
        ConfigurationError: ``fallbacks`` given with a strategy other than ``FALLBACK``.
        asyncio.CancelledError: and any other ``BaseException`` that is not an ``Exception``,
            unchanged, from ``attempt`` or ``sleep``.

    Example:
        >>> async def ask(model):
        ...     return await model.ainvoke("hi")
        >>> outcome = await run_with_recovery(  # doctest: +SKIP
        ...     ask, primary=gpt, fallbacks=[claude], name_of=lambda m: m.model_name,
        ...     policy=ErrorRecoveryPolicy(strategy=ErrorStrategy.FALLBACK),
        ... )
    """
    if fallbacks and policy.strategy is not ErrorStrategy.FALLBACK:
        raise ConfigurationError(
            f"fallbacks are only tried with strategy=FALLBACK, got strategy={policy.strategy.value}"
        )
    registry = default_breakers if breakers is None else breakers
    # tenacity's wait and retry objects decide how long and whether; the loop drives them by
    # hand so that it, not tenacity, decides which exceptions are caught (never a
    # BaseException such as CancelledError), counts the attempts (backpressure answers are
    # excused up to their own allowance) and asks the breaker before every attempt.
    controller: AsyncRetrying | None = None  # built at the first failure: most calls never fail
    primary_name = name_of(primary)
    records: list[Attempt] = []
    calls = retries = opened = 0
    last: CallError | None = None
    first_open: CircuitOpen | None = None
    fallback_used = False

    def record(agent: str, error: CallError | None, wait: float, duration: float) -> Attempt:
        entry = Attempt(
            agent=agent,
            number=len(records) + 1,
            error=None if error is None else error.kind,
            wait_before_s=wait,
            duration_s=duration,
            backpressure=error is not None and is_backpressure(error),
        )
        records.append(entry)
        if on_attempt is not None:
            on_attempt(entry)
        return entry

    agents = [primary, *fallbacks]
    for position, agent in enumerate(agents):
        name = primary_name if position == 0 else name_of(agent)
        fallback_used = fallback_used or position > 0
        breaker: CircuitBreaker | None = (
            None
            if policy.breaker is None
            else registry.get(name if key_of is None else key_of(agent), policy.breaker)
        )
        # Built at the first failure only: most calls succeed at once and never need it.
        state: RetryCallState | None = None
        wait = 0.0
        more_agents = policy.strategy is ErrorStrategy.FALLBACK and position < len(agents) - 1
        # Attempts of this agent; those excused as backpressure; waits for the breaker's probe.
        made = excused = waited = 0
        while True:
            if breaker is not None and not breaker.try_acquire():
                # With attempts left and nowhere else to go, wait for the half-open probe
                # (never longer than a Retry-After may last) rather than fail the input.
                if (
                    not more_agents
                    and made - excused < policy.attempts_per_agent
                    and waited < policy.attempts_per_agent
                ):
                    waited += 1
                    if await breaker.wait_until_probed(sleep, longest_s=policy.retry_after_cap_s):
                        continue
                refusal = breaker.open_error(agent=name)
                first_open = first_open or refusal
                last = refusal
                record(name, refusal, wait, 0.0)
                break
            if state is not None:
                retries += 1
            made += 1
            started = clock()
            try:
                output = await attempt(agent)
            except GraphBubbleUp:
                # LangGraph's interrupt() (or a Command to a parent graph) inside the agent:
                # the graph pauses or routes; it is not a failure of the agent.
                if breaker is not None:
                    breaker.release_probe()
                raise
            except Exception as exc:
                err = classify_error(exc, agent=name, retry_on=policy.retry_on)
            except BaseException:
                if breaker is not None:
                    breaker.release_probe()
                raise
            else:
                if breaker is not None:
                    breaker.record_success()
                done = Attempt(
                    agent=name,
                    number=len(records) + 1,
                    wait_before_s=wait,
                    duration_s=clock() - started,
                )
                if on_attempt is not None:
                    on_attempt(done)
                return RecoveryOutcome(
                    output=output,
                    attempts=(*records, done) if records else (done,),
                    agent_used=name,
                    fallback_used=fallback_used,
                    retries=retries,
                    breaker_opened=opened,
                )
            calls += 1
            last = err
            record(name, err, wait, clock() - started)
            if isinstance(err, RefusedError | CallCancelled):
                if breaker is not None:
                    breaker.release_probe()
                return RecoveryOutcome(
                    error=err,
                    attempts=tuple(records),
                    fallback_used=fallback_used,
                    retries=retries,
                    breaker_opened=opened,
                )
            if breaker is not None:
                if policy.outage_on(err):
                    if breaker.record_failure():
                        opened += 1
                        records[-1] = dataclasses.replace(records[-1], opened_breaker=True)
                else:
                    breaker.release_probe()
            if controller is None:
                controller = _controller(policy, rng)
            if state is None:
                state = RetryCallState(controller, None, (), {})
            state.set_exception((type(err), err, err.__traceback__))
            if not controller.retry(state):
                break
            if (
                policy.strategy is not ErrorStrategy.FAIL
                and excused < policy.backpressure_retries
                and is_backpressure(err)
            ):
                excused += 1  # "not now" does not use up a retry meant for failures
            elif made - excused >= policy.attempts_per_agent:
                break
            if more_agents and breaker is not None and breaker.state is BreakerState.OPEN:
                # This failure (or a concurrent call's) just opened the circuit: move on to
                # the next agent now rather than sleep for a retry the breaker would refuse.
                # ``last`` stays the agent's own error, the more useful one to report.
                break
            wait = float(controller.wait(state))
            await sleep(wait)
            state.prepare_for_next_attempt()
        if policy.strategy is not ErrorStrategy.FALLBACK:
            break

    assert last is not None  # every agent ends with an error before the loop gets here
    return RecoveryOutcome(
        error=_final_error(
            strategy=policy.strategy,
            primary=primary_name,
            last=last,
            calls=calls,
            first_open=first_open,
        ),
        attempts=tuple(records),
        fallback_used=fallback_used,
        retries=retries,
        breaker_opened=opened,
    )
