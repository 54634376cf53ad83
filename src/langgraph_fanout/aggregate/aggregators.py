"""Aggregators: turn the results of a dispatch into one answer.

An aggregator is a small callable object ``(results) -> value``. Every one reads outputs
of any shape through :func:`extract` (str, dict, pydantic model, dataclass, LangChain
message, plain object), ignores failed results, and gives the same answer whatever order
the results finished in. An aggregator may also offer ``stop_condition()``: the engine
then stops the dispatch as soon as the answer is known (``first_success``, and
``majority_vote`` in ``voting``).

A key that one output lacks never crashes an aggregation: that output abstains from a
vote and is left out of rankings, means and medians, like a failed result.

Example:
    >>> pick = aggregator_from("best_result:confidence")
    >>> pick(results).output  # the output with the highest "confidence"
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final, Protocol, runtime_checkable

from langgraph_fanout.aggregate.extract import (
    _MISSING,
    Key,
    as_number,
    by_index,
    check_options,
    extract,
)
from langgraph_fanout.aggregate.voting import majority_vote
from langgraph_fanout.core.results import SubAgentResult
from langgraph_fanout.core.stopping import StopCondition, stop_after_successes
from langgraph_fanout.errors import ConfigurationError, KeyNotFound


class _NoEarlyStop:
    __slots__ = ()

    def __post_init__(self) -> None:
        check_options(self)

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


def apply_aggregate(
    aggregator: Callable[[Sequence[SubAgentResult]], Any], results: Sequence[SubAgentResult]
) -> Any:
    """What a dispatch, a graph or a tool gives as the aggregate of ``results``: a
    per-input ``majority_vote`` votes per question (``Votes``); anything else is called
    on every result."""
    if isinstance(aggregator, majority_vote) and aggregator.group_by is not None:
        return aggregator.per_question(results)
    return aggregator(results)


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
        return majority_vote(key)
    factory = _KEYED.get(name)
    if factory is None:
        known = ", ".join(sorted([*_KEYED, "first_success", "majority_vote"]))
        raise ConfigurationError(f"unknown aggregator {name!r}; known: {known}")
    return factory(key)
