"""What the fanout tools share: the client they call, the output format, sync over async.

A tool holds one ``A2AClient``; every call of the tool draws from that client's shared
run, so the budget is the run's, not the call's. ``client_for`` builds the client from
what a factory was given (a client is used as it is). Sync ``invoke`` runs the async call
on a fresh loop, in a worker thread when a loop is already running.

Example:
    >>> client = client_for({"classifier": model}, limits=None, guards=None, options={})
    >>> DispatchTool(client=client).ledger is client.ledger
    True
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeAlias, TypeVar

from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field, model_validator

from langgraph_fanout.delegation.client import A2AClient
from langgraph_fanout.engine.agents import AgentLike
from langgraph_fanout.engine.options import GuardOptions, Guards
from langgraph_fanout.engine.registry import AgentRegistry
from langgraph_fanout.errors import ConfigurationError
from langgraph_fanout.guards.ledger import CostLedger
from langgraph_fanout.guards.limits import DispatchResourceLimits
from langgraph_fanout.tools.inputs import explain_validation_error

T = TypeVar("T")

Agents: TypeAlias = A2AClient | AgentRegistry | Mapping[str, AgentLike] | AgentLike
"""What a tool calls: a client (shares its budget), a registry, a mapping, or one agent."""

ToolOutput: TypeAlias = tuple[str, Any]


class FanoutTool(BaseTool):
    """What the three tools share: the client, the output format, sync over async."""

    default_name: ClassVar[str]
    client: A2AClient
    """Runs the calls; its shared run is the budget of every call of this tool."""
    max_content_chars: int = Field(default=4000, ge=200)
    """Most characters of the content string (the artifact always has everything)."""
    max_item_chars: int = Field(default=600, ge=40)
    """Most characters shown per output in the content string."""

    @model_validator(mode="before")
    @classmethod
    def _tool_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = {
            "response_format": "content_and_artifact",
            "handle_tool_error": True,
            "handle_validation_error": explain_validation_error,
            **data,
        }
        client = data.get("client")
        if isinstance(client, A2AClient):
            if not client.registry:
                raise ConfigurationError("the tool needs at least one registered agent")
            data.setdefault("name", cls.default_name)
            data.setdefault("description", cls._describe(client, data))
            data.setdefault("args_schema", cls._schema(client, data))
        return data

    @classmethod
    def _describe(cls, client: A2AClient, data: Mapping[str, Any]) -> str:
        raise NotImplementedError

    @classmethod
    def _schema(cls, client: A2AClient, data: Mapping[str, Any]) -> type[BaseModel]:
        raise NotImplementedError

    @property
    def ledger(self) -> CostLedger:
        """The budget of this tool's run."""
        return self.client.ledger

    def reset_budget(self) -> None:
        """Start a new run: a fresh budget and agent count for the next calls."""
        self.client.reset()

    def _run(
        self, *args: Any, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> ToolOutput:
        return _blocking(self._call(_child_config(run_manager), *args, **kwargs))

    async def _arun(
        self, *args: Any, run_manager: AsyncCallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> ToolOutput:
        return await self._call(_child_config(run_manager), *args, **kwargs)

    async def _call(self, config: RunnableConfig | None, *args: Any, **kwargs: Any) -> ToolOutput:
        """One call of the tool with its validated arguments."""
        raise NotImplementedError


def _blocking(call: Coroutine[Any, Any, T]) -> T:
    """Run a tool call from its sync ``invoke``.

    LangChain runs sync tools in worker threads with no loop: a fresh loop there is fine.
    A sync call made inside a running loop (a sync agent in a notebook) runs on a fresh
    loop in a worker thread instead of failing. The context goes along either way, so the
    engine still finds a dispatch the call is nested in.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(call)
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="langgraph-fanout-sync") as pool:
        return pool.submit(context.run, asyncio.run, call).result()


def _child_config(
    run_manager: CallbackManagerForToolRun | AsyncCallbackManagerForToolRun | None,
) -> RunnableConfig | None:
    # Only the callbacks (with their inherited tags and metadata) go down to sub-agents.
    # The agent's ``configurable`` does not: each sub-agent is a run of its own, and
    # several calls of one graph under the parent's checkpoint namespace would collide.
    if run_manager is None:
        return None
    return {"callbacks": run_manager.get_child()}


def client_for(
    agents: Agents,
    *,
    limits: DispatchResourceLimits | None,
    guards: Guards | None,
    options: GuardOptions,
) -> A2AClient:
    """The client a factory's tool calls: ``agents`` as it is when it is a client, else a
    new client over its registry.

    Raises:
        ConfigurationError: limits or guards passed together with a client.
    """
    if not isinstance(agents, A2AClient):
        registry = AgentRegistry.of(agents)
        return A2AClient(registry, limits=limits, guards=guards, **options)
    given = (["limits"] if limits is not None else []) + (["guards"] if guards else [])
    given += sorted(options)
    if given:
        raise ConfigurationError(f"configure the A2AClient instead of passing {given} with it")
    return agents
