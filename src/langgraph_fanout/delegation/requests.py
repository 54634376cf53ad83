"""Delegation values: one task for one named agent, its prompt, and how it ended.

``AgentDelegationRequest`` is what ``A2AClient.delegate`` takes and ``DelegationResult`` what
it returns. A request's prompt (context values are untrusted: screened for prompt injection,
never parsed as template fields; keys sorted so equal contexts give equal prompts and cache
keys)::

    <task>

    Context:
    - <key>: <value, as text or JSON>

Example:
    >>> request = AgentDelegationRequest(agent_id="researcher", task="Summarize",
    ...                                  context={"doc": text}, timeout=30)
    >>> request.render()
    'Summarize\\n\\nContext:\\n- doc: ...'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from langgraph_fanout.core.prompts import PromptTemplate
from langgraph_fanout.core.results import Attempt, SubAgentResult
from langgraph_fanout.core.text import as_text
from langgraph_fanout.engine.agents import SubAgent
from langgraph_fanout.engine.call import Task
from langgraph_fanout.errors import CallError


class AgentDelegationRequest(BaseModel):
    """One task for one named agent.

    Args:
        agent_id: the agent's name in the registry.
        task: what to do (the instruction; not screened).
        context: named inputs for the task (untrusted: screened, never parsed as fields).
        timeout: seconds each attempt may run (``max_agent_duration_s`` for this request).

    Example:
        >>> AgentDelegationRequest(agent_id="validator", task="validate",
        ...                        context={"item": item}, timeout=30).render()
        'validate\\n\\nContext:\\n- item: ...'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_id: str = Field(min_length=1)
    task: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @field_validator("context")
    @classmethod
    def _string_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in value if not isinstance(k, str) or not k.strip()]
        if bad:
            raise ValueError(f"context keys must be non-empty strings, got {bad!r}")
        return value

    def template(self) -> PromptTemplate:
        """The prompt as a template whose fields are the context keys (task kept verbatim)."""
        keys = sorted(self.context)
        if not keys:
            return PromptTemplate(self.task, (self.task,), ())
        literals = [f"{self.task}\n\nContext:\n- {keys[0]}: "]
        literals.extend(f"\n- {key}: " for key in keys[1:])
        literals.append("")
        # Built, not parsed: neither the task nor the keys are templates (braces stay text).
        return PromptTemplate(self.task, tuple(literals), tuple(keys))

    def arguments(self) -> dict[str, str]:
        """The context values as the text spliced into the prompt."""
        return {key: as_text(value, sort_keys=True) for key, value in self.context.items()}

    def render(self) -> str:
        """The prompt the agent receives."""
        return self.template().render(self.arguments())

    def to_task(self, agent: SubAgent, *, index: int = 0) -> Task:
        """This request as a pipeline ``Task`` for ``agent``."""
        template = self.template()
        arguments = self.arguments()
        return Task(
            index=index,
            agent=agent,
            prompt=template.render(arguments),
            arguments=arguments if arguments else None,
            template=template if arguments else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DelegationResult:
    """How one delegation ended.

    Attributes:
        agent_id: the agent the request was addressed to.
        output: the output (an ``AIMessage`` for a chat model), ``None`` on failure.
        success: whether there is an output.
        error: the typed error (``None`` on success).
        cost_usd: committed cost of every attempt.
        attempts: every attempt, retries and fallbacks included.
        agent_used: the agent that produced the output (a fallback's name after a fallback).
        duration_s: time spent calling.
        flags: screening flags (injection markers found in the context, redactions).
        result: the pipeline's full ``SubAgentResult``.
    """

    agent_id: str
    output: Any
    success: bool
    error: CallError | None
    cost_usd: float
    attempts: tuple[Attempt, ...]
    agent_used: str | None
    duration_s: float
    flags: tuple[str, ...]
    result: SubAgentResult

    @classmethod
    def from_result(cls, request: AgentDelegationRequest, result: SubAgentResult) -> Self:
        """Build it from the pipeline's result for ``request``."""
        return cls(
            agent_id=request.agent_id,
            output=result.output,
            success=result.ok,
            error=result.error,
            cost_usd=result.cost_usd,
            attempts=result.attempts,
            agent_used=result.agent_used,
            duration_s=result.duration_s,
            flags=result.flags,
            result=result,
        )

    @property
    def text(self) -> str:
        """The output as text ("" on failure)."""
        return as_text(self.output) if self.success else ""

    @property
    def errors(self) -> tuple[str, ...]:
        """The error kind of every failed attempt, in order."""
        return tuple(a.error for a in self.attempts if a.error is not None)

    @property
    def error_kind(self) -> str | None:
        return None if self.error is None else self.error.kind

    @property
    def fallback_used(self) -> bool:
        return self.result.fallback_used

    def __str__(self) -> str:
        return self.text if self.success else f"<failed: {self.error}>"
