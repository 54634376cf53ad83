"""What the simulator counts and charges: simulated token usage and made-up prices."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from langchain_core.messages import BaseMessage

SIMULATED_MODEL_PRICES: Final[Mapping[str, tuple[float, float]]] = {
    "simulated-small": (0.15, 0.60),
    "simulated-large": (2.50, 10.00),
}
"""Made-up prices (input, output) in USD per million tokens, for offline cost demos."""

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
