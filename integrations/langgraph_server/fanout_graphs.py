"""Ready langgraph-fanout graphs for LangGraph Server (``langgraph dev``, Platform, self-hosted).

Each graph here is a graph factory: the server calls it with the run's config, so a
client picks the model, limits and policy per run, with ``config={"configurable": {...}}``
or ``context={...}`` (the server copies context into ``configurable``), or presets them
on an assistant. ``RunSettings`` lists the keys; other keys are ignored. What a whole
worker process shares comes from its environment instead: ``FANOUT_REQUESTS_PER_SECOND``
and ``FANOUT_TOKENS_PER_MINUTE`` (one rate limiter per model for every run of the
process) and ``FANOUT_CACHE`` (``memory``, or a SQLite file for the idempotency cache).

Graphs: ``fan_out`` (one call per item, then aggregated), ``vote`` (``n_voters`` samples
per item, one majority vote per item) and ``tree`` (split a text's lines or a list in
halves, solve the leaves, combine upwards).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.cache.sqlite import SqliteCache
from langgraph.graph import StateGraph
from pydantic import BaseModel, ConfigDict, Field

from langgraph_fanout import (
    DispatchResourceLimits,
    ErrorRecoveryPolicy,
    IdempotencyCache,
    Price,
    RateLimiter,
    SubAgentResult,
    Vote,
    create_fan_out_graph,
    create_tree_graph,
    majority_vote,
    shared_limiter,
)
from langgraph_fanout.testing import SIMULATED_MODEL_PRICES, SimulatedChatModel

__all__ = ["RunSettings", "fan_out", "split_in_halves", "tree", "vote"]

Graph = StateGraph[Any, Any, Any, Any]

SIMULATED = {
    "simulated": "simulated-small",
    "simulated-small": "simulated-small",
    "simulated-large": "simulated-large",
}

PRICES = {
    name: Price(input_per_mtok=inp, output_per_mtok=out)
    for name, (inp, out) in SIMULATED_MODEL_PRICES.items()
}


class RunSettings(BaseModel):
    """What a client chooses per run (``configurable`` or ``context`` keys)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str = "simulated"
    """``simulated`` / ``simulated-large`` (offline, made-up prices) or ``provider:model``."""
    temperature: float | None = Field(default=None, ge=0)
    max_output_tokens: int | None = Field(default=None, ge=1, le=10**12)
    template: str | None = None
    """Prompt with ``{field}``s; each item is then a mapping of them (fan_out, vote)."""
    aggregate: str = "model"
    """fan_out: ``model`` (one more call combines the results), ``none``, or an
    aggregator name such as ``collect_all`` or ``majority_vote:category``."""
    n_voters: int = Field(default=5, ge=1, le=100)
    max_depth: int = Field(default=2, ge=0, le=8)
    combine: Literal["model", "join"] = "model"
    """tree: a model call combines the parts' answers, or they are joined by lines."""
    max_cost_usd: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    max_concurrent: int | None = Field(default=10, ge=1, le=10**12)
    timeout_s: float | None = Field(default=None, gt=0, le=1e9, allow_inf_nan=False)
    deadline_s: float | None = Field(default=None, gt=0, le=1e9, allow_inf_nan=False)
    max_retries: int = Field(default=2, ge=0, le=10)
    choices: list[str] | None = Field(default=None, min_length=1)
    """Simulated model only: answers drawn from these (per voter); else it echoes."""
    seed: int = 0
    latency_s: float = Field(default=0.0, ge=0, le=60)
    """Simulated model only: latency of each call."""

    @classmethod
    def of(cls, config: RunnableConfig) -> RunSettings:
        """The settings in ``config["configurable"]``."""
        return cls.model_validate(config.get("configurable") or {})

    def chat_model(self) -> BaseChatModel:
        """The model of this run; retries are left to our policy."""
        if self.model in SIMULATED:
            return SimulatedChatModel(
                model=SIMULATED[self.model],
                choices=self.choices,
                seed=self.seed,
                latency_s=self.latency_s,
                max_tokens=self.max_output_tokens or 256,
            )
        from langchain.chat_models import init_chat_model  # only real providers need it

        options: dict[str, Any] = {"max_retries": 0}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.max_output_tokens is not None:
            options["max_tokens"] = self.max_output_tokens
        model: BaseChatModel = init_chat_model(self.model, **options)
        return model

    def guards(self) -> dict[str, Any]:
        """Limits, policy and the process-wide guards, as graph factory keywords."""
        options: dict[str, Any] = {
            "limits": DispatchResourceLimits(
                max_total_cost_usd=self.max_cost_usd,
                max_concurrent=self.max_concurrent,
                max_agent_duration_s=self.timeout_s,
                max_total_duration_s=self.deadline_s,
            ),
            "policy": ErrorRecoveryPolicy(max_retries=self.max_retries),
            "prices": PRICES,
        }
        limiter = _rate_limiter(self.model)
        if limiter is not None:
            options["rate_limiter"] = limiter
        cache = _cache(os.environ.get("FANOUT_CACHE", ""))
        if cache is not None:
            options["cache"] = cache
        return options


