"""Classification of sub-agent failures: what went wrong, may a retry help, how long to wait.

Foreign exceptions (OpenAI, Anthropic, httpx, LangChain) become one ``AgentError`` where
they enter the pipeline (``classify_error``), saying whether retrying may help
(``is_transient``) and how long the provider asked us to wait (``retry_after_s``). The
provider SDKs are optional, so they are recognised by duck typing, never imported. Error
details are redacted: a provider message that echoes a key never reaches a result or a log.

A failure is one of three things for the circuit breaker (``is_outage``):

- **backpressure**: 429, 503 and 529 ("overloaded"), or anything carrying a Retry-After.
  The endpoint is up and asks us to slow down: retried, never counted as an outage.
- **the input's fault**: other 4xx, a context-length error, or an error the agent raised
  that no retry would change (a ``ValueError`` for that input). It fails that input only.
- **an outage**: connection failures, timeouts, 5xx without a Retry-After, and the 4xx
  that fail every input alike (401, 403: a bad key; 408). Only these count toward opening
  a breaker.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from langgraph_fanout.errors import AgentError, CallError, CallTimeout
from langgraph_fanout.guards.screening import safe_message

DETAIL_MAX_CHARS = 300

# 408 request timeout, 409 conflict (OpenAI uses it for transient lock contention),
# 425 too early, 429 rate limited; every 5xx is added by the check itself.
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
# Statuses by which the provider says it is up but busy: slow down and retry.
BACKPRESSURE_STATUS = frozenset({429, 503, 529})
# 4xx that fail every input alike (a request timeout, a bad key, no access): the agent's
# fault, not the input's.
_AGENT_FAULT_STATUS = frozenset({401, 403, 408})
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


def _chain(exc: BaseException, limit: int = 8) -> Iterator[BaseException]:
    """The exception and those it was explicitly raised from (``raise ... from``).

    Only ``__cause__``: wrappers (LangChain's around OpenAI's) chain that way, while an
    implicit ``__context__`` is just whatever was being handled, e.g. a ``KeyError``
    raised inside ``except TimeoutError:`` is a bug, not a transient failure.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < limit:
        seen.add(id(current))
        yield current
        current = current.__cause__


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


# In the order they are trusted; LiteLLM's proxy passes the provider's header on prefixed.
_RETRY_AFTER_HEADERS = (
    ("retry-after-ms", 0.001),
    ("retry-after", 1.0),
    ("llm_provider-retry-after-ms", 0.001),
    ("llm_provider-retry-after", 1.0),
)


def _retry_after_from_headers(headers: Any, now: float) -> float | None:
    for name, scale in _RETRY_AFTER_HEADERS:
        raw = _header(headers, name)
        if raw is None:
            continue
        try:
            return float(raw) * scale
        except ValueError:
            pass
    for name in ("retry-after", "llm_provider-retry-after"):
        raw = _header(headers, name)
        if raw is None:
            continue
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

    Reads ``retry-after-ms``, then ``retry-after`` (seconds, or an HTTP date), the same two
    prefixed ``llm_provider-`` (as LiteLLM's proxy passes them on), then OpenAI's
    ``x-ratelimit-reset-requests``/``-tokens`` for a limit whose ``remaining`` is 0, from the
    headers of the exception or its ``response``, following ``__cause__`` (LangChain wraps
    the SDK's error). A date in the past gives ``0.0``; a non-finite value
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


def is_outage(error: CallError) -> bool:
    """Whether a classified failure says the agent is down (see the module docstring).

    Counted: timeouts, connection failures, 5xx other than 503/529 and 401/403/408, without
    a Retry-After. Not counted: backpressure (429, 503, 529, any Retry-After), the input's
    fault (other 4xx, context length, a non-transient error of the agent), and this
    package's own refusals, cancellations and open circuits.

    Example:
        >>> is_outage(classify_error(ConnectionError("reset"), agent="a"))
        True
        >>> is_outage(AgentError(agent="a", cause_type="RateLimitError", detail="",
        ...                      retryable=True, status_code=429))
        False
    """
    if isinstance(error, CallTimeout):
        return True
    if not isinstance(error, AgentError) or error.retry_after_s is not None:
        return False
    status = error.status_code
    if status is not None:
        if status in BACKPRESSURE_STATUS:
            return False
        return status >= 500 or status in _AGENT_FAULT_STATUS
    return error.retryable


def is_backpressure(error: CallError) -> bool:
    """Whether the provider asked to slow down: 429, 503, 529, or any Retry-After."""
    if not isinstance(error, AgentError):
        return False
    return error.retry_after_s is not None or error.status_code in BACKPRESSURE_STATUS
