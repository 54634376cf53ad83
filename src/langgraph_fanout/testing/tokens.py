"""What the simulator counts and charges: simulated token usage and made-up prices."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from langchain_core.messages import BaseMessage

from langgraph_fanout.guards.pricing import SIMULATED_PRICES

SIMULATED_MODEL_PRICES: Final[Mapping[str, tuple[float, float]]] = {
    name: (price.input_per_mtok, price.output_per_mtok) for name, price in SIMULATED_PRICES.items()
}
"""Made-up prices (input, output) in USD per million tokens of the simulated models. They are
in the engine's price table (``lookup_price``), so a budget needs no ``prices=`` for them."""

_TOKENS_PER_MESSAGE: Final = 4
_TOKENS_PER_REPLY: Final = 3


def count_simulated_tokens(text: str) -> int:
    """The simulator's token count of ``text``: one token per 4 characters, rounded up.

    This is a cheap stand-in for a tokenizer, not a real count.
    """
    return -(-len(text) // 4)


def _tool_calls_tokens(message: BaseMessage) -> int:
    calls = getattr(message, "tool_calls", None) or []
    return sum(
        count_simulated_tokens(call["name"] + json.dumps(call["args"], sort_keys=True))
        for call in calls
    )


def _input_tokens(messages: Sequence[BaseMessage], tools: Sequence[Any] | None) -> int:
    total = _TOKENS_PER_REPLY
    for message in messages:
        total += _TOKENS_PER_MESSAGE + count_simulated_tokens(message.text)
        total += _tool_calls_tokens(message)
    if tools:
        total += count_simulated_tokens(json.dumps(list(tools), sort_keys=True, default=str))
    return total
