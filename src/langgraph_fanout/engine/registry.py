"""The agent registry: the names that delegations, fallbacks and tools refer to.

``AgentRegistry`` maps a name to a ``SubAgent`` (a chat model, Runnable, callable, or a
``RemoteAgent`` wrapped on registration); ``A2AClient`` and the tools resolve every agent
they call through it, and a recovery policy's ``fallback_tools`` are its names.

Example:
    >>> registry = AgentRegistry({"researcher": model}, descriptions={"researcher": "papers"})
    >>> registry.resolve("researcher").name
    'researcher'
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from langchain_core.runnables import Runnable, RunnableConfig

from langgraph_fanout.core.checks import check_mapping, check_text
from langgraph_fanout.engine.agents import AgentLike, SubAgent
from langgraph_fanout.errors import ConfigurationError


@runtime_checkable
class RemoteAgent(Protocol):
    """Extension point for agents that live elsewhere (an A2A server, an HTTP endpoint).

    Anything with a ``name`` and ``async ainvoke(prompt, config)`` can be registered and is
    guarded like a local agent. No network code ships here. Its cost is known only if the
    models it calls report usage through LangChain callbacks in this process (the pipeline
    has no hook yet for an agent that reports its own cost).
    """

    name: str

    async def ainvoke(self, input: str, config: RunnableConfig | None = None) -> Any: ...


class AgentRegistry(Mapping[str, SubAgent]):
    """Named agents that delegations, fallbacks and tools refer to.

    Args:
        agents: initial ``name -> agent`` (chat model, Runnable, callable, ``SubAgent`` or
            ``RemoteAgent``).
        descriptions: optional ``name -> what the agent is good at`` (shown by the tools).

    Raises:
        ConfigurationError: a name is empty, an agent cannot be wrapped, or a description
            names no agent.

    Example:
        >>> registry = AgentRegistry({"researcher": model})
        >>> registry.register("backup_agent", cheaper_model, description="fallback")
        >>> sorted(registry)
        ['backup_agent', 'researcher']
    """

    def __init__(
        self,
        agents: Mapping[str, AgentLike] | None = None,
        *,
        descriptions: Mapping[str, str] | None = None,
    ) -> None:
        self._agents: dict[str, SubAgent] = {}
        self._descriptions: dict[str, str] = {}
        self._lock = threading.Lock()
        check_mapping("AgentRegistry agents", agents, optional=True)
        check_mapping("AgentRegistry descriptions", descriptions, optional=True)
        descriptions = dict(descriptions or {})
        for name, agent in (agents or {}).items():
            self.register(name, agent, description=descriptions.pop(name, None))
        if descriptions:
            raise ConfigurationError(
                f"descriptions given for unknown agents: {sorted(descriptions)}"
            )

    @classmethod
    def of(cls, agents: AgentRegistry | Mapping[str, AgentLike] | AgentLike) -> AgentRegistry:
        """A registry as is, a mapping as a registry, or one agent under its own name."""
        if isinstance(agents, AgentRegistry):
            return agents
        if isinstance(agents, Mapping):
            return cls(agents)
        single = _as_sub_agent(agents, None)
        return cls({single.name: single})

    def register(
        self, name: str, agent: AgentLike, *, description: str | None = None, replace: bool = False
    ) -> SubAgent:
        """Add ``agent`` under ``name`` and return it as a ``SubAgent``.

        Raises:
            ConfigurationError: the name is empty or taken (without ``replace``), or the
                agent cannot be wrapped.
        """
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError(f"an agent name must be a non-empty str, got {name!r}")
        check_text(f"the description of agent {name!r}", description, optional=True, empty=True)
        sub = _as_sub_agent(agent, name)
        with self._lock:
            if name in self._agents and not replace:
                raise ConfigurationError(
                    f"agent {name!r} is already registered; pass replace=True to replace it"
                )
            self._agents[name] = sub
            if description:
                self._descriptions[name] = description
            else:
                self._descriptions.pop(name, None)
        return sub

    def description(self, name: str) -> str | None:
        """What ``name`` is good at, if it was said."""
        return self._descriptions.get(name)

    def resolve(self, name: str) -> SubAgent:
        """The agent called ``name``.

        Raises:
            ConfigurationError: no agent has that name (the message lists the known ones).
        """
        try:
            return self._agents[name]
        except KeyError:
            known = sorted(self._agents) or "none"
            raise ConfigurationError(f"unknown agent {name!r} (known: {known})") from None

    def __getitem__(self, name: str) -> SubAgent:
        return self._agents[name]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._agents))

    def __len__(self) -> int:
        return len(self._agents)

    def __repr__(self) -> str:
        return f"AgentRegistry({sorted(self._agents)})"


def _as_sub_agent(agent: AgentLike, name: str | None) -> SubAgent:
    local = isinstance(agent, SubAgent | Runnable) or callable(agent)
    if not local and isinstance(agent, RemoteAgent):
        remote = agent

        async def call_remote(prompt: Any, config: RunnableConfig) -> Any:
            return await remote.ainvoke(prompt, config)

        return SubAgent.of(call_remote, name=name or remote.name)
    return SubAgent.of(agent, name=name)
