"""Scripted agents: async agents with scripted outputs and failures, for engine tests."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langgraph_fanout.errors import ConfigurationError
from langgraph_fanout.testing.failures import (
    FailureSpec,
    ScriptExhaustedError,
    _check_failure_spec,
    _make_failure,
)


class ScriptedAgent:
    """A scripted async agent for engine tests that need no chat model.

    Build one with ``scripted_agent``; call it with ``await agent(input)``.
    """

    def __init__(
        self,
        outputs: Sequence[Any] | Callable[[Any], Any],
        *,
        latency_s: float,
        failures: Sequence[FailureSpec],
        cycle: bool,
        sleep: Callable[[float], Awaitable[None]],
        name: str,
    ) -> None:
        if isinstance(outputs, str) or (not callable(outputs) and len(outputs) == 0):
            raise ConfigurationError("outputs must be a non-empty list or a callable")
        if latency_s < 0:
            raise ConfigurationError(f"latency_s must be >= 0, got {latency_s}")
        for spec in failures:
            _check_failure_spec(spec)
        self.__name__ = name
        self._outputs = outputs
        self._latency_s = latency_s
        self._failures = tuple(failures)
        self._cycle = cycle
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_output = 0
        self.calls = 0
        """How many times the agent was called (failed calls included)."""
        self.inputs: list[Any] = []
        """Every input received, in arrival order."""

    def __repr__(self) -> str:
        return f"ScriptedAgent(name={self.__name__!r}, calls={self.calls})"

    async def __call__(self, input: Any) -> Any:
        """Sleep ``latency_s``, then raise the scripted failure or return the next output."""
        with self._lock:
            index = self.calls
            self.calls += 1
            self.inputs.append(input)
            failure = _make_failure(self._failures[index] if index < len(self._failures) else None)
            output: Any = None
            if failure is None and not callable(self._outputs):
                position = self._next_output
                if position >= len(self._outputs) and not self._cycle:
                    raise ScriptExhaustedError("outputs", len(self._outputs))
                output = self._outputs[position % len(self._outputs)]
                self._next_output += 1
        await self._sleep(self._latency_s)
        if failure is not None:
            raise failure
        if callable(self._outputs):
            output = self._outputs(input)
            if inspect.isawaitable(output):
                output = await output
        if isinstance(output, BaseException):
            raise output
        return output


def scripted_agent(
    outputs: Sequence[Any] | Callable[[Any], Any],
    *,
    latency_s: float = 0.0,
    failures: Sequence[FailureSpec] = (),
    cycle: bool = False,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    name: str = "scripted_agent",
) -> ScriptedAgent:
    """An async agent whose outputs and failures are scripted (a simulator, no model).

    Args:
        outputs: outputs in call order (an exception item is raised), or ``fn(input)``
            (sync or async) computing the output, which keeps results independent of order.
        latency_s: seconds awaited through ``sleep`` on every call.
        failures: failures by call index, like ``SimulatedChatModel.failures``; a failed
            call consumes no output.
        cycle: repeat ``outputs`` when used up instead of raising ``ScriptExhaustedError``.
        sleep: the async sleep to await (inject a fake clock here).
        name: the agent's ``__name__``.

    Example:
        >>> agent = scripted_agent(str.upper, failures=["rate_limit"])
        >>> await agent("hi")  # raises openai.RateLimitError
        >>> await agent("hi")
        'HI'
    """
    return ScriptedAgent(
        outputs, latency_s=latency_s, failures=failures, cycle=cycle, sleep=sleep, name=name
    )
