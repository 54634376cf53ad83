"""Retry, fallback and circuit breaking around one sub-agent call.

Three pieces, each usable alone:

- classification (``classify_error``, ``is_transient``, ``retry_after_s``): foreign
  exceptions (OpenAI, Anthropic, httpx, LangChain) become one ``AgentError`` where they enter,
  saying whether retrying may help and how long the provider asked us to wait. The provider
  SDKs are optional, so they are recognised by duck typing, never imported.
- policy (``ErrorRecoveryPolicy``, ``ErrorStrategy``, ``backoff_wait``): what to do when an
  attempt fails, with tenacity's wait objects for the backoff.
- the loop (``run_with_recovery``): attempts of the primary agent, then of each fallback,
  each guarded by that agent's circuit breaker (``breaker.py``), with every attempt recorded.

``asyncio.CancelledError``, ``KeyboardInterrupt`` and other ``BaseException`` that are not
``Exception`` are never caught, classified or retried.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)
from tenacity.wait import wait_base

from .breaker import BreakerConfig, BreakerRegistry, BreakerState, CircuitBreaker, default_breakers
from .errors import (
    AgentError,
    CallCancelled,
    CallError,
    CallSkipped,
    CallTimeout,
    CircuitOpen,
    ConfigurationError,
    RefusedError,
    RetriesExhausted,
)
from .results import Attempt
from .security import safe_message

__all__ = [
    "ErrorRecoveryPolicy",
    "ErrorStrategy",
    "RecoveryOutcome",
    "backoff_wait",
    "classify_error",
    "is_transient",
    "retry_after_s",
    "run_with_recovery",
    "wait_jitter",
    "wait_retry_after",
]

A = TypeVar("A")
T = TypeVar("T")

DETAIL_MAX_CHARS = 300

# 408 request timeout, 409 conflict (OpenAI uses it for transient lock contention),
# 425 too early, 429 rate limited; every 5xx is added by the check itself.
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
# Statuses by which the provider blames the request, not itself: they say nothing about the
# agent's health, so they do not count against its circuit breaker.
_REQUEST_FAULT_STATUS = frozenset({400, 413, 422})
# Transport failures of httpx/httpx2/httpcore/httpcore2, the OpenAI and Anthropic SDKs and
# aiohttp, by class name anywhere in the MRO (subclasses such as ReadTimeout are covered).
_TRANSIENT_CLASS_NAMES = frozenset(
    {
        "APIConnectionError",
        "APITimeoutError",
        "TimeoutException",
        "NetworkError",
        "RemoteProtocolError",
        "ClientConnectionError",
        "ServerDisconnectedError",
    }
)
_CONTEXT_OVERFLOW_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "input tokens exceed",
)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


# --------------------------------------------------------------------------- classification


def _chain(exc: BaseException, limit: int = 8) -> Iterator[BaseException]:
    """The exception and those it was raised from, in the order Python prints them."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < limit:
        seen.add(id(current))
        yield current
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None


def _own_status(exc: BaseException) -> int | None:
    for holder in (exc, getattr(exc, "response", None)):
        status = getattr(holder, "status_code", None)
        if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
            return status
    return None


def _status_code(exc: BaseException) -> int | None:
    for link in _chain(exc):
        if isinstance(link, AgentError):
            return link.status_code
        status = _own_status(link)
        if status is not None:
            return status
    return None


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not break error handling
        return type(exc).__name__


def _is_context_overflow(exc: BaseException, status: int | None) -> bool:
    if any("ContextOverflow" in cls.__name__ for cls in type(exc).__mro__):
        return True
    if getattr(exc, "code", None) == "context_length_exceeded":
        return True
    # Message markers are weaker evidence: a 429 may speak of tokens per minute.
    text = _safe_str(exc).lower()
    return status != 429 and any(marker in text for marker in _CONTEXT_OVERFLOW_MARKERS)


