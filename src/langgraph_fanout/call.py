"""The one call pipeline: every sub-agent call of the engine, the graphs and the tools.

::

    Task -> limits -> screen input -> cache -> recovery loop, per attempt:
                                                 budget reserve -> rate -> breaker -> slot
                                                 -> invoke (timeout, usage capture) -> settle
         -> redact output -> store -> SubAgentResult

Nothing else in the package calls a sub-agent. A ``CallPipeline`` is built per dispatch
from the shared run state; calling it with a ``Task`` returns that input's one result.
Cancellation is never swallowed here: reservations and slots are given back and the
``CancelledError`` goes on to the engine, which decides what the cancellation means.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig

from .agents import SubAgent
from .errors import AgentError, CallError, CallTimeout, InvalidItem
from .limits import Scope, SharedRun, SlotLease, enter_scope, exit_scope
from .results import Attempt, Status, SubAgentResult

__all__ = ["CallPipeline", "Task"]


@dataclass(slots=True, kw_only=True)
class Task:
    """One input of a dispatch: which agent, what prompt, which sample (read-only; not
    frozen only because it is built once per input on the hot path).

    Args:
        index: position of the input (results keep it).
        agent: the sub-agent to call.
        prompt: the rendered input (a string, messages, or whatever the agent takes).
        arguments: the untrusted arguments the prompt was rendered from (for screening).
        sample: sample index; distinct voters of one question have distinct samples.
        key: an optional user idempotency key.
        invalid: why this input cannot be called (it then ends as ``InvalidItem``).
    """

    index: int
    agent: SubAgent
    prompt: Any
    arguments: Mapping[str, Any] | None = None
    sample: int = 0
    key: str | None = None
    invalid: str | None = None


class CallPipeline:
    """Runs a ``Task`` through the guards and returns its ``SubAgentResult``."""

    __slots__ = ("_config", "_depth", "_run", "_timeout")

    def __init__(self, *, run: SharedRun, depth: int, config: RunnableConfig | None) -> None:
        self._run = run
        self._depth = depth
        self._config = config
        self._timeout = run.limits.max_agent_duration_s

    async def __call__(self, task: Task) -> SubAgentResult:
        loop = asyncio.get_running_loop()
        agent = task.agent
        if task.invalid is not None:
            return SubAgentResult.from_error(
                index=task.index,
                agent=agent.name,
                error=InvalidItem(index=task.index, reason=task.invalid),
                sample=task.sample,
            )
        started = loop.time()
        try:
            output = await self._attempt(task, agent)
        except CallError as error:
            ended = loop.time()
            return SubAgentResult.from_error(
                index=task.index,
                agent=agent.name,
                error=error,
                sample=task.sample,
                duration_s=ended - started,
                attempts=(
                    Attempt(
                        agent=agent.name, number=1, error=error.kind, duration_s=ended - started
                    ),
                ),
            )
        ended = loop.time()
        return SubAgentResult(
            index=task.index,
            agent=agent.name,
            status=Status.OK,
            output=output,
            duration_s=ended - started,
            attempts=(Attempt(agent=agent.name, number=1, duration_s=ended - started),),
            agent_used=agent.name,
            sample=task.sample,
        )

    async def _attempt(self, task: Task, agent: SubAgent) -> Any:
        """One attempt of one agent: count it, take a slot, invoke under the timeout."""
        run = self._run
        run.count_agent()
        lease = SlotLease(run.concurrency)
        await lease.acquire()
        token = enter_scope(Scope(run, self._depth, lease))
        try:
            if self._timeout is None:
                return await agent.ainvoke(task.prompt, self._config)
            try:
                async with asyncio.timeout(self._timeout) as cm:
                    return await agent.ainvoke(task.prompt, self._config)
            except TimeoutError:
                if cm.expired():
                    raise CallTimeout(agent=agent.name, timeout_s=self._timeout) from None
                raise
        except CallError:
            raise
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling() == 0:
                # Nobody cancelled this task: the agent leaked a cancellation of its own
                # (an inner future it awaited was cancelled). That is the agent's failure.
                raise _classify(exc, agent.name) from exc
            raise
        except Exception as exc:
            raise _classify(exc, agent.name) from exc
        finally:
            exit_scope(token)
            lease.release()


def _classify(exc: BaseException, agent: str) -> CallError:
    return AgentError(agent=agent, cause_type=type(exc).__name__, detail=str(exc)[:300])
