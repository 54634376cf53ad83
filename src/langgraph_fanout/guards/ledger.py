"""Accounting: what was spent (``Usage``, ``UsageCapture``) and what may still be (``CostLedger``).

``UsageCapture`` is a callback for one sub-agent call that adds up the ``usage_metadata`` of
every model call inside it, per model, without billing LLM-cache hits. One ``CostLedger`` is
shared by a whole dispatch tree: a call may start only if ``spent + reserved + estimate <=
limit``. The check and the reservation happen under one ``threading.Lock`` with no ``await``
in between, so concurrent callers (tasks or threads) can never jointly overbook. Amounts are
kept as integer nano-USD, so many small commits add up exactly and ``5 x 0.01`` fits ``0.05``.

    >>> ledger = CostLedger(limit_usd=0.05)
    >>> with ledger.reserve(agent="researcher", estimate_usd=0.02) as reservation:
    ...     reservation.commit(0.015)
    >>> ledger.spent_usd, ledger.remaining_usd
    (0.015, 0.035)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType, TracebackType
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from langgraph_fanout.errors import BudgetExceeded, ConfigurationError
from langgraph_fanout.guards.pricing import Price

PriceFor = Callable[[str | None], "Price | None"]
"""Maps a model name to its price (``None`` when unknown), e.g. ``lookup_price``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """What was spent; values add up with ``+``.

    Example:
        >>> (Usage(input_tokens=10, requests=1) + Usage(output_tokens=5, requests=1)).requests
        2
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    requests: int = 0
    cost_usd: float = 0.0

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "cached_input_tokens", "requests"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"Usage.{name} must be >= 0")
        if not self.cost_usd >= 0:
            raise ConfigurationError(f"Usage.cost_usd must be >= 0, got {self.cost_usd!r}")

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            requests=self.requests + other.requests,
            cost_usd=self.cost_usd + other.cost_usd,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_usage_metadata(cls, usage: Mapping[str, Any], *, requests: int = 1) -> Usage:
        """From LangChain's ``AIMessage.usage_metadata``."""
        details = usage.get("input_token_details") or {}
        return cls(
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            cached_input_tokens=int(details.get("cache_read") or 0),
            requests=requests,
        )

    def priced(self, price: Price) -> Usage:
        """This usage with ``cost_usd`` computed from ``price``."""
        usd = price.cost(self.input_tokens, self.output_tokens, self.cached_input_tokens)
        return replace(self, cost_usd=usd)


