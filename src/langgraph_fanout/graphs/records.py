"""How results are kept in graph state: checkpoint-safe records.

LangGraph's serializer turns an exception into its ``repr`` and warns about classes it does
not know, so a ``SubAgentResult`` would lose its typed error in a checkpoint. A record is
``SubAgentResult.to_dict()`` plus what rebuilds the rest: every attempt, the error's stable
``kind`` and constructor arguments (errors of this package replay them when pickled), the
cost estimate and the hedging counts. ``result_from_record`` rebuilds the result, typed
error included. Errors are named by ``kind``, never by module path, so moving a class does
not degrade old checkpoints; records of 0.1.0 (which named ``module`` and ``type``) still
load. Nothing is ever imported from checkpoint data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from langgraph_fanout.core.results import Attempt, Status, SubAgentResult
from langgraph_fanout.errors import CallError, error_class

Record = dict[str, Any]

DEFERRED = "deferred"
"""Status of a record left by a resumed ``Send`` task that found no run state in this
process: it made no call, and the collecting node sends the item again once it has rebuilt
the run from the state."""


def merge_records(left: list[Record], right: list[Record] | Record) -> list[Record]:
    """Reducer of the internal ``finished`` channel: append, or start over on a reset."""
    if isinstance(right, dict):
        # {"reset": True} from the first node: a new run on the same thread starts clean.
        return []
    return [*left, *right]


def result_to_record(
    result: SubAgentResult, *, stage: int | None = None, branch: int | None = None
) -> dict[str, Any]:
    """A checkpoint-safe record of ``result`` (``result_from_record`` rebuilds it).

    Args:
        result: the result.
        stage / branch: where a pipeline graph made the call (both kept when ``stage`` is
            given; ``branch`` is ``None`` outside a branch point).

    Example:
        >>> record = result_to_record(result)
        >>> result_from_record(record).error_kind == result.error_kind
        True
    """
    record = result.to_dict()
    record["attempts"] = [dataclasses.asdict(a) for a in result.attempts]
    record["error_data"] = None if result.error is None else _error_data(result.error)
    record["estimated_cost_usd"] = result.estimated_cost_usd
    record["rate_wait_s"] = result.rate_wait_s
    record["budget_wait_s"] = result.budget_wait_s
    record["breakers_opened"] = result.breakers_opened
    record["hedges"] = result.hedges
    record["hedge_won"] = result.hedge_won
    if stage is not None:
        record["stage"], record["branch"] = stage, branch
    return record


def result_from_record(record: Mapping[str, Any]) -> SubAgentResult:
    """Rebuild the ``SubAgentResult`` of a record, typed error included."""
    error = None
    if record.get("error") is not None:
        error = _error_from(record.get("error_data"), str(record["error"]))
    return SubAgentResult(
        index=int(record["index"]),
        agent=str(record["agent"]),
        status=Status(record["status"]),
        output=record.get("output"),
        error=error,
        duration_s=float(record.get("duration_s") or 0.0),
        attempts=tuple(_attempt(a) for a in record.get("attempts") or ()),
        agent_used=record.get("agent_used"),
        cost_usd=float(record.get("cost_usd") or 0.0),
        estimated_cost_usd=float(record.get("estimated_cost_usd") or 0.0),
        input_tokens=int(record.get("input_tokens") or 0),
        output_tokens=int(record.get("output_tokens") or 0),
        cache_hit=bool(record.get("cache_hit")),
        rate_wait_s=float(record.get("rate_wait_s") or 0.0),
        budget_wait_s=float(record.get("budget_wait_s") or 0.0),
        sample=int(record.get("sample") or 0),
        question=None if record.get("question") is None else int(record["question"]),
        flags=tuple(record.get("flags") or ()),
        breakers_opened=int(record.get("breakers_opened") or 0),
        hedges=int(record.get("hedges") or 0),
        hedge_won=bool(record.get("hedge_won")),
    )


_ATTEMPT_FIELDS = frozenset(f.name for f in dataclasses.fields(Attempt))


def _attempt(data: Mapping[str, Any]) -> Attempt:
    # Fields a later release adds are left out of older records: their defaults apply.
    return Attempt(**{k: v for k, v in data.items() if k in _ATTEMPT_FIELDS})


def results_from_records(records: Iterable[Mapping[str, Any]]) -> list[SubAgentResult]:
    """``result_from_record`` over records, e.g. a graph output's ``results``."""
    return [result_from_record(r) for r in records]


def deferred_record(index: int, agent: str, sample: int) -> dict[str, Any]:
    """The record of a resumed ``Send`` task that found no run state (no call made)."""
    return {"index": index, "agent": agent, "status": DEFERRED, "sample": sample}


def latest_records(records: Iterable[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """The last record of each index (a re-sent item's result replaces its deferral)."""
    return {int(r["index"]): r for r in records}


def _error_data(error: CallError) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": error.kind}
    # Errors of this package pickle by replaying their keyword arguments (errors.py).
    reduced: Any = error.__reduce__()
    args: tuple[Any, ...] = reduced[1] if isinstance(reduced, tuple) and len(reduced) > 1 else ()
    if len(args) == 2 and isinstance(args[1], dict):
        data["kwargs"] = {str(k): _plain(v) for k, v in args[1].items()}
    else:
        data["args"] = [_plain(a) for a in args]
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, CallError):
        return {"__error__": _error_data(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _revive(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"__error__"}:
        return _error_from(value["__error__"], "")
    return value


def _error_from(data: Any, message: str) -> CallError:
    """Rebuild an error of this package from its record; a plain ``CallError`` otherwise."""
    if isinstance(data, Mapping):
        # 0.1.0 wrote {"module", "type"}; the class name still names it.
        cls = error_class(str(data.get("kind") or data.get("type") or ""))
        if cls is not None:
            try:
                if "kwargs" in data:
                    return cls(**{k: _revive(v) for k, v in data["kwargs"].items()})
                return cls(*(_revive(a) for a in data.get("args", ())))
            except (TypeError, ValueError):
                pass
    return CallError(message)
