"""One way to turn a value into prompt text, used by every surface.

A string is itself; a message (or anything with a ``text`` property, such as a
``DelegationResult``) is its text; a ``SubAgentResult`` is its output's text; anything else
is JSON, with messages inside it turned into their text, pydantic models and dataclasses
into their fields, and ``str`` for what JSON cannot hold.

Example:
    >>> as_text({"geo": AIMessage("paris"), "n": 1})
    '{"geo": "paris", "n": 1}'
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from langgraph_fanout.core.results import SubAgentResult


def as_text(value: Any, *, sort_keys: bool = False) -> str:
    """``value`` as prompt text (see the module docstring); ``sort_keys`` orders JSON keys
    so that equal values give equal text (cache keys, prompts built from context)."""
    if isinstance(value, str):
        return value
    if isinstance(value, SubAgentResult):
        return as_text(value.output, sort_keys=sort_keys)
    text = _text_property(value)
    if text is not None:
        return text
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=sort_keys, default=_json_default)
    except (TypeError, ValueError):
        return str(value)


def _text_property(value: Any) -> str | None:
    if isinstance(value, BaseMessage):
        return value.text
    if isinstance(getattr(type(value), "text", None), property):
        text = value.text
        return text if isinstance(text, str) else None
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, SubAgentResult):
        return _json_default(value.output) if value.output is not None else None
    text = _text_property(value)
    if text is not None:
        return text
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)