class UsageCapture(BaseCallbackHandler):
    """Adds up the token usage of every model call made inside one sub-agent call.

    Attach it to that call's config (``config={"callbacks": [capture]}``): LangChain passes
    callbacks down to nested runnables, so every chat model of a compiled graph is seen.
    Usage is grouped by the model name the provider reported (``response_metadata``), else
    the ``ls_model_name`` of the call. LLM-cache hits are counted in ``cache_hits`` and not
    billed: langchain-core replays the cached message with its old token counts and marks
    it with ``usage_metadata["total_cost"] == 0``. Thread-safe.

    Example:
        >>> from langgraph_fanout.cost import lookup_price
        >>> capture = UsageCapture()
        >>> # agent.invoke(x, config={"callbacks": [capture]})
        >>> capture.total().requests, capture.cost(lookup_price)
        (0, 0.0)
    """

    run_inline = True  # cheap and lock-protected: no need for an executor hop in async runs

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._by_model: dict[str | None, Usage] = {}
        self._run_models: dict[UUID, str | None] = {}
        self._cache_hits = 0
        self._unreported = 0

    def _started(self, run_id: UUID, metadata: dict[str, Any] | None) -> None:
        with self._lock:
            self._run_models[run_id] = (metadata or {}).get("ls_model_name")

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._started(run_id, metadata)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._started(run_id, metadata)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._run_models.pop(run_id, None)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        found: list[tuple[str | None, Mapping[str, Any]]] = []
        for candidates in response.generations:
            # With n > 1 some providers repeat the request's usage on every choice: take one.
            for gen in candidates:
                message = gen.message if isinstance(gen, ChatGeneration) else None
                if isinstance(message, AIMessage) and message.usage_metadata:
                    found.append(
                        (message.response_metadata.get("model_name"), message.usage_metadata)
                    )
                    break
        with self._lock:
            started_model = self._run_models.pop(run_id, None)
            if not found:
                self._unreported += 1
            for model, meta in found:
                if meta.get("total_cost") == 0:  # langchain-core's mark of a cache hit
                    self._cache_hits += 1
                    continue
                key = model or started_model
                self._by_model[key] = self._by_model.get(key, Usage()) + Usage.from_usage_metadata(
                    meta
                )

    @property
    def by_model(self) -> Mapping[str | None, Usage]:
        """Captured usage per model name (``None`` when no name was reported)."""
        with self._lock:
            return dict(self._by_model)

    @property
    def cache_hits(self) -> int:
        """Model calls answered from the LLM cache (not billed)."""
        return self._cache_hits

    @property
    def unreported_calls(self) -> int:
        """Model calls that ended without ``usage_metadata``: their cost is unknown.

        Completion-style LLMs (not chat models) land here too; settle such calls with
        their estimate.
        """
        return self._unreported

    def __repr__(self) -> str:
        return (
            f"UsageCapture(by_model={dict(self.by_model)!r}, cache_hits={self._cache_hits}, "
            f"unreported_calls={self._unreported})"
        )

    def total(self) -> Usage:
        """All captured usage added up (``cost_usd`` is 0: see ``cost``)."""
        total = Usage()
        for usage in self.by_model.values():
            total = total + usage
        return total

    def cost(self, price_for: PriceFor) -> float | None:
        """USD of the captured usage, or ``None`` if a model that used tokens has no price.

        Args:
            price_for: model name -> price, e.g. ``lambda m: lookup_price(m)``.
        """
        usd = 0.0
        for model, usage in self.by_model.items():
            if usage.total_tokens == 0:
                continue
            price = price_for(model)
            if price is None:
                return None
            usd += usage.priced(price).cost_usd
        return usd


_NANO = 1_000_000_000


def _to_nano(usd: float, what: str) -> int:
    if not math.isfinite(usd) or usd < 0:
        raise ConfigurationError(f"{what} must be a finite number >= 0, got {usd!r}")
    return round(usd * _NANO)


def _to_usd(nano: int) -> float:
    return nano / _NANO


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerSnapshot:
    """The state of a ``CostLedger`` at one instant (all amounts in USD).

    Attributes:
        limit_usd: the cap, or ``None`` for no cap.
        spent_usd: actual cost committed so far.
        reserved_usd: worst-case estimates of calls in flight.
        remaining_usd: what is left for new reservations (``inf`` without a cap).
        refused_usd: sum of the estimates the budget refused ("would have cost").
        refused_calls: how many reservations were refused.
        overshoot_usd: sum of ``actual - estimate`` over commits that exceeded their estimate.
        overshoot_calls: how many commits exceeded their estimate.
        committed_calls: how many reservations were committed.
        released_calls: how many reservations were released unspent.
        in_flight: reservations not yet settled.
        spent_by_agent: agent name -> committed cost.
    """

    limit_usd: float | None
    spent_usd: float
    reserved_usd: float
    remaining_usd: float
    refused_usd: float
    refused_calls: int
    overshoot_usd: float
    overshoot_calls: int
    committed_calls: int
    released_calls: int
    in_flight: int
    spent_by_agent: Mapping[str, float]


