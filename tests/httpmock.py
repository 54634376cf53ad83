"""respx for ``openai>=3``: a mocker that patches ``httpcore2`` instead of ``httpcore``.

``openai>=3`` sends its HTTP through ``httpx2``/``httpcore2``, copies of ``httpx``/``httpcore``
under new names, so respx's default mocker (which patches ``httpcore``) never sees those
requests and they would go to the network. Importing this module registers a second respx
mocker, named ``"httpcore2"``, that patches the same connection classes of ``httpcore2``.
Routes are written exactly as usual (respx matches ``httpx.Request`` objects and returns
``httpx.Response`` objects); the mocker converts at the ``httpcore2`` boundary.

Example:
    >>> import respx
    >>> from httpmock import openai_chat_completion_body
    >>> with respx.mock(using="httpcore2", base_url="https://api.openai.com/v1") as router:
    ...     route = router.post("/chat/completions").respond(
    ...         json=openai_chat_completion_body("hello")
    ...     )

Raising transport errors from a route: raise ``httpcore2`` exceptions (``httpcore2.ConnectError``,
``httpcore2.ReadTimeout``) from a side effect, so ``httpx2`` maps them the way it maps real ones.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpcore2
import httpx
from respx.mocks import HTTPCoreMocker, Mocker

__all__ = ["HTTPCore2Mocker", "openai_chat_completion_body", "openai_error_body"]

_completion_ids = itertools.count(1)


class HTTPCore2Mocker(HTTPCoreMocker):
    """respx mocker for ``httpcore2``, registered as ``respx.mock(using="httpcore2")``.

    The targets are the public names of ``httpcore2``'s pool, connection and proxy classes
    (they are the very class objects defined in its private submodules, so patching a method
    through the public name patches it everywhere). Requests are converted by the inherited
    ``to_httpx_request`` (``httpcore2.Request`` has the same shape as ``httpcore.Request``);
    responses must be built as ``httpcore2.Response``, because ``httpx2`` asserts on the stream
    type it gets back.
    """

    name = "httpcore2"
    targets = [  # noqa: RUF012  (respx's Mocker declares targets as a mutable ClassVar list)
        "httpcore2.HTTPConnection",
        "httpcore2.ConnectionPool",
        "httpcore2.HTTPProxy",
        "httpcore2.AsyncHTTPConnection",
        "httpcore2.AsyncConnectionPool",
        "httpcore2.AsyncHTTPProxy",
    ]

    @classmethod
    def from_sync_httpx_response(
        cls, httpx_response: httpx.Response, target: Any, **kwargs: Any
    ) -> httpcore2.Response:
        """Create an ``httpcore2`` response from the route's ``httpx`` response."""
        # httpx.ByteStream is both Iterable and AsyncIterable, which is what httpx2's sync
        # and async transports each assert on.
        return httpcore2.Response(
            status=httpx_response.status_code,
            headers=httpx_response.headers.raw,
            content=httpx_response.stream,  # type: ignore[arg-type]
            extensions=httpx_response.extensions,
        )

    @classmethod
    async def from_async_httpx_response(
        cls, httpx_response: httpx.Response, target: Any, **kwargs: Any
    ) -> httpcore2.Response:
        """Async twin of :meth:`from_sync_httpx_response`."""
        return cls.from_sync_httpx_response(httpx_response, target, **kwargs)


assert Mocker.registry[HTTPCore2Mocker.name] is HTTPCore2Mocker


def openai_chat_completion_body(
    content: str,
    *,
    model: str = "gpt-4o-mini",
    prompt_tokens: int = 12,
    completion_tokens: int = 5,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """A realistic Chat Completions response body (``POST /v1/chat/completions``).

    Args:
        content: the assistant message text.
        model: the model name the server reports (LangChain copies it to ``model_name``).
        prompt_tokens: ``usage.prompt_tokens``.
        completion_tokens: ``usage.completion_tokens``.
        finish_reason: the choice's ``finish_reason``.

    Example:
        >>> openai_chat_completion_body("hi", prompt_tokens=3)["usage"]["prompt_tokens"]
        3
    """
    return {
        "id": f"chatcmpl-test{next(_completion_ids):06d}",
        "object": "chat.completion",
        "created": 1_735_689_600,
        "model": model,
        "system_fingerprint": "fp_test",
        "service_tier": "default",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
    }


def openai_error_body(
    message: str, *, type: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    """An OpenAI error response body (``{"error": {...}}``) for 4xx/5xx routes."""
    return {"error": {"message": message, "type": type, "param": None, "code": code}}
