"""Accounting: what was spent (``Usage``, ``UsageCapture``) and what may still be (``CostLedger``).

``UsageCapture`` is a callback for one sub-agent call that adds up the ``usage_metadata`` of
every model call inside it, per model, without billing LLM-cache hits. One ``CostLedger`` is
shared by a whole dispatch tree: a call may start only if ``spent + uncertain + reserved +
estimate <= limit``. The check and the reservation happen under one ``threading.Lock`` with
no ``await`` in between, so concurrent callers (tasks or threads) can never jointly overbook.
Amounts are kept as integer nano-USD, so many small commits add up exactly and ``5 x 0.01``
fits ``0.05``.

Admission waits (``await ledger.admit(...)``): a call that does not fit *because of calls in
flight* queues (first in, first out) and is admitted as soon as their settlements free room;
it is refused only when it can never fit (``spent + uncertain + estimate > limit``, counting
the reservations of the calls it runs inside, which cannot settle before it does), when
every call in flight is itself waiting on queued calls, or when its ``timeout_s`` passes.
A call cut off after its request was sent (``Reservation.cut_off``) is billed what the
provider bills at least (its input) and keeps the output it may have generated as
``uncertain``: counted against the cap, replaced by real usage if that arrives later.

    >>> ledger = CostLedger(limit_usd=0.05)
    >>> with ledger.reserve(agent="researcher", estimate_usd=0.02) as reservation:
    ...     reservation.commit(0.015)
    >>> ledger.spent_usd, ledger.remaining_usd
    (0.015, 0.035)
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from langgraph_fanout.core.checks import MAX_USD, check_number
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
        if (  # the common case in one expression (several are built per model call)
            self.input_tokens >= 0
            and self.output_tokens >= 0
            and self.cached_input_tokens >= 0
            and self.requests >= 0
            and self.cost_usd >= 0
        ):
            return
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
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_input_tokens=self.cached_input_tokens,
            requests=self.requests,
            cost_usd=usd,
        )


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
            self._add(found, started_model)

    def record_message(self, message: Any, model: str | None = None) -> None:
        """Count the usage one chat model call returned in its ``AIMessage`` (the same
        accounting as ``on_llm_end``, without LangChain's callback dispatch)."""
        found: list[tuple[str | None, Mapping[str, Any]]] = []
        if isinstance(message, AIMessage) and message.usage_metadata:
            found.append((message.response_metadata.get("model_name"), message.usage_metadata))
        with self._lock:
            self._add(found, model)

    def _add(self, found: list[tuple[str | None, Mapping[str, Any]]], started: str | None) -> None:
        if not found:
            self._unreported += 1
        for model, meta in found:
            if meta.get("total_cost") == 0:  # langchain-core's mark of a cache hit
                self._cache_hits += 1
                continue
            key = model or started
            usage = Usage.from_usage_metadata(meta)
            seen = self._by_model.get(key)
            self._by_model[key] = usage if seen is None else seen + usage

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
    def pending_calls(self) -> int:
        """Model calls started that have not ended (cut off, or still running)."""
        with self._lock:
            return len(self._run_models)

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
        usages = list(self.by_model.values())
        if len(usages) == 1:
            return usages[0]  # frozen: the one model's usage is the total
        total = Usage()
        for usage in usages:
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
            usd += price.cost(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens)
        return usd


_NANO = 1_000_000_000


def _to_nano(usd: float, what: str) -> int:
    # The common case in two comparisons (this runs several times per call); the rest,
    # with its message, in check_number.
    if type(usd) is not float or not 0.0 <= usd <= MAX_USD:
        check_number(what, usd, at_least=0, at_most=MAX_USD)
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
        uncertain_usd: output of calls cut off in flight that the provider may have billed.
        remaining_usd: what is left for new reservations (``inf`` without a cap).
        refused_usd: sum of the estimates the budget refused ("would have cost").
        refused_calls: how many reservations were refused.
        overshoot_usd: sum of ``actual - estimate`` over commits that exceeded their estimate.
        overshoot_calls: how many commits exceeded their estimate.
        committed_calls: how many reservations were committed.
        released_calls: how many reservations were released unspent.
        in_flight: reservations not yet settled.
        cut_off_calls: reservations settled by ``cut_off`` (sent, never answered).
        waiting: admissions queued for room.
        spent_by_agent: agent name -> committed cost.
    """

    limit_usd: float | None
    spent_usd: float
    reserved_usd: float
    remaining_usd: float
    uncertain_usd: float
    cut_off_calls: int
    waiting: int
    refused_usd: float
    refused_calls: int
    overshoot_usd: float
    overshoot_calls: int
    committed_calls: int
    released_calls: int
    in_flight: int
    spent_by_agent: Mapping[str, float]


_HELD, _COMMITTED, _RELEASED, _CUT_OFF = range(4)


class Reservation:
    """A worst-case estimate held against a ``CostLedger`` until the call settles.

    Settle it exactly once: ``commit(actual_usd)`` after the call ran, ``release()`` if its
    request never reached the provider, or ``cut_off(billed_usd, uncertain_usd)`` if it was
    sent and never answered. A cut-off reservation may still be committed once, when the
    real usage arrives late: that replaces both its billed and its uncertain amounts.
    ``release()`` on a settled reservation is a no-op (so it is safe in a ``finally``);
    ``commit()`` on a committed or released one raises, because a second commit would
    either double-count or silently drop a real cost. Used as a context manager, the
    reservation is released on exit unless it was settled.
    """

    __slots__ = (
        "_billed_nano",
        "_estimate_nano",
        "_ledger",
        "_state",
        "_uncertain_nano",
        "_waiting_below",
        "agent",
    )

    def __init__(self, ledger: CostLedger, agent: str, estimate_nano: int) -> None:
        self._ledger = ledger
        self.agent = agent
        self._estimate_nano = estimate_nano
        self._state = _HELD
        self._billed_nano = 0
        self._uncertain_nano = 0
        self._waiting_below = 0  # admissions queued by calls running inside this one

    @property
    def estimate_usd(self) -> float:
        return _to_usd(self._estimate_nano)

    @property
    def settled(self) -> bool:
        return self._state != _HELD

    @property
    def uncertain_usd(self) -> float:
        """Output this cut-off call may have been billed for (0 unless ``cut_off``)."""
        return _to_usd(self._uncertain_nano)

    def commit(self, actual_usd: float) -> None:
        """Record the call's actual cost and free its reservation.

        After ``cut_off`` this replaces what was billed and held as uncertain (the real
        usage arrived late).

        Args:
            actual_usd: what the call really cost; may exceed the estimate (recorded as
                overshoot).

        Raises:
            ConfigurationError: ``actual_usd`` is negative or not finite.
            RuntimeError: the reservation was already committed or released.
        """
        actual_nano = _to_nano(actual_usd, "actual_usd")
        self._ledger._settle(self, _COMMITTED, actual_nano)

    def release(self) -> bool:
        """Return the reservation unspent (the call never reached the provider).

        Returns:
            ``True`` if this call released it, ``False`` if it was already settled.
        """
        return self._ledger._settle(self, _RELEASED, 0)

    def cut_off(self, billed_usd: float, uncertain_usd: float) -> None:
        """Settle a call that was sent but never answered (cancelled, timed out).

        Args:
            billed_usd: what the provider bills at least (the input tokens), now spent.
            uncertain_usd: what it may also bill (the output it may have generated): kept
                counted against the cap as ``uncertain`` until a late ``commit``.

        Raises:
            ConfigurationError: an amount is negative or not finite.
            RuntimeError: the reservation was already settled.
        """
        billed = _to_nano(billed_usd, "billed_usd")
        uncertain = _to_nano(uncertain_usd, "uncertain_usd")
        self._ledger._settle(self, _CUT_OFF, billed, uncertain)

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
        state = ("held", "committed", "released", "cut off")[self._state]
        return f"Reservation(agent={self.agent!r}, estimate_usd={self.estimate_usd:.6g}, {state})"


class _Waiter:
    """One queued admission: what it asks, the calls it runs inside, how to wake it."""

    __slots__ = (
        "agent",
        "estimate",
        "future",
        "granted",
        "inside",
        "loop",
        "pinned",
        "refusal",
        "unknown_cost",
    )

    def __init__(
        self,
        agent: str,
        estimate: int,
        unknown_cost: bool,
        inside: tuple[Reservation, ...],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.agent = agent
        self.estimate = estimate
        self.unknown_cost = unknown_cost
        self.inside = inside
        self.pinned = sum(r._estimate_nano for r in inside if not r.settled)
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted: Reservation | None = None
        self.refusal: tuple[int, int, int] | None = None  # spent, uncertain, reserved


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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
        self._limit_nano = (
            None if limit_usd is None else _to_nano(limit_usd, "CostLedger limit_usd")
        )
        self._limit_usd = limit_usd
        self._lock = threading.Lock()
        self._spent = 0
        self._reserved = 0
        self._uncertain = 0
        self._refused = 0
        self._refused_calls = 0
        self._overshoot = 0
        self._overshoot_calls = 0
        self._committed_calls = 0
        self._released_calls = 0
        self._cut_off_calls = 0
        self._in_flight = 0
        self._holding = 0  # reservations in flight that hold money (estimate > 0)
        self._blocked = 0  # ... of which calls queued inside them wait for room
        self._waiters: deque[_Waiter] = deque()
        self._by_agent: dict[str, int] = {}

    # ------------------------------------------------------------------ admission

    def _fits(self, estimate: int, unknown_cost: bool) -> bool:
        limit = self._limit_nano
        if limit is None:
            return True
        used = self._spent + self._uncertain + self._reserved
        # A call whose cost is known only afterwards still needs room left: once the
        # budget is used up, nothing more starts.
        return used + estimate <= limit and not (unknown_cost and used >= limit)

    def _never_fits(self, estimate: int, unknown_cost: bool, pinned: int) -> bool:
        """Whether no settlement of the calls in flight could make room: what is spent or
        uncertain stays, and so do the reservations of the calls it runs inside."""
        limit = self._limit_nano
        if limit is None:
            return False
        floor = self._spent + self._uncertain + pinned
        return floor + estimate > limit or (unknown_cost and floor >= limit)

    def _grant(self, agent: str, estimate: int) -> Reservation:
        self._reserved += estimate
        self._in_flight += 1
        if estimate:
            self._holding += 1
        return Reservation(self, agent, estimate)

    def _refuse(self, estimate: int) -> tuple[int, int, int]:
        self._refused += estimate
        self._refused_calls += 1
        return self._spent, self._uncertain, self._reserved

    def _error(
        self,
        agent: str,
        estimate: int,
        unknown_cost: bool,
        numbers: tuple[int, int, int],
        waited_s: float = 0.0,
    ) -> BudgetExceeded:
        spent, uncertain, reserved = numbers
        assert self._limit_nano is not None
        return BudgetExceeded(
            agent=agent,
            spent_usd=_to_usd(spent),
            reserved_usd=_to_usd(reserved),
            estimate_usd=_to_usd(estimate),
            limit_usd=_to_usd(self._limit_nano),
            unknown_cost=unknown_cost,
            uncertain_usd=_to_usd(uncertain),
            waited_s=waited_s,
        )

    def reserve(
        self, *, agent: str, estimate_usd: float, unknown_cost: bool = False
    ) -> Reservation:
        """Hold ``estimate_usd`` for one call now, or refuse it if it does not fit now.

        Synchronous and atomic: callers in tasks or threads cannot both take the last room.
        It does not wait for calls in flight (see ``admit``) and does not queue.

        Args:
            agent: the sub-agent name (for per-agent totals and the error).
            estimate_usd: the call's worst-case cost.
            unknown_cost: the cost is known only after the call (an agent with no model):
                it is admitted only while budget remains.

        Raises:
            BudgetExceeded: ``spent + uncertain + reserved + estimate > limit``; the refused
                estimate is added to ``refused_usd``.
            ConfigurationError: ``estimate_usd`` is negative or not finite.
        """
        estimate = _to_nano(estimate_usd, "estimate_usd")
        with self._lock:
            if self._fits(estimate, unknown_cost):
                return self._grant(agent, estimate)
            numbers = self._refuse(estimate)
        # Built outside the lock: formatting the message needs no shared state.
        raise self._error(agent, estimate, unknown_cost, numbers)

    def try_admit(
        self, *, agent: str, estimate_usd: float, unknown_cost: bool = False
    ) -> Reservation | None:
        """``admit`` when it would not wait: the reservation if it fits now and nobody is
        queued ahead of it, else ``None`` (then ``await admit(...)``, which queues or
        refuses). Never refuses, never queues.

        Raises:
            ConfigurationError: ``estimate_usd`` is negative or not finite.
        """
        estimate = _to_nano(estimate_usd, "estimate_usd")
        with self._lock:
            if not self._waiters and self._fits(estimate, unknown_cost):
                return self._grant(agent, estimate)
        return None

    async def admit(
        self,
        *,
        agent: str,
        estimate_usd: float,
        unknown_cost: bool = False,
        inside: Sequence[Reservation] = (),
        timeout_s: float | None = None,
    ) -> Reservation:
        """Hold ``estimate_usd`` for one call, waiting (first in, first out) for calls in
        flight to settle when it does not fit yet. Nothing polls: a settlement wakes the
        waiters it makes room for.

        Args:
            agent: the sub-agent name.
            estimate_usd: the call's worst-case cost.
            unknown_cost: see ``reserve``.
            inside: reservations of the calls this one runs inside (a nested dispatch's
                parents): they cannot settle before it does, so they never count as room
                that may come back.
            timeout_s: the longest wait; ``None`` waits as long as room may come back.

        Raises:
            BudgetExceeded: it can never fit, every call in flight waits on queued calls,
                or ``timeout_s`` passed (``waited_s`` says how long it waited).
            ConfigurationError: ``estimate_usd`` is negative or not finite.
            asyncio.CancelledError: the caller was cancelled while waiting (nothing is
                held afterwards).
        """
        estimate = _to_nano(estimate_usd, "estimate_usd")
        with self._lock:
            if not self._waiters and self._fits(estimate, unknown_cost):
                return self._grant(agent, estimate)
            # Each enclosing call counts once, however often it is listed.
            mine = tuple(dict.fromkeys(r for r in inside if r._ledger is self))
            pinned = sum(r._estimate_nano for r in mine if not r.settled)
            if self._never_fits(estimate, unknown_cost, pinned):
                numbers = self._refuse(estimate)
                waiter = None
            else:
                waiter = _Waiter(agent, estimate, unknown_cost, mine, asyncio.get_running_loop())
                self._enqueue(waiter)
                self._wake_locked()  # queuing it may leave nothing that can settle
        if waiter is None:
            raise self._error(agent, estimate, unknown_cost, numbers)
        loop = waiter.loop
        started = loop.time()
        try:
            if timeout_s is None:
                await waiter.future
            else:
                async with asyncio.timeout(timeout_s):
                    await waiter.future
        except BaseException as exc:
            timed_out = isinstance(exc, TimeoutError) and timeout_s is not None
            with self._lock:
                granted = waiter.granted
                if waiter.refusal is None and granted is None:
                    self._dequeue(waiter)
                    if timed_out:
                        waiter.refusal = self._refuse(estimate)
                    self._wake_locked()  # the head may have changed
            if timed_out:
                if granted is not None:
                    return granted  # admitted as the time ran out: take it
                assert waiter.refusal is not None
                raise self._error(
                    agent, estimate, unknown_cost, waiter.refusal, loop.time() - started
                ) from None
            if granted is not None:
                granted.release()  # admitted as the wait was cancelled: nothing is held
            raise
        if waiter.granted is not None:
            return waiter.granted
        assert waiter.refusal is not None
        raise self._error(agent, estimate, unknown_cost, waiter.refusal, loop.time() - started)

    def _enqueue(self, waiter: _Waiter) -> None:
        self._waiters.append(waiter)
        for r in waiter.inside:
            if not r.settled and r._estimate_nano:
                r._waiting_below += 1
                if r._waiting_below == 1:
                    self._blocked += 1

    def _dequeue(self, waiter: _Waiter) -> None:
        self._waiters.remove(waiter)
        self._unblock(waiter)

    def _unblock(self, waiter: _Waiter) -> None:
        for r in waiter.inside:
            if r._waiting_below:
                r._waiting_below -= 1
                if r._waiting_below == 0 and not r.settled and r._estimate_nano:
                    self._blocked -= 1

    def _wake_locked(self) -> None:
        """Admit or refuse queued waiters from the head while that is decided (lock held)."""
        waiters = self._waiters
        while waiters:
            head = waiters[0]
            head.pinned = sum(r._estimate_nano for r in head.inside if not r.settled)
            if self._fits(head.estimate, head.unknown_cost):
                head.granted = self._grant(head.agent, head.estimate)
            elif self._never_fits(head.estimate, head.unknown_cost, head.pinned) or (
                self._holding > 0 and self._blocked >= self._holding
            ):
                head.refusal = self._refuse(head.estimate)
            elif self._holding == 0 and self._in_flight == 0:
                head.refusal = self._refuse(head.estimate)  # nothing in flight to wait for
            else:
                return
            waiters.popleft()
            self._unblock(head)
            try:
                head.loop.call_soon_threadsafe(_wake, head.future)
            except RuntimeError:  # its loop is closed: nobody waits any more
                if head.granted is not None:
                    self._settle_locked(head.granted, _RELEASED, 0, 0)

    # ------------------------------------------------------------------ settlement

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
            self._wake_locked()  # may make a queued call one that never fits

    def can_fit(self, estimate_usd: float) -> bool:
        """Whether a reservation of ``estimate_usd`` would be admitted right now.

        Only advisory (another caller may take the room before you reserve); use it to stop
        starting work once nothing more can fit.
        """
        estimate = _to_nano(estimate_usd, "estimate_usd")
        with self._lock:
            return self._fits(estimate, False)

    def _settle(
        self, reservation: Reservation, state: int, amount: int, uncertain: int = 0
    ) -> bool:
        with self._lock:
            settled = self._settle_locked(reservation, state, amount, uncertain)
            if settled:
                self._wake_locked()
            return settled

    def _settle_locked(
        self, reservation: Reservation, state: int, amount: int, uncertain: int
    ) -> bool:
        previous = reservation._state
        agent = reservation.agent
        if previous == _CUT_OFF and state == _COMMITTED:
            # The real usage of a cut-off call arrived: it replaces the amounts held.
            self._spent += amount - reservation._billed_nano
            self._uncertain -= reservation._uncertain_nano
            self._by_agent[agent] = self._by_agent.get(agent, 0) + amount - reservation._billed_nano
            # The room beyond billed + uncertain was freed at the cut-off: using it is overshoot.
            excess = amount - reservation._billed_nano - reservation._uncertain_nano
            if excess > 0 and self._limit_nano is not None:
                self._overshoot += excess
                self._overshoot_calls += 1
            reservation._billed_nano = amount
            reservation._uncertain_nano = 0
            reservation._state = _COMMITTED
            return True
        if previous != _HELD:
            if state == _RELEASED:
                return False
            raise RuntimeError(f"{reservation!r} was already settled; settle it only once")
        reservation._state = state
        estimate = reservation._estimate_nano
        self._reserved -= estimate
        self._in_flight -= 1
        if estimate:
            self._holding -= 1
            if reservation._waiting_below:
                self._blocked -= 1
        if state == _RELEASED:
            self._released_calls += 1
            return True
        self._spent += amount
        self._by_agent[agent] = self._by_agent.get(agent, 0) + amount
        if state == _CUT_OFF:
            self._cut_off_calls += 1
            self._uncertain += uncertain
            if amount + uncertain > estimate and self._limit_nano is not None:
                self._overshoot += amount + uncertain - estimate
                self._overshoot_calls += 1
            reservation._billed_nano = amount
            reservation._uncertain_nano = uncertain
            return True
        self._committed_calls += 1
        # Without a cap nothing was promised, so there is nothing to overshoot.
        if amount > estimate and self._limit_nano is not None:
            self._overshoot += amount - estimate
            self._overshoot_calls += 1
        return True

    # ------------------------------------------------------------------ readings

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
    def uncertain_usd(self) -> float:
        """Output of cut-off calls the provider may have billed (counted against the cap)."""
        return _to_usd(self._uncertain)

    @property
    def remaining_usd(self) -> float:
        """What is left for new reservations; ``inf`` without a cap, never negative."""
        with self._lock:
            return self._remaining_locked()

    def _remaining_locked(self) -> float:
        if self._limit_nano is None:
            return math.inf
        used = self._spent + self._uncertain + self._reserved
        return _to_usd(max(0, self._limit_nano - used))

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
    def waiting(self) -> int:
        """Admissions queued for room right now."""
        return len(self._waiters)

    @property
    def spent_by_agent(self) -> Mapping[str, float]:
        """A read-only copy: agent name -> committed cost in USD."""
        with self._lock:
            return MappingProxyType({k: _to_usd(v) for k, v in self._by_agent.items()})

    def snapshot(self) -> LedgerSnapshot:
        """All counters, read consistently under the lock."""
        with self._lock:
            return LedgerSnapshot(
                limit_usd=self._limit_usd,
                spent_usd=_to_usd(self._spent),
                reserved_usd=_to_usd(self._reserved),
                remaining_usd=self._remaining_locked(),
                uncertain_usd=_to_usd(self._uncertain),
                cut_off_calls=self._cut_off_calls,
                waiting=len(self._waiters),
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
        uncertain = f", uncertain_usd={s.uncertain_usd:.6g}" if s.uncertain_usd else ""
        return (
            f"CostLedger(limit_usd={limit}, spent_usd={s.spent_usd:.6g}{uncertain}, "
            f"reserved_usd={s.reserved_usd:.6g}, in_flight={s.in_flight}, "
            f"waiting={s.waiting}, committed_calls={s.committed_calls}, "
            f"refused_calls={s.refused_calls}, refused_usd={s.refused_usd:.6g}, "
            f"overshoot_usd={s.overshoot_usd:.6g})"
        )
