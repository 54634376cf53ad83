"""The cost estimator: the worst case of one attempt, for the budget and for the plan.

The call pipeline reserves ``worst_case(agent, prompt)`` before each attempt, and
``plan_dispatch`` adds up the same numbers without calling anything, so the plan's worst
case is exactly what the engine would reserve. The worst case is the prompt's tokens as
providers bill a chat request (tiktoken, ``TokenCounter.count_messages``) plus the agent's
``max_output_tokens`` (or ``default_max_output_tokens``), priced with the agent's own
price, the user's ``prices`` or the genai-prices table.

Where the provider has billed more prompt tokens than we counted (hidden system tokens,
another tokenizer), ``learn`` remembers the worst excess and ratio per model, and later
worst cases of the same run cover them.

Example:
    >>> estimator = CostEstimator(default_max_output_tokens=1024)
    >>> estimator.worst_case(SubAgent.of(model), "Classify: a receipt").usd
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage

from langgraph_fanout.engine.agents import SubAgent
from langgraph_fanout.guards.pricing import Price, lookup_price
from langgraph_fanout.guards.tokens import TokenCounter, default_counter

_RATIO_MIN_TOKENS = 256  # prompts shorter than this teach a fixed excess, not a ratio


@dataclass(slots=True)
class WorstCase:
    """The worst case of one attempt: tokens in and out, and their price (0 unpriced).
    Read-only (built per attempt on the hot path, so not a frozen dataclass)."""

    usd: float
    input_tokens: int
    output_tokens: int
    price: Price | None
    counted: int = 0  # tokens the counter found in the prompt, before what was learned

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def input_usd(self) -> float:
        """What the prompt alone costs: a call cut off in flight is billed at least that
        (computed only when asked, which is rare)."""
        return 0.0 if self.price is None else self.price.cost(self.input_tokens, 0)


class CostEstimator:
    """Prices and counts attempts the same way for the budget and for the plan.

    Args:
        default_max_output_tokens: the output assumed for an agent that states none.
        prices: model id -> ``Price`` overrides.
        counter: the token counter (the process's default one when ``None``).
        learned: where what the provider billed beyond our count is kept (a run's
            ``SharedRun.input_ratio``, shared by its nested dispatches); ``None``: nothing
            is learned (a plan).
    """

    __slots__ = ("_counter", "_default_out", "_learned", "_priced", "_prices")

    def __init__(
        self,
        *,
        default_max_output_tokens: int,
        prices: Mapping[str, Price] | None = None,
        counter: TokenCounter | None = None,
        learned: dict[tuple[str | None, str], float] | None = None,
    ) -> None:
        self._default_out = default_max_output_tokens
        self._prices = prices
        self._counter = counter if counter is not None else default_counter()
        self._learned = learned
        self._priced: dict[int, tuple[SubAgent, Price | None]] = {}

    def price(self, agent: SubAgent) -> Price | None:
        """The agent's price: its own, an override, or the price table's (``None``)."""
        held = self._priced.get(id(agent))
        if held is not None and held[0] is agent:  # the same agent, not a reused id
            return held[1]
        price = agent.price or lookup_price(
            agent.model, provider=agent.provider, overrides=self._prices
        )
        if len(self._priced) >= 1024:  # a stream of new agents: stay bounded
            self._priced.clear()
        self._priced[id(agent)] = (agent, price)
        return price

    def price_of_model(self, model: str | None) -> Price | None:
        """The price of a model an agent called (found in its usage)."""
        return lookup_price(model, overrides=self._prices)

    def max_output(self, agent: SubAgent) -> int:
        """The output assumed per model call: declared (or the default), raised to the most
        a call of this model was seen to return in this run (a server ignoring max_tokens)."""
        declared = agent.max_output_tokens or self._default_out
        learned = self._learned
        if learned:
            return max(declared, int(learned.get((agent.model, "output"), 0)))
        return declared

    def prompt_tokens(self, agent: SubAgent, prompt: Any) -> int:
        """Prompt tokens of ``prompt`` as the provider of ``agent`` bills them (counted)."""
        return self._counter.count_messages(countable(prompt), agent.model)

    def worst_case(self, agent: SubAgent, prompt: Any) -> WorstCase:
        """Every output token used, no prompt-cache discount, what was learned covered; an
        agent declaring ``max_model_calls`` that many model calls, each with the prompt;
        ``cost_per_call_usd`` when the agent states it."""
        counted = raw = self.prompt_tokens(agent, prompt)
        out = self.max_output(agent)
        learned = self._learned
        if learned:
            ratio = learned.get((agent.model, "ratio"), 1.0)
            excess = learned.get((agent.model, "excess"), 0.0)
            counted = max(math.ceil(counted * ratio), counted + math.ceil(excess))
        calls = agent.max_model_calls or 1
        price = self.price(agent)
        usd = 0.0 if price is None else price.cost(counted, out) * calls
        if agent.cost_per_call_usd is not None:
            usd = agent.cost_per_call_usd
        return WorstCase(usd, counted * calls, out * calls, price, raw)

    def learn_output(self, agent: SubAgent, reported: int) -> bool:
        """Remember a model call that returned more output than assumed; whether it did."""
        seen = self._learned
        if seen is None or reported <= self.max_output(agent):
            return False
        seen[(agent.model, "output")] = float(reported)
        return True

    def learn(
        self, agent: SubAgent, prompt: Any, reported: int, counted: int | None = None
    ) -> None:
        """Remember how much the provider's prompt count exceeds ours for this model
        (``counted``: our count of ``prompt``, when the caller has it already)."""
        seen = self._learned
        if seen is None:
            return
        if counted is None:
            counted = self.prompt_tokens(agent, prompt)
        if not counted or reported <= counted:
            return
        excess_key, ratio_key = (agent.model, "excess"), (agent.model, "ratio")
        seen[excess_key] = max(seen.get(excess_key, 0.0), float(reported - counted))
        if counted >= _RATIO_MIN_TOKENS:  # short prompts are mostly fixed overhead
            seen[ratio_key] = max(seen.get(ratio_key, 1.0), reported / counted)


def countable(prompt: Any) -> str | Sequence[BaseMessage]:
    """What a prompt is counted as: text, messages, or anything else as its JSON."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence) and all(isinstance(m, BaseMessage) for m in prompt):
        return list(prompt)
    try:
        return json.dumps(prompt, default=str, ensure_ascii=False)
    except Exception:  # circular, or a value whose str() raises (an int past 4300 digits)
        pass
    try:
        return str(prompt)
    except Exception:
        # Nothing to count: an agent that can take this is a function (priced per call).
        return f"<{type(prompt).__name__}>"
