"""The httpcore2 respx mocker: real ``ChatOpenAI`` (openai>=3) against mocked HTTP."""

from __future__ import annotations

import json

import httpcore2
import openai
import pytest
import respx
from langchain_openai import ChatOpenAI
from respx.mocks import Mocker
from respx.models import AllMockedAssertionError

from httpmock import HTTPCore2Mocker, openai_chat_completion_body, openai_error_body

BASE_URL = "https://api.openai.com/v1"


def _model() -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", max_retries=0)


def test_mocker_is_registered_under_httpcore2() -> None:
    assert Mocker.registry["httpcore2"] is HTTPCore2Mocker


def test_sync_invoke_returns_content_and_exact_usage() -> None:
    body = openai_chat_completion_body("hello there", prompt_tokens=17, completion_tokens=4)
    with respx.mock(using="httpcore2", base_url=BASE_URL) as router:
        route = router.post("/chat/completions").respond(json=body)
        message = _model().invoke("hi")
    assert route.call_count == 1
    assert json.loads(route.calls.last.request.content)["model"] == "gpt-4o-mini"
    assert message.content == "hello there"
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == 17
    assert message.usage_metadata["output_tokens"] == 4
    assert message.usage_metadata["total_tokens"] == 21
    assert message.response_metadata["model_name"] == "gpt-4o-mini"


async def test_async_invoke_returns_content_and_exact_usage() -> None:
    body = openai_chat_completion_body("async hello", prompt_tokens=9, completion_tokens=2)
    with respx.mock(using="httpcore2", base_url=BASE_URL) as router:
        route = router.post("/chat/completions").respond(json=body)
        message = await _model().ainvoke("hi")
    assert route.call_count == 1
    assert message.content == "async hello"
    assert message.usage_metadata is not None
    assert (message.usage_metadata["input_tokens"], message.usage_metadata["output_tokens"]) == (
        9,
        2,
    )


async def test_error_status_and_headers_reach_the_sdk() -> None:
    with respx.mock(using="httpcore2", base_url=BASE_URL) as router:
        router.post("/chat/completions").respond(
            429, json=openai_error_body("slow down", type="requests"), headers={"Retry-After": "3"}
        )
        with pytest.raises(openai.RateLimitError) as caught:
            await _model().ainvoke("hi")
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "3"


async def test_transport_errors_raised_as_httpcore2_exceptions() -> None:
    def refuse(request: object) -> None:
        raise httpcore2.ConnectError("connection refused")

    with respx.mock(using="httpcore2", base_url=BASE_URL) as router:
        router.post("/chat/completions").mock(side_effect=refuse)
        with pytest.raises(openai.APIConnectionError):
            await _model().ainvoke("hi")


def test_unmatched_request_fails_loudly_instead_of_reaching_the_network() -> None:
    with respx.mock(using="httpcore2", base_url=BASE_URL, assert_all_called=False) as router:
        router.get("/models")
        with pytest.raises(AllMockedAssertionError, match="not mocked"):
            _model().invoke("hi")