class Reservation:
    """A worst-case estimate held against a ``CostLedger`` until the call settles.

    Settle it exactly once: ``commit(actual_usd)`` after the call ran, or ``release()`` if
    it never ran. ``release()`` on a settled reservation is a no-op (so it is safe in a
    ``finally``); ``commit()`` on a settled reservation raises, because a second commit
    would either double-count or silently drop a real cost. Used as a context manager, the
    reservation is released on exit unless it was committed.
    """

    __slots__ = ("_estimate_nano", "_ledger", "_settled", "agent")

    def __init__(self, ledger: CostLedger, agent: str, estimate_nano: int) -> None:
        self._ledger = ledger
        self.agent = agent
        self._estimate_nano = estimate_nano
        self._settled = False

    @property
    def estimate_usd(self) -> float:
        return _to_usd(self._estimate_nano)

    @property
    def settled(self) -> bool:
        return self._settled

    def commit(self, actual_usd: float) -> None:
        """Record the call's actual cost and free its reservation.

        Args:
            actual_usd: what the call really cost; may exceed the estimate (recorded as
                overshoot).

        Raises:
            ConfigurationError: ``actual_usd`` is negative or not finite.
            RuntimeError: the reservation was already committed or released.
        """
        actual_nano = _to_nano(actual_usd, "actual_usd")
        self._ledger._settle(self, actual_nano)

    def release(self) -> bool:
        """Return the reservation unspent (the call never ran).

        Returns:
            ``True`` if this call released it, ``False`` if it was already settled.
        """
        return self._ledger._settle(self, None)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "settled" if self._settled else "held"
        return f"Reservation(agent={self.agent!r}, estimate_usd={self.estimate_usd:.6g}, {state})"


