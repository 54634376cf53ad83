"""Reading a field out of an output of any shape, and normalising answers for votes.

``extract`` reads str, dict, pydantic model, dataclass, LangChain message (its structured
output or JSON text) and plain objects, by a dotted path or a function. A key that one
output lacks never crashes an aggregation: that output abstains.

Example:
    >>> extract(AIMessage('{"category": "food"}'), "category")
    'food'
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import numbers
import unicodedata
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Any, Final, TypeAlias

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel

from langgraph_fanout.core.checks import check_flag, shown
from langgraph_fanout.core.results import SubAgentResult
from langgraph_fanout.core.text import as_text
from langgraph_fanout.errors import ConfigurationError, KeyNotFound

Key: TypeAlias = str | Callable[[Any], Any] | None
"""What to read from an output: ``None`` (the output itself), a dotted path, or a function."""


def check_options(owner: object) -> None:
    """Raise ``ConfigurationError`` for a bad option of an aggregator: a ``key`` that is
    neither a dotted path, a function nor ``None``; a ``score`` or ``normalize`` that is not
    a function; a ``reverse`` or ``include_errors`` that is not a bool."""
    kind = type(owner).__name__
    key = getattr(owner, "key", None)
    if key is not None and not callable(key) and not (isinstance(key, str) and key):
        raise ConfigurationError(
            f"{kind} key must be a dotted path, a function or None, got {shown(key)}"
        )
    for name in ("score", "normalize"):
        value = getattr(owner, name, None)
        if value is not None and not callable(value):
            raise ConfigurationError(
                f"{kind} {name} must be a function or None, got {shown(value)}"
            )
    for name in ("reverse", "include_errors"):
        if hasattr(owner, name):
            check_flag(f"{kind} {name}", getattr(owner, name))


class _Sentinel(Enum):
    MISSING = "missing"
    RAISE = "raise"


_MISSING: Final = _Sentinel.MISSING
_RAISE: Final = _Sentinel.RAISE
_TRAILING_PUNCTUATION: Final = ".,;:!?。"
_WRAPPERS: Final = "\"'`*"


def extract(output: Any, key: Key = None, *, default: Any = _RAISE) -> Any:
    """Read the value under ``key`` from an output of any shape.

    ``key=None`` gives the output itself, except a LangChain message, which gives its text
    (text content blocks joined). A dotted path ``"a.b.0"`` walks mappings (a literal key
    ``"a.b"`` is tried first), sequences (integer steps), attributes of pydantic models,
    dataclasses and other objects, and JSON-object strings (code fences allowed). On a
    message it looks in the structured output: the content parsed as a JSON object, then
    ``additional_kwargs["parsed"]``, then ``tool_calls[0]["args"]``, then the message's own
    attributes (``usage_metadata.total_tokens``). A key function that raises
    ``LookupError``, ``AttributeError`` or ``TypeError`` counts as "not found".

    Args:
        output: what a sub-agent returned.
        key: ``None``, a dotted path, or a function of the output.
        default: returned when the key is not found; without it, ``KeyNotFound`` is raised.

    Raises:
        KeyNotFound: the key is not in the output and no default was given.
        ConfigurationError: ``key`` is an empty string or not a str/callable/None.

    Example:
        >>> extract({"verdict": {"label": "spam"}}, "verdict.label")
        'spam'
    """
    if key is None:
        return as_text(output) if isinstance(output, BaseMessage) else output
    if isinstance(key, str):
        if not key:
            raise ConfigurationError("key must be a non-empty dotted path, a function or None")
        value = _lookup(output, key)
    elif callable(key):
        try:
            value = key(output)
        except (LookupError, AttributeError, TypeError):
            value = _MISSING
    else:
        raise ConfigurationError(f"key must be a str, a function or None, got {key!r}")
    if value is not _MISSING:
        return value
    if default is not _RAISE:
        return default
    available = tuple(map(str, output)) if isinstance(output, Mapping) else ()
    raise KeyNotFound(key=key_name(key), output_type=type(output).__name__, available=available)


def key_name(key: Key) -> str:
    """How ``key`` is shown in messages and reports (a function shows its name)."""
    if key is None or isinstance(key, str):
        return str(key)
    return getattr(key, "__qualname__", None) or repr(key)


def _lookup(output: Any, key: str) -> Any:
    if isinstance(output, Mapping) and key in output:
        return output[key]
    return _walk(output, key.split("."))


def _walk(value: Any, path: Sequence[str]) -> Any:
    for position, part in enumerate(path):
        if isinstance(value, BaseMessage):
            for source in _structured(value):
                found = _walk(source, path[position:])
                if found is not _MISSING:
                    return found
            value = _attribute(value, part)
        else:
            value = _step(value, part)
        if value is _MISSING:
            return _MISSING
    return value


def _structured(message: BaseMessage) -> Iterator[Any]:
    # The order documented in ``extract``: the first source holding the whole path wins.
    parsed_content = _json_object(as_text(message))
    if parsed_content is not None:
        yield parsed_content
    parsed = message.additional_kwargs.get("parsed")
    if parsed is not None:
        yield parsed
    if isinstance(message, AIMessage) and message.tool_calls:
        yield message.tool_calls[0]["args"]


def _step(value: Any, part: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(part, _MISSING)
    if isinstance(value, str):
        parsed = _json_object(value)
        return _MISSING if parsed is None else _step(parsed, part)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        try:
            return value[int(part)]
        except (ValueError, IndexError):
            return _MISSING
    return _attribute(value, part)


def _attribute(value: Any, part: str) -> Any:
    found = getattr(value, part, _MISSING)
    # A bound method (``str.upper``, ``BaseModel.model_dump``) is never an output field.
    if inspect.ismethod(found) or inspect.isbuiltin(found):
        return _MISSING
    return found


def _json_object(text: str) -> dict[str, Any] | None:
    body = text.strip()
    if body.startswith("```"):
        # A fenced block: drop the opening line (```json) and the closing fence.
        body = body.partition("\n")[2].rstrip().removesuffix("```").strip()
    if not body.startswith("{"):
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def normalize_answer(value: Any) -> Hashable:
    """The default key under which ``majority_vote`` counts an answer.

    Strings are NFKC-normalised, case-folded, whitespace collapsed, and stripped of
    surrounding quotes, backticks and asterisks and of trailing ``.,;:!?``, so
    ``" **Electronics.** "`` and ``"electronics"`` are one answer. Messages vote with their
    text. Containers, pydantic models and dataclasses become canonical JSON (a list and a
    tuple with the same items are one answer; strings inside are compared exactly). Other
    hashable values are kept (``1`` and ``1.0`` are one answer).

    Example:
        >>> normalize_answer("  Electronics. ")
        'electronics'
    """
    if isinstance(value, BaseMessage):
        value = as_text(value)
    if isinstance(value, str):
        text = " ".join(unicodedata.normalize("NFKC", value).casefold().split())
        previous = None
        while previous != text:
            previous = text
            text = text.strip(_WRAPPERS + " ").rstrip(_TRAILING_PUNCTUATION + " ")
        return text
    if isinstance(value, Mapping | list | tuple | set | frozenset | BaseModel) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        try:
            return json.dumps(_plain(value), sort_keys=True, ensure_ascii=False, default=repr)
        except (TypeError, ValueError):
            return repr(value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=repr)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def as_number(value: Any) -> float | None:
    """``value`` as a finite-or-infinite float, or ``None`` if it is not a number.

    Numbers and numeric strings (``"0.8"``, as LLMs often write them) count; booleans
    and NaN do not.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return None if math.isnan(number) else number


def by_index(results: Sequence[SubAgentResult]) -> list[SubAgentResult]:
    """The results sorted by input index, whatever order they finished in."""
    return sorted(results, key=lambda r: r.index)