def _rate_limiter(model: str) -> RateLimiter | None:
    rps = os.environ.get("FANOUT_REQUESTS_PER_SECOND")
    tpm = os.environ.get("FANOUT_TOKENS_PER_MINUTE")
    if not (rps or tpm):
        return None
    return shared_limiter(
        f"langgraph-server:{model}",
        requests_per_second=float(rps) if rps else None,
        tokens_per_minute=float(tpm) if tpm else None,
    )


@functools.cache
def _cache(spec: str) -> IdempotencyCache | None:
    if not spec:
        return None
    return IdempotencyCache(None if spec == "memory" else SqliteCache(path=spec))


# Agents keep their model's name (no role names): circuit breakers are per agent name and
# per process, so one model's breaker must not trip runs that chose another model.
def fan_out(config: RunnableConfig) -> Graph:
    """One call per item of ``{"items": [...]}``, in parallel, then aggregated."""
    settings = RunSettings.of(config)
    model = settings.chat_model()
    aggregate: Any = settings.aggregate
    if aggregate == "model":
        aggregate = model
    elif aggregate == "none":
        aggregate = None
    return create_fan_out_graph(
        model, template=settings.template, aggregate=aggregate, name="fan_out", **settings.guards()
    )


def vote(config: RunnableConfig) -> Graph:
    """``n_voters`` distinct samples per item; ``aggregate`` is one ``Vote`` per item."""
    settings = RunSettings.of(config)
    return create_fan_out_graph(
        settings.chat_model(),
        template=settings.template,
        samples=settings.n_voters,
        aggregate=_vote_per_item(settings.n_voters),
        name="vote",
        **settings.guards(),
    )


def _vote_per_item(voters: int) -> Callable[[Sequence[SubAgentResult]], list[Vote]]:
    count = majority_vote()

    def votes(results: Sequence[SubAgentResult]) -> list[Vote]:
        # Sample s of item i has index i * voters + s (create_fan_out_graph's layout).
        items: dict[int, list[SubAgentResult]] = {}
        for result in results:
            items.setdefault(result.index // voters, []).append(result)
        return [count(items[i]) for i in sorted(items)]

    return votes


def tree(config: RunnableConfig) -> Graph:
    """Divide and conquer ``{"task": text or list}``: halves down to ``max_depth``."""
    settings = RunSettings.of(config)
    model = settings.chat_model()
    return create_tree_graph(
        model,
        split=split_in_halves,
        combine=model if settings.combine == "model" else _join,
        max_depth=settings.max_depth,
        name="tree",
        **settings.guards(),
    )


def split_in_halves(task: Any) -> list[Any] | None:
    """A list's halves, or a text's non-empty lines in halves; ``None`` (a leaf) below two."""
    parts = task if isinstance(task, list) else [s for s in str(task).splitlines() if s.strip()]
    if len(parts) < 2:
        return None
    mid = len(parts) // 2
    halves = [parts[:mid], parts[mid:]]
    if isinstance(task, list):
        return [h[0] if len(h) == 1 else h for h in halves]
    return ["\n".join(h) for h in halves]


def _join(task: Any, outputs: list[Any]) -> str:
    return "\n".join(o.text if isinstance(o, BaseMessage) else str(o) for o in outputs)
