"""An OpenAI-compatible HTTP server on 127.0.0.1 for tests: real sockets, real HTTP/1.1.

``ChatOpenAI`` (and the ``openai`` SDK under it) talks to it exactly as to a provider, so
what is tested is the whole path: the SDK's request, its error classes built from a real
response, the headers it exposes, our classification and recovery. The server answers
``POST /v1/chat/completions``; ``admit`` decides each request (``None`` answers it, an
``(status, headers)`` pair refuses it), and ``latency_s`` is awaited before an answer.

Example:
    >>> async with ProviderServer(admit=admission_control(5)) as server:
    ...     model = ChatOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from types import TracebackType
from typing import Any

from httpmock import openai_chat_completion_body, openai_error_body

Decision = tuple[int, dict[str, str]] | None


class ProviderServer:
    """The server; ``requests``, ``answered`` and ``refused`` count what it saw.

    Like a provider, it bills what it received: every admitted request its
    ``prompt_tokens``, every answer it finished its ``completion_tokens``, whether or not
    the client was still there to read it (``invoice``).
    """

    def __init__(
        self,
        *,
        admit: Callable[[ProviderServer], Decision] = lambda server: None,
        latency_s: float | Callable[[], float] = 0.05,
        prompt_tokens: int = 12,
        completion_tokens: int = 5,
        content: str | None = None,
    ) -> None:
        self.admit = admit
        self.content = content
        self.latency_s = latency_s
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.in_flight = 0
        self.requests = 0
        self.answered = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/v1"

    async def __aenter__(self) -> ProviderServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        # No connection task outlives the server: close them and wait for their handlers.
        for writer in self._connections.values():
            writer.close()
        if self._connections:
            await asyncio.wait(list(self._connections))
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._connections[me] = writer
        try:
            while True:  # keep-alive: one request after another on this connection
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, body = await self._answer()
                payload = json.dumps(body).encode()
                reply = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}"]
                reply += [f"{k}: {v}" for k, v in extra.items()]
                reply += [
                    "content-type: application/json",
                    f"content-length: {len(payload)}",
                    "connection: keep-alive",
                ]
                writer.write(("\r\n".join(reply) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client (or our own __aexit__) closed the connection
        finally:
            self._connections.pop(me, None)
            writer.close()

    async def _answer(self) -> tuple[int, dict[str, str], dict[str, Any]]:
        self.requests += 1
        refusal = self.admit(self)
        if refusal is not None:
            self.refused += 1
            status, headers = refusal
            return status, headers, openai_error_body("refused (simulated)", type="overloaded")
        self.in_flight += 1
        try:
            latency = self.latency_s() if callable(self.latency_s) else self.latency_s
            await asyncio.sleep(latency)
        finally:
            self.in_flight -= 1
        self.answered += 1
        return (
            200,
            {},
            openai_chat_completion_body(
                self.content or f"answer {self.answered}",
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
            ),
        )

    def invoice(self, *, input_per_mtok: float, output_per_mtok: float) -> float:
        """What the provider bills: the input of every admitted request, the output of
        every answer it finished."""
        admitted = self.requests - self.refused
        return (
            admitted * self.prompt_tokens * input_per_mtok
            + self.answered * self.completion_tokens * output_per_mtok
        ) / 1e6


def admission_control(
    limit: int, *, retry_after: str = "1"
) -> Callable[[ProviderServer], Decision]:
    """Refuse with 503 and ``retry-after`` whatever arrives while ``limit`` are in flight
    (as LiteLLM's proxy does in front of a busy deployment)."""

    def admit(server: ProviderServer) -> Decision:
        if server.in_flight >= limit:
            return 503, {"retry-after": retry_after}
        return None

    return admit