class CostLedger:
    """A cost budget shared by every call of a dispatch tree (thread- and task-safe).

    Args:
        limit_usd: the cap in USD; ``None`` means no cap (everything is still accounted).

    Raises:
        ConfigurationError: ``limit_usd`` is negative or not finite.

    Example:
        >>> ledger = CostLedger(limit_usd=0.05)
        >>> r = ledger.reserve(agent="a", estimate_usd=0.04)
        >>> ledger.can_fit(0.02)
        False
        >>> r.commit(0.01)
        >>> ledger.can_fit(0.02)
        True
    """

    def __init__(self, limit_usd: float | None = None) -> None:
        self._limit_nano = None if limit_usd is None else _to_nano(limit_usd, "limit_usd")
        self._limit_usd = limit_usd
        self._lock = threading.Lock()
        self._spent = 0
        self._reserved = 0
        self._refused = 0
        self._refused_calls = 0
        self._overshoot = 0
        self._overshoot_calls = 0
        self._committed_calls = 0
        self._released_calls = 0
        self._in_flight = 0
        self._by_agent: dict[str, int] = {}

    def reserve(
        self, *, agent: str, estimate_usd: float, unknown_cost: bool = False
    ) -> Reservation:
        """Hold ``estimate_usd`` for one call, or refuse it if it does not fit.

        Synchronous and atomic: callers in tasks or threads cannot both take the last room.

        Args:
            agent: the sub-agent name (for per-agent totals and the error).
            estimate_usd: the call's worst-case cost.
            unknown_cost: the cost is known only after the call (an agent with no model):
                it is admitted only while budget remains.

        Raises:
            BudgetExceeded: ``spent + reserved + estimate > limit``; the refused estimate is
                added to ``refused_usd``.
            ConfigurationError: ``estimate_usd`` is negative or not finite.
        """
        estimate = _to_nano(estimate_usd, "estimate_usd")
        with self._lock:
            limit = self._limit_nano
            used = self._spent + self._reserved
            # A call whose cost is known only afterwards still needs room left: once the
            # budget is used up, nothing more starts.
            if limit is not None and (used + estimate > limit or (unknown_cost and used >= limit)):
                self._refused += estimate
                self._refused_calls += 1
                spent, reserved = self._spent, self._reserved
            else:
                self._reserved += estimate
                self._in_flight += 1
                return Reservation(self, agent, estimate)
        # Built outside the lock: formatting the message needs no shared state.
        raise BudgetExceeded(
            agent=agent,
            spent_usd=_to_usd(spent),
            reserved_usd=_to_usd(reserved),
            estimate_usd=_to_usd(estimate),
            limit_usd=_to_usd(limit),
            unknown_cost=unknown_cost,
        )

    def charge(self, *, agent: str, actual_usd: float) -> None:
        """Record spend that had no reservation (a cost known only after the call).

        Never refuses: the call already happened. Under a cap, all of it counts as
        overshoot, since nothing was reserved for it.

        Raises:
            ConfigurationError: ``actual_usd`` is negative or not finite.
        """
        actual = _to_nano(actual_usd, "actual_usd")
        if not actual:
            return
        with self._lock:
            self._spent += actual
            self._committed_calls += 1
            self._by_agent[agent] = self._by_agent.get(agent, 0) + actual
            if self._limit_nano is not None:
                self._overshoot += actual
                self._overshoot_calls += 1

    def can_fit(self, estimate_usd: float) -> bool:
        """Whether a reservation of ``estimate_usd`` would be admitted right now.

        Only advisory (another caller may take the room before you reserve); use it to stop
        starting work once nothing more can fit.
        """
        estimate = _to_nano(estimate_usd, "estimate_usd")
        with self._lock:
            limit = self._limit_nano
            return limit is None or self._spent + self._reserved + estimate <= limit

    def _settle(self, reservation: Reservation, actual_nano: int | None) -> bool:
        with self._lock:
            if reservation._settled:
                if actual_nano is None:
                    return False
                raise RuntimeError(f"{reservation!r} was already settled; commit it only once")
            reservation._settled = True
            estimate = reservation._estimate_nano
            self._reserved -= estimate
            self._in_flight -= 1
            if actual_nano is None:
                self._released_calls += 1
                return True
            self._spent += actual_nano
            self._committed_calls += 1
            agent = reservation.agent
            self._by_agent[agent] = self._by_agent.get(agent, 0) + actual_nano
            # Without a cap nothing was promised, so there is nothing to overshoot.
            if actual_nano > estimate and self._limit_nano is not None:
                self._overshoot += actual_nano - estimate
                self._overshoot_calls += 1
            return True

    @property
    def limit_usd(self) -> float | None:
        return self._limit_usd

    @property
    def spent_usd(self) -> float:
        return _to_usd(self._spent)

    @property
    def reserved_usd(self) -> float:
        return _to_usd(self._reserved)

    @property
    def remaining_usd(self) -> float:
        """What is left for new reservations; ``inf`` without a cap, never negative."""
        with self._lock:
            if self._limit_nano is None:
                return math.inf
            return _to_usd(max(0, self._limit_nano - self._spent - self._reserved))

    @property
    def refused_usd(self) -> float:
        return _to_usd(self._refused)

    @property
    def refused_calls(self) -> int:
        return self._refused_calls

    @property
    def overshoot_usd(self) -> float:
        return _to_usd(self._overshoot)

    @property
    def overshoot_calls(self) -> int:
        return self._overshoot_calls

    @property
    def committed_calls(self) -> int:
        return self._committed_calls

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def spent_by_agent(self) -> Mapping[str, float]:
        """A read-only copy: agent name -> committed cost in USD."""
        with self._lock:
            return MappingProxyType({k: _to_usd(v) for k, v in self._by_agent.items()})

    def snapshot(self) -> LedgerSnapshot:
        """All counters, read consistently under the lock."""
        with self._lock:
            limit = self._limit_nano
            remaining = (
                math.inf if limit is None else _to_usd(max(0, limit - self._spent - self._reserved))
            )
            return LedgerSnapshot(
                limit_usd=self._limit_usd,
                spent_usd=_to_usd(self._spent),
                reserved_usd=_to_usd(self._reserved),
                remaining_usd=remaining,
                refused_usd=_to_usd(self._refused),
                refused_calls=self._refused_calls,
                overshoot_usd=_to_usd(self._overshoot),
                overshoot_calls=self._overshoot_calls,
                committed_calls=self._committed_calls,
                released_calls=self._released_calls,
                in_flight=self._in_flight,
                spent_by_agent=MappingProxyType({k: _to_usd(v) for k, v in self._by_agent.items()}),
            )

    def __repr__(self) -> str:
        s = self.snapshot()
        limit = "None" if s.limit_usd is None else f"{s.limit_usd:.6g}"
        return (
            f"CostLedger(limit_usd={limit}, spent_usd={s.spent_usd:.6g}, "
            f"reserved_usd={s.reserved_usd:.6g}, in_flight={s.in_flight}, "
            f"committed_calls={s.committed_calls}, refused_calls={s.refused_calls}, "
            f"refused_usd={s.refused_usd:.6g}, overshoot_usd={s.overshoot_usd:.6g})"
        )
