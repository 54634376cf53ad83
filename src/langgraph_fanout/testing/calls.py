"""The simulated model's per-call bookkeeping: call state, sample index and seeded RNGs.

A call is identified by ``(seed, conversation, k)``: the conversation digest, and ``k``
the sample index when given, else how often this conversation was seen before. Every
random draw of a call comes from an RNG derived from that identity, so concurrent
scheduling never changes what a call answers.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult

SAMPLE_INDEX_KEY: Final = "sample_index"
"""Call kwarg or ``config["metadata"]`` key that marks a sample (voter) index."""


def _conversation_digest(messages: Sequence[BaseMessage]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for message in messages:
        h.update(f"{message.type}\x1f{message.text}\x1e".encode())
    return h.digest()


def _derived_rng(seed: int, purpose: str, k: int, digest: bytes) -> random.Random:
    material = f"{seed}\x1f{purpose}\x1f{k}\x1f".encode() + digest
    return random.Random(int.from_bytes(hashlib.blake2b(material, digest_size=8).digest()))


def _prompt_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text
    return messages[-1].text


class _CallState:
    """A model's mutable call state; a copied model starts afresh, like a new endpoint."""

    __slots__ = ("calls", "in_flight", "lock", "next_response", "peak_in_flight", "prompts", "seen")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.next_response = 0
        self.seen: dict[bytes | tuple[bytes, int], int] = {}
        self.prompts: list[str] = []

    def reset(self) -> None:
        with self.lock:
            self.calls = self.next_response = 0
            self.peak_in_flight = self.in_flight
            self.seen.clear()
            self.prompts.clear()

    def __copy__(self) -> _CallState:
        return _CallState()

    def __deepcopy__(self, memo: dict[int, Any]) -> _CallState:
        return _CallState()


@dataclass(frozen=True, slots=True)
class _Plan:
    delay_s: float
    error: BaseException | None
    result: ChatResult | None


def _outcome(plan: _Plan) -> ChatResult:
    if plan.error is not None:
        raise plan.error
    assert plan.result is not None
    return plan.result


def _sample_index(
    kwargs: Mapping[str, Any],
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
) -> int | None:
    value = kwargs.get(SAMPLE_INDEX_KEY)
    if value is None and run_manager is not None:
        value = run_manager.metadata.get(SAMPLE_INDEX_KEY)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