def _verdict(exc: BaseException) -> bool | None:
    """Whether ``exc`` alone says retrying may help; ``None`` when it says nothing."""
    if isinstance(exc, AgentError):
        return exc.retryable
    if isinstance(exc, CallTimeout):
        return True
    if isinstance(exc, CallError):
        # Refused, cancelled, skipped, open circuit, or a nested recovery that already retried.
        return False
    status = _own_status(exc)
    if _is_context_overflow(exc, status):
        return False
    if status is not None:
        return status in _TRANSIENT_STATUS or status >= 500
    flag = getattr(exc, "is_retryable", None)
    if isinstance(flag, bool):
        # langchain-core's ModelError family; a plain False still counts as a verdict.
        return flag
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if any(cls.__name__ in _TRANSIENT_CLASS_NAMES for cls in type(exc).__mro__):
        return True
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same call may succeed.

    Transient: HTTP 408/409/425/429 and 5xx, timeouts (``TimeoutError``, httpx and SDK timeouts),
    connection errors, and anything with ``is_retryable = True`` (langchain-core's
    ``ModelError`` family). Never transient: other 4xx (auth, bad request, not found,
    unprocessable), context-length errors whatever their status, our own refusals and
    cancellations, and ``BaseException`` that is not an ``Exception``. The HTTP status wins
    over ``is_retryable``. A wrapper that says nothing itself inherits the verdict of the
    exception it was raised from.

    Args:
        exc: any exception.

    Example:
        >>> is_transient(TimeoutError()), is_transient(ValueError("bad"))
        (True, False)
    """
    if not isinstance(exc, Exception):
        return False
    for link in _chain(exc):
        verdict = _verdict(link)
        if verdict is not None:
            return verdict
    return False


def _header(headers: Any, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name)
    if value is None and isinstance(headers, Mapping):
        # Plain dicts are case-sensitive; httpx Headers are not.
        value = next((v for k, v in headers.items() if str(k).lower() == name), None)
    return None if value is None else str(value)


def _parse_duration(text: str) -> float | None:
    """OpenAI's ``x-ratelimit-reset-*`` values: ``"20ms"``, ``"1s"``, ``"6m0s"``, ``"1h2m"``."""
    parts = _DURATION_PART.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def _retry_after_from_headers(headers: Any, now: float) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = _header(headers, name)
        if raw is None:
            continue
        try:
            return float(raw) * scale
        except ValueError:
            pass
    raw = _header(headers, "retry-after")
    if raw is not None:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None and when.tzinfo is not None:
            return when.timestamp() - now
    # Only the limit that ran out says when to come back.
    waits = [
        _parse_duration(reset)
        for kind in ("requests", "tokens")
        if _header(headers, f"x-ratelimit-remaining-{kind}") == "0"
        and (reset := _header(headers, f"x-ratelimit-reset-{kind}")) is not None
    ]
    known = [w for w in waits if w is not None]
    return max(known) if known else None


def retry_after_s(exc: BaseException, *, now: float | None = None) -> float | None:
    """The wait in seconds the provider asked for before retrying, if it said one.

    Reads ``retry-after-ms``, then ``retry-after`` (seconds, or an HTTP date), then OpenAI's
    ``x-ratelimit-reset-requests``/``-tokens`` for a limit whose ``remaining`` is 0, from the
    headers of the exception or its ``response``, following ``__cause__``/``__context__``
    (LangChain wraps the SDK's error). A date in the past gives ``0.0``; a non-finite value
    gives ``None``.

    Args:
        exc: any exception.
        now: wall-clock seconds to measure HTTP dates from; ``time.time()`` when omitted.

    Example:
        >>> class Limited(Exception):
        ...     headers = {"Retry-After": "2"}
        >>> retry_after_s(Limited())
        2.0
    """
    wall = time.time() if now is None else now
    for link in _chain(exc):
        if isinstance(link, AgentError) and link.retry_after_s is not None:
            return link.retry_after_s
        for holder in (link, getattr(link, "response", None)):
            headers = getattr(holder, "headers", None)
            if headers is None:
                continue
            seconds = _retry_after_from_headers(headers, wall)
            if seconds is not None:
                return max(0.0, seconds) if math.isfinite(seconds) else None
    return None


def _detail(exc: BaseException) -> str:
    # Provider errors may echo a key or a user's data: results and logs never carry them.
    text = safe_message(" ".join(_safe_str(exc).split())) or "(no message)"
    if len(text) > DETAIL_MAX_CHARS:
        text = text[: DETAIL_MAX_CHARS - 1] + "…"
    return text


