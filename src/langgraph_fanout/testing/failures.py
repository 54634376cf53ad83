"""Simulated provider failures: errors shaped like a provider SDK's, and scripted failures.

The factories build exceptions that look like what a provider SDK raises
(``openai.RateLimitError`` with a real 429 response and ``retry-after`` header, ...), so
retry classification can be tested. ``openai`` is imported lazily and only by those
factories; without it they return ``SimulatedAPIError`` (or ``TimeoutError``), which carry
the same ``status_code`` and ``response.headers``.

Example:
    >>> rate_limit_error(2).response.headers["retry-after"]
    '2'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from langgraph_fanout.errors import ConfigurationError

_FAKE_URL: Final = "https://api.openai.com/v1/chat/completions"

FailureSpec: TypeAlias = BaseException | str | Callable[[], BaseException] | None
"""One scripted failure: an exception, a kind name (``FAILURE_KINDS``), a factory, or None."""


@dataclass(frozen=True, slots=True)
class SimulatedResponse:
    """The ``response`` of a ``SimulatedAPIError``: a status code and HTTP-like headers."""

    status_code: int
    headers: Mapping[str, str]


class SimulatedAPIError(Exception):
    """A provider-like HTTP error used when ``openai`` is not installed.

    Carries what retry classifiers look at: ``status_code``, ``response.headers``
    (``retry-after`` when given), ``retry_after_s`` and ``is_retryable`` (408, 409, 429, 5xx).

    Args:
        status_code: the simulated HTTP status.
        retry_after_s: the simulated ``retry-after`` header, in seconds.
        message: overrides the default message.

    Example:
        >>> SimulatedAPIError(429, retry_after_s=2).response.headers["retry-after"]
        '2'
    """

    def __init__(
        self, status_code: int, retry_after_s: float | None = None, message: str | None = None
    ) -> None:
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.is_retryable = status_code in (408, 409, 429) or status_code >= 500
        self.response = SimulatedResponse(status_code, _retry_headers(retry_after_s))
        self.message = message or f"Error code: {status_code} - simulated provider error"
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status_code, self.retry_after_s, self.message))


class ScriptExhaustedError(RuntimeError):
    """A scripted model or agent was called more times than it has scripted outputs.

    Args:
        what: which script ran out (``"responses"``, ``"outputs"``).
        length: how many items the script has.
    """

    def __init__(self, what: str, length: int) -> None:
        self.what = what
        self.length = length
        super().__init__(
            f"simulated {what} exhausted: all {length} scripted items were used "
            "(script more, or pass cycle=True to repeat them)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.length))


def _retry_headers(retry_after_s: float | None) -> dict[str, str]:
    headers = {"x-request-id": "req_simulated", "content-type": "application/json"}
    if retry_after_s is not None:
        seconds = float(retry_after_s)
        headers["retry-after"] = str(int(seconds)) if seconds.is_integer() else str(seconds)
        headers["retry-after-ms"] = str(round(seconds * 1000))
    return headers


def _openai_status_error(
    status: int, kind: str, message: str, retry_after_s: float | None
) -> Exception | None:
    """Build the ``openai`` error for ``status``, or None when openai is not installed."""
    try:
        import openai
    except ImportError:
        return None
    try:  # openai>=3 sends through httpx2, older versions through httpx
        import httpx2 as http
    except ImportError:  # pragma: no cover - depends on the installed openai
        import httpx as http  # type: ignore[no-redef]
    body = {"message": message, "type": kind, "param": None, "code": kind}
    response = http.Response(
        status,
        headers=_retry_headers(retry_after_s),
        json={"error": body},
        request=http.Request("POST", _FAKE_URL),
    )
    text = f"Error code: {status} - {{'error': {body!r}}}"
    cls: type[openai.APIStatusError]
    if status == 429:
        cls = openai.RateLimitError
    elif status == 400:
        cls = openai.BadRequestError
    elif status >= 500:
        cls = openai.InternalServerError
    else:
        cls = openai.APIStatusError
    return cls(text, response=response, body=body)


def rate_limit_error(retry_after_s: float | None = None) -> Exception:
    """A 429 as the provider SDK raises it: ``openai.RateLimitError`` with a real response.

    Args:
        retry_after_s: sets the ``retry-after`` (and ``retry-after-ms``) response header.

    Example:
        >>> rate_limit_error(2).response.headers["retry-after"]
        '2'
    """
    msg = "Rate limit reached (simulated)."
    return _openai_status_error(429, "rate_limit_exceeded", msg, retry_after_s) or (
        SimulatedAPIError(429, retry_after_s)
    )


def server_error(status: int = 500, *, retry_after_s: float | None = None) -> Exception:
    """A 5xx as the provider SDK raises it: ``openai.InternalServerError``.

    Args:
        status: the HTTP status, 500 to 599.
        retry_after_s: sets the ``retry-after`` header (503s often carry one).

    Raises:
        ValueError: if ``status`` is not a 5xx.
    """
    if not 500 <= status <= 599:
        raise ConfigurationError(f"server_error status must be 500..599, got {status}")
    msg = "The server had an error while processing your request (simulated)."
    return _openai_status_error(status, "server_error", msg, retry_after_s) or (
        SimulatedAPIError(status, retry_after_s)
    )


def bad_request_error(message: str = "Invalid request (simulated).") -> Exception:
    """A 400 as the provider SDK raises it: ``openai.BadRequestError`` (not retryable).

    Args:
        message: the error message in the body.
    """
    return _openai_status_error(400, "invalid_request_error", message, None) or (
        SimulatedAPIError(400, None, message)
    )


def timeout_error() -> Exception:
    """A request timeout: ``openai.APITimeoutError``, or a plain ``TimeoutError`` without openai."""
    try:
        import openai
    except ImportError:
        return TimeoutError("Request timed out (simulated).")
    try:
        import httpx2 as http
    except ImportError:  # pragma: no cover - depends on the installed openai
        import httpx as http  # type: ignore[no-redef]
    return openai.APITimeoutError(request=http.Request("POST", _FAKE_URL))


_FAILURE_FACTORIES: Final[Mapping[str, Callable[[], Exception]]] = {
    "rate_limit": rate_limit_error,
    "server_error": server_error,
    "timeout": timeout_error,
    "bad_request": bad_request_error,
}
FAILURE_KINDS: Final = tuple(_FAILURE_FACTORIES)
"""Names accepted wherever a ``FailureSpec`` is: each builds a fresh error per call."""


def _check_failure_spec(spec: object) -> None:
    if isinstance(spec, str) and spec not in _FAILURE_FACTORIES:
        raise ConfigurationError(f"unknown failure kind {spec!r}; use one of {FAILURE_KINDS}")


def _make_failure(spec: FailureSpec) -> BaseException | None:
    if spec is None or isinstance(spec, BaseException):
        return spec
    if isinstance(spec, str):
        return _FAILURE_FACTORIES[spec]()
    return spec()
