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
    """The server; ``requests``, ``answered`` and ``refused`` count what it saw."""

    def __init__(
        self, *, admit: Callable[[ProviderServer], Decision], latency_s: float = 0.05
    ) -> None:
        self.admit = admit
        self.latency_s = latency_s
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
            await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        self.answered += 1
        return 200, {}, openai_chat_completion_body(f"answer {self.answered}")


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