def classify_error(
    exc: BaseException,
    *,
    agent: str,
    retry_on: Callable[[BaseException], bool] = is_transient,
) -> CallError:
    """Translate any exception raised by ``agent`` into this package's error tree.

    ``CallError`` instances are returned as they are. Anything else becomes an
    ``AgentError`` naming the original type, a short detail (at most 300 characters), the
    HTTP status and the provider's ``Retry-After`` when there is one, and
    ``retryable=retry_on(exc)``. Raise the result ``from exc`` to keep the original traceback.

    Args:
        exc: the exception the agent raised.
        agent: the agent's name.
        retry_on: the transient test; the policy's ``retry_on`` when called by the loop.

    Example:
        >>> err = classify_error(TimeoutError("slow"), agent="writer")
        >>> err.kind, err.retryable
        ('agent_error', True)
    """
    if isinstance(exc, CallError):
        return exc
    return AgentError(
        agent=agent,
        cause_type=type(exc).__name__,
        detail=_detail(exc),
        retryable=retry_on(exc),
        status_code=_status_code(exc),
        retry_after_s=retry_after_s(exc),
    )


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


def _check_number(owner: str, name: str, value: object, *, minimum: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ConfigurationError(
            f"{owner}.{name} must be a finite number >= {minimum:g}, got {value!r}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRecoveryPolicy:
    """How a sub-agent call recovers from failed attempts.

    Each agent gets ``1 + max_retries`` attempts (one under ``FAIL``). Only errors that
    ``retry_on`` calls transient are retried on the same agent; under ``FALLBACK`` any other
    failure moves straight on to the next fallback, except a ``RefusedError`` (budget, limits),
    which ends the whole recovery at once because another agent would be refused too.

    Backoff before retry *n* (1-based) is ``min(backoff_initial_s * backoff_multiplier **
    (n - 1), backoff_max_s)`` plus additive jitter drawn uniformly from ``[0, jitter_s]``.
    When the error carries the provider's Retry-After, that wait, capped at
    ``retry_after_cap_s``, replaces the backoff, without jitter: the provider said when.

    Attributes:
        strategy: what to do after a failure (see ``ErrorStrategy``).
        max_retries: retries per agent after its first attempt.
        fallback_tools: fallback agents, as names for the caller's registry or agent objects;
            only used with ``FALLBACK``.
        backoff_initial_s: the first backoff.
        backoff_multiplier: growth of each next backoff (>= 1).
        backoff_max_s: cap of the backoff before jitter.
        jitter_s: upper bound of the random amount added to each backoff.
        retry_after_cap_s: cap of a provider's Retry-After.
        retry_on: the transient test applied to the original exception.
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
    fallback_tools: tuple[str | Any, ...] = ()
    backoff_initial_s: float = 0.5
    backoff_multiplier: float = 2.0
    backoff_max_s: float = 30.0
    jitter_s: float = 0.5
    retry_after_cap_s: float = 60.0
    retry_on: Callable[[BaseException], bool] = is_transient
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
        retries = self.max_retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError(
                f"ErrorRecoveryPolicy.max_retries must be an int >= 0, got {retries!r}"
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
            _check_number("ErrorRecoveryPolicy", name, getattr(self, name), minimum=0)
        _check_number(
            "ErrorRecoveryPolicy", "backoff_multiplier", self.backoff_multiplier, minimum=1
        )
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigurationError(
                f"ErrorRecoveryPolicy.backoff_max_s ({self.backoff_max_s:g}) must be >= "
                f"backoff_initial_s ({self.backoff_initial_s:g})"
            )
        if not callable(self.retry_on):
            raise ConfigurationError(
                f"ErrorRecoveryPolicy.retry_on must be callable, got {self.retry_on!r}"
            )
        if self.breaker is not None and not isinstance(self.breaker, BreakerConfig):
            raise ConfigurationError(
                f"ErrorRecoveryPolicy.breaker must be a BreakerConfig or None, got {self.breaker!r}"
            )

    @property
    def attempts_per_agent(self) -> int:
        """Attempts each agent gets: ``1 + max_retries``, or 1 under ``FAIL``."""
        return 1 if self.strategy is ErrorStrategy.FAIL else 1 + self.max_retries


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


class wait_retry_after(wait_base):
    """Wait what the provider asked for (capped at ``cap``), else ``fallback_wait``.

    Reads ``retry_after_s`` of the failed attempt's exception (an ``AgentError``), or parses
    it from any other exception's headers.
    """

    def __init__(self, fallback_wait: wait_base, cap: float) -> None:
        self.fallback_wait = fallback_wait
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if exc is not None:
            asked = exc.retry_after_s if isinstance(exc, AgentError) else retry_after_s(exc)
            if asked is not None:
                return min(max(0.0, asked), self.cap)
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
        exponential + wait_jitter(policy.jitter_s, rng), policy.retry_after_cap_s
    )


# --------------------------------------------------------------------------- the loop


_CONTROLLERS: dict[tuple[int, int], tuple[ErrorRecoveryPolicy, Any, AsyncRetrying]] = {}


def _controller(policy: ErrorRecoveryPolicy, rng: random.Random | None) -> AsyncRetrying:
    """tenacity's stop/wait/retry for ``policy``: built once, then only read (per-call state
    lives in each ``RetryCallState``). Keyed by identity: hashing the policy on every call
    would cost more than the lookup saves; the entry keeps both objects alive."""
    key = (id(policy), id(rng))
    entry = _CONTROLLERS.get(key)
    if entry is not None and entry[0] is policy and entry[1] is rng:
        return entry[2]
    controller = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts_per_agent),
        wait=backoff_wait(policy, rng=rng),
        retry=retry_if_exception(
            lambda e: isinstance(e, CallError) and _is_retryable(e, policy.retry_on)
        ),
    )
    if len(_CONTROLLERS) > 1024:  # policies are few; this only bounds a pathological caller
        _CONTROLLERS.clear()
    _CONTROLLERS[key] = (policy, rng, controller)
    return controller


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryOutcome(Generic[T]):
    """How one call ended after retries and fallbacks.

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


def _counts_against_breaker(err: CallError) -> bool:
    if isinstance(err, AgentError):
        return err.retryable or err.status_code not in _REQUEST_FAULT_STATUS
    return True


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
        name_of: the name of an agent (for records, errors and breakers).
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
    # tenacity's stop/wait/retry objects decide; the loop drives them by hand so that it, not
    # tenacity, decides which exceptions are caught (never a BaseException such as
    # CancelledError) and can ask the breaker before every attempt.
    controller = _controller(policy, rng)
    primary_name = name_of(primary)
    records: list[Attempt] = []
    calls = retries = opened = 0
    last: CallError | None = None
    first_open: CircuitOpen | None = None
    fallback_used = False

    def record(agent: str, error: CallError | None, wait: float, duration: float) -> None:
        entry = Attempt(
            agent=agent,
            number=len(records) + 1,
            error=None if error is None else error.kind,
            wait_before_s=wait,
            duration_s=duration,
        )
        records.append(entry)
        if on_attempt is not None:
            on_attempt(entry)

    agents = [primary, *fallbacks]
    for position, agent in enumerate(agents):
        name = primary_name if position == 0 else name_of(agent)
        fallback_used = fallback_used or position > 0
        breaker: CircuitBreaker | None = (
            None if policy.breaker is None else registry.get(name, policy.breaker)
        )
        # Built at the first failure only: most calls succeed at once and never need it.
        state: RetryCallState | None = None
        wait = 0.0
        while True:
            if breaker is not None and not breaker.try_acquire():
                refusal = breaker.open_error()
                first_open = first_open or refusal
                last = refusal
                record(name, refusal, wait, 0.0)
                break
            if state is not None:
                retries += 1
            started = clock()
            try:
                output = await attempt(agent)
            except Exception as exc:
                err = classify_error(exc, agent=name, retry_on=policy.retry_on)
            except BaseException:
                if breaker is not None:
                    breaker.release_probe()
                raise
            else:
                if breaker is not None:
                    breaker.record_success()
                record(name, None, wait, clock() - started)
                return RecoveryOutcome(
                    output=output,
                    attempts=tuple(records),
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
                if _counts_against_breaker(err):
                    opened += breaker.record_failure()
                else:
                    breaker.release_probe()
            if state is None:
                state = RetryCallState(controller, None, (), {})
            state.set_exception((type(err), err, err.__traceback__))
            if not controller.retry(state) or controller.stop(state):
                break
            if breaker is not None and breaker.state is BreakerState.OPEN:
                # This failure (or a concurrent call's) just opened the circuit: move on now
                # rather than sleep for a retry the breaker would refuse. ``last`` stays the
                # agent's own error, the more useful one to report.
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
