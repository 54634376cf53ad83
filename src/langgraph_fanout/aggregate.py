"""Aggregators: turn the results of a dispatch into one answer.

An aggregator is a small callable object ``(results) -> value``. Every one reads outputs
of any shape through :func:`extract` (str, dict, pydantic model, dataclass, LangChain
message, plain object), ignores failed results, and gives the same answer whatever order
the results finished in. An aggregator may also offer ``stop_condition()``: the engine
then stops the dispatch as soon as the answer is known (``first_success``, and
``majority_vote`` in :mod:`.voting`).

A key that one output lacks never crashes an aggregation: that output abstains from a
vote and is left out of rankings, means and medians, like a failed result.

Example:
    >>> pick = aggregator_from("best_result:confidence")
    >>> pick(results).output  # the output with the highest "confidence"
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import numbers
import statistics
import unicodedata
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from enum import Enum
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel

from .errors import ConfigurationError, KeyNotFound
from .results import SubAgentResult
from .stopping import StopCondition, stop_after_successes

__all__ = [
    "Aggregator",
    "Key",
    "KeyNotFound",
    "Scored",
    "aggregator_from",
    "best_result",
    "collect_all",
    "extract",
    "first_success",
    "mean",
    "median",
    "normalize_answer",
    "rank_by_metric",
    "stop_condition_of",
]

Key: TypeAlias = str | Callable[[Any], Any] | None
"""What to read from an output: ``None`` (the output itself), a dotted path, or a function."""


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
        return _message_text(output) if isinstance(output, BaseMessage) else output
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


def _message_text(message: BaseMessage) -> str:
    return str(message.text)


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
    parsed_content = _json_object(_message_text(message))
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
        value = _message_text(value)
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


class _NoEarlyStop:
    __slots__ = ()

    def stop_condition(self) -> StopCondition | None:
        """This aggregator needs every result: it never stops a dispatch early."""
        return None


@runtime_checkable
class Aggregator(Protocol):
    """Anything that turns a dispatch's results into one value.

    It may also define ``stop_condition() -> StopCondition | None`` (see
    :func:`stop_condition_of`) to let the engine stop once the value is decided.
    """

    def __call__(self, results: Sequence[SubAgentResult], /) -> Any: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Scored:
    """One ranked result: its ``score`` and the ``result`` it came from."""

    score: float
    result: SubAgentResult

    @property
    def output(self) -> Any:
        return self.result.output


@dataclass(frozen=True, slots=True)
class collect_all(_NoEarlyStop):
    """Every successful output as it is (or the value under ``key``), in input order.

    Args:
        key: what to read from each output; outputs without it are left out. ``None``
            keeps outputs unchanged (messages stay messages).
        include_errors: keep one entry per input instead: failed inputs give their error
            (a ``CallError``) and outputs without ``key`` give a ``KeyNotFound``.

    Example:
        >>> collect_all("summary")(results)
        ['...', '...']
    """

    key: Key = None
    _: KW_ONLY
    include_errors: bool = False

    def __call__(self, results: Sequence[SubAgentResult]) -> list[Any]:
        values: list[Any] = []
        for result in by_index(results):
            if not result.ok:
                if self.include_errors:
                    values.append(result.error)
                continue
            if self.key is None:
                values.append(result.output)
                continue
            try:
                values.append(extract(result.output, self.key))
            except KeyNotFound as missing:
                if self.include_errors:
                    values.append(missing)
        return values


def _score_of(result: SubAgentResult, key: Key, score: Callable[[Any], Any] | None) -> float | None:
    if not result.ok:
        return None
    value = extract(result.output, key, default=_MISSING)
    if value is _MISSING:
        return None
    return as_number(value if score is None else score(value))


def _ranked(
    results: Sequence[SubAgentResult],
    key: Key,
    score: Callable[[Any], Any] | None,
    reverse: bool,
) -> list[Scored]:
    scored = [
        Scored(score=s, result=r) for r in results if (s := _score_of(r, key, score)) is not None
    ]
    # Ties keep input order in both directions: the lower index always ranks first.
    sign = -1.0 if reverse else 1.0
    scored.sort(key=lambda item: (sign * item.score, item.result.index))
    return scored


@dataclass(frozen=True, slots=True)
class rank_by_metric(_NoEarlyStop):
    """Successful results sorted by a numeric metric, best first, as ``Scored`` items.

    Results whose metric is missing or not a number (numeric strings count) are left out;
    equal scores keep input order.

    Args:
        key: where the metric is (``None``: the output itself).
        score: optional function from the value under ``key`` to the metric.
        reverse: ``True`` (default) puts the highest score first; ``False`` the lowest.

    Example:
        >>> [item.score for item in rank_by_metric("score")(results)]
        [0.92, 0.81, 0.4]
    """

    key: Key = None
    _: KW_ONLY
    score: Callable[[Any], Any] | None = None
    reverse: bool = True

    def __call__(self, results: Sequence[SubAgentResult]) -> list[Scored]:
        return _ranked(results, self.key, self.score, self.reverse)


@dataclass(frozen=True, slots=True)
class best_result(_NoEarlyStop):
    """The successful result with the best metric (ties: the lowest index), or ``None``.

    Args:
        key: where the metric is (``None``: the output itself).
        score: optional function from the value under ``key`` to the metric.
        reverse: ``True`` (default): the highest score is best; ``False``: the lowest
            (latency, cost).

    Example:
        >>> best_result("confidence")(results).agent
        'researcher'
    """

    key: Key = None
    _: KW_ONLY
    score: Callable[[Any], Any] | None = None
    reverse: bool = True

    def __call__(self, results: Sequence[SubAgentResult]) -> SubAgentResult | None:
        ranked = _ranked(results, self.key, self.score, self.reverse)
        return ranked[0].result if ranked else None


@dataclass(frozen=True, slots=True)
class first_success:
    """The successful result with the lowest index, or ``None``; stops at the first success.

    As an aggregator it does not depend on completion order. Its ``stop_condition()``
    stops the dispatch at the first success to *finish*, so after an early stop the
    results usually hold one success (or a few that finished together): the answer is the
    lowest-index one among them.

    Example:
        >>> first_success()(results).output
    """

    def __call__(self, results: Sequence[SubAgentResult]) -> SubAgentResult | None:
        return min((r for r in results if r.ok), key=lambda r: r.index, default=None)

    def stop_condition(self) -> StopCondition:
        """Stop as soon as one input has succeeded."""
        return stop_after_successes(1)


def _numbers(results: Sequence[SubAgentResult], key: Key) -> list[float]:
    return [s for r in by_index(results) if (s := _score_of(r, key, None)) is not None]


@dataclass(frozen=True, slots=True)
class mean(_NoEarlyStop):
    """The mean of a numeric value over successful results, or ``None`` if there is none.

    Example:
        >>> mean("score")(results)
        0.71
    """

    key: Key = None

    def __call__(self, results: Sequence[SubAgentResult]) -> float | None:
        values = _numbers(results, self.key)
        return math.fsum(values) / len(values) if values else None


@dataclass(frozen=True, slots=True)
class median(_NoEarlyStop):
    """The median of a numeric value over successful results, or ``None`` if there is none.

    Example:
        >>> median("score")(results)
        0.75
    """

    key: Key = None

    def __call__(self, results: Sequence[SubAgentResult]) -> float | None:
        values = _numbers(results, self.key)
        return float(statistics.median(values)) if values else None


def stop_condition_of(aggregator: Any) -> StopCondition | None:
    """The stop condition an aggregator offers through ``stop_condition()``, if any.

    Raises:
        ConfigurationError: ``stop_condition()`` returned something that is not a
            ``StopCondition``.
    """
    factory = getattr(aggregator, "stop_condition", None)
    if not callable(factory):
        return None
    condition = factory()
    if condition is not None and not isinstance(condition, StopCondition):
        raise ConfigurationError(
            f"{aggregator!r}.stop_condition() returned {condition!r}, not a StopCondition"
        )
    return condition


_KEYED: Final[dict[str, Callable[[Key], Aggregator]]] = {
    "best_result": best_result,
    "collect_all": collect_all,
    "mean": mean,
    "median": median,
    "rank_by_metric": rank_by_metric,
}


def aggregator_from(spec: str | Callable[[Sequence[SubAgentResult]], Any]) -> Aggregator:
    """Resolve an aggregator from a name (for tools and the CLI) or pass one through.

    Names: ``collect_all``, ``majority_vote``, ``best_result``, ``rank_by_metric``,
    ``mean``, ``median`` (each optionally ``name:key``, e.g. ``"best_result:score"``) and
    ``first_success``. A callable is returned unchanged.

    Raises:
        ConfigurationError: unknown name, a key where none is taken, or not a callable.

    Example:
        >>> aggregator_from("majority_vote:category")
        majority_vote(key='category', ...)
    """
    if not isinstance(spec, str):
        if callable(spec):
            return spec
        raise ConfigurationError(f"an aggregator is a name or a callable, got {spec!r}")
    name, colon, raw_key = spec.partition(":")
    name = name.strip().replace("-", "_")
    key: str | None = raw_key.strip() or None
    if colon and key is None:
        raise ConfigurationError(f"aggregator spec {spec!r} has an empty key after ':'")
    if name == "first_success":
        if key is not None:
            raise ConfigurationError("first_success takes no key")
        return first_success()
    if name == "majority_vote":
        # Imported here: voting builds on this module's extraction.
        from .voting import majority_vote

        return majority_vote(key)
    factory = _KEYED.get(name)
    if factory is None:
        known = ", ".join(sorted([*_KEYED, "first_success", "majority_vote"]))
        raise ConfigurationError(f"unknown aggregator {name!r}; known: {known}")
    return factory(key)
