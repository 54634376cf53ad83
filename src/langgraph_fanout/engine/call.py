"""The one call pipeline: every sub-agent call of the engine, the graphs and the tools.

::

    Task -> screen arguments (injection flags or refusal; optional input redaction)
         -> cache (idempotency key; a hit returns at once, identical calls in flight share one)
         -> recovery (retries, then fallbacks in order; breaker asked before each attempt)
              per attempt: count -> estimate + reserve budget -> rate limit -> slot
                           -> invoke (timeout, usage captured) -> settle cost
              (with a ``HedgePolicy``, a slow attempt gets a duplicate; the first wins)
         -> redact output -> store -> SubAgentResult

Nothing else in the package calls a sub-agent. A ``CallPipeline`` is built per dispatch
from the shared run state and the dispatch's ``Guards``; calling it with a ``Task`` returns
that input's one result. Cancellation is never swallowed here: reservations and slots are
settled and the ``CancelledError`` goes on to the engine, which decides what it means.
"""

from __future__ import annotations

import asyncio
import random
import warnings
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import RunnableConfig

from langgraph_fanout.core.prompts import PromptTemplate
from langgraph_fanout.core.results import Status, SubAgentResult
from langgraph_fanout.engine.agents import SubAgent
from langgraph_fanout.engine.estimate import CostEstimator, WorstCase
from langgraph_fanout.errors import (
    AgentError,
    CacheKeyError,
    CallCancelled,
    CallError,
    CallTimeout,
    InjectionDetected,
    InvalidItem,
    OutputLimitWarning,
    RefusedError,
    UnestimatedCostWarning,
    UnpricedModel,
    UnpricedModelWarning,
)
from langgraph_fanout.guards.breaker import BreakerRegistry, default_breakers
from langgraph_fanout.guards.cache import (
    CacheEntry,
    CacheMode,
    CacheSource,
    IdempotencyCache,
    agent_fingerprint,
    keyed_by,
)
from langgraph_fanout.guards.classify import retry_after_s as provider_retry_after
from langgraph_fanout.guards.hedging import HedgePolicy, HedgeTracker
from langgraph_fanout.guards.ledger import CostLedger, Reservation, UsageCapture
from langgraph_fanout.guards.limits import (
    Scope,
    SharedRun,
    SlotLease,
    current_scope,
    enter_scope,
    exit_scope,
)
from langgraph_fanout.guards.pricing import Price
from langgraph_fanout.guards.ratelimit import EndpointPauses, default_pauses
from langgraph_fanout.guards.recovery import ErrorRecoveryPolicy, run_with_recovery
from langgraph_fanout.guards.screening import ScreeningPolicy
from langgraph_fanout.guards.tokens import TokenCounter


@dataclass(slots=True, kw_only=True)
class Task:
    """One input of a dispatch: which agent, what prompt, which sample (read-only; not
    frozen only because it is built once per input on the hot path).

    Args:
        index: position of the input (results keep it).
        agent: the sub-agent to call.
        prompt: the rendered input (a string, messages, or whatever the agent takes).
        arguments: the untrusted arguments the prompt was rendered from (for screening).
        template: the template ``prompt`` was rendered from (to re-render redacted arguments).
        sample: sample index; distinct voters of one question have distinct samples.
        question: the question this input is a voter of (the argument set its samples
            share); ``None``: its own (``index``).
        key: an optional user idempotency key.
        invalid: why this input cannot be called (it then ends as ``InvalidItem``).
    """

    index: int
    agent: SubAgent
    prompt: Any
    arguments: Mapping[str, Any] | None = None
    template: PromptTemplate | None = None
    sample: int = 0
    key: str | None = None
    invalid: str | None = None
    question: int | None = None


@dataclass(slots=True, kw_only=True)
class PipelineGuards:
    """How one dispatch configures the pipeline's guards (what is shared lives in ``SharedRun``).

    Args:
        policy: retry/fallback policy; ``ErrorRecoveryPolicy()`` retries transient errors twice.
        resolve: turns a fallback name into a ``SubAgent`` (the dispatch's agent registry).
        breakers: circuit breakers by what is called (process-wide by default).
        pauses: the providers' Retry-After pauses by endpoint (process-wide by default).
        cache: the idempotency cache, or ``None`` for no caching.
        cache_mode: use, refresh or bypass the cache.
        screening: argument screening and output redaction, or ``None`` for neither.
        prices: model id -> ``Price`` overrides.
        counter: token counter for estimates (the default one when ``None``).
        sleep: the async sleep used for backoff (inject a fake in tests).
        rng: jitter source.
        hedge: when to start a duplicate of a slow call (``None``: never).
    """

    policy: ErrorRecoveryPolicy = field(default_factory=ErrorRecoveryPolicy)
    resolve: Callable[[Any], SubAgent] = SubAgent.of
    breakers: BreakerRegistry = field(default_factory=lambda: default_breakers)
    pauses: EndpointPauses = field(default_factory=lambda: default_pauses)
    cache: IdempotencyCache | None = None
    cache_mode: CacheMode = CacheMode.USE
    screening: ScreeningPolicy | None = None
    prices: Mapping[str, Price] | None = None
    counter: TokenCounter | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random | None = None
    hedge: HedgePolicy | None = None


@dataclass(slots=True)
class _Account:
    """What the attempts of one call used, added up."""

    cost: float = 0.0
    estimate: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    rate_wait: float = 0.0
    budget_wait: float = 0.0
    hedges: int = 0
    hedge_won: bool = False
    prompt: Any = None


@dataclass(slots=True, eq=False)
class _Plan:
    """What a pipeline asks once about one of its agents, not on every call."""

    agent: SubAgent
    name: str
    price: Price | None
    unknown_cost: bool  # no price and no cost_per_call_usd: known only from its usage
    counts: bool  # estimating one of its calls counts the prompt's tokens
    circuit: Hashable  # its breaker's key, and the endpoint its Retry-After pauses
    fingerprint: str | None = None  # its identity as the cache key hashes it, once asked


_MAX_PLANS = 1024  # plans a pipeline keeps (each holds its agent)


def _plan_name(plan: _Plan) -> str:
    return plan.name


def _plan_circuit(plan: _Plan) -> Hashable:
    return plan.circuit


class _Failed(Exception):
    """Carries a failed result out of the cache's compute (failures are never stored)."""

    def __init__(self, result: SubAgentResult) -> None:
        super().__init__(result.error)
        self.result = result


def _extra(capture: _CallUsage | None) -> list[Reservation]:
    """The reservations of the further model calls an attempt was admitted for."""
    if capture is None or capture.inner is None:
        return []
    return capture.inner.extra


class _InnerCalls:
    """Admits the model calls an agent makes inside one attempt: those its reservation
    covers (``max_model_calls``, else one), then each further one against the budget as it
    starts, refused with ``BudgetExceeded`` inside the agent when it does not fit."""

    __slots__ = ("agent", "covered", "extra", "ledger", "per_call_usd", "started")

    def __init__(self, ledger: CostLedger, agent: str, per_call_usd: float, covered: int) -> None:
        self.ledger = ledger
        self.agent = agent
        self.per_call_usd = per_call_usd
        self.covered = covered
        self.extra: list[Reservation] = []
        self.started = 0

    def admit(self) -> None:
        self.started += 1
        if self.started > self.covered:
            self.extra.append(self.ledger.reserve(agent=self.agent, estimate_usd=self.per_call_usd))


class _CallUsage(UsageCapture):
    """Usage of the model calls made by *this* call, not by dispatches nested inside it.

    LangChain hands a parent's callbacks down to everything that runs inside it, nested
    dispatches included; those bill their own calls, so runs started under another scope
    are ignored here (no double billing). With ``inner`` it admits each model call as it
    starts (a refusal is raised into the agent: ``raise_error``).
    """

    raise_error = True  # only ``_InnerCalls.admit`` raises: a refusal must stop the call

    def __init__(self, scope: Scope, inner: _InnerCalls | None = None) -> None:
        super().__init__()
        self._scope = scope
        self._ours: set[UUID] = set()
        self.inner = inner

    def _started(self, run_id: UUID, metadata: dict[str, Any] | None) -> None:
        if current_scope() is self._scope:
            if self.inner is not None:
                self.inner.admit()
            self._ours.add(run_id)
            super()._started(run_id, metadata)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id in self._ours:
            self._ours.discard(run_id)
            super().on_llm_end(response, run_id=run_id, **kwargs)


class CallPipeline:
    """Runs a ``Task`` through the guards and returns its ``SubAgentResult``."""

    def __init__(
        self,
        *,
        run: SharedRun,
        depth: int,
        config: RunnableConfig | None,
        guards: PipelineGuards,
        timeout_s: float | None = None,
    ) -> None:
        self._run = run
        self._depth = depth
        self._config = config
        self._guards = guards
        self._timeout = timeout_s
        self._estimator = CostEstimator(
            default_max_output_tokens=run.limits.default_max_output_tokens,
            prices=guards.prices,
            counter=guards.counter,
            learned=run.input_ratio,
        )
        self._plans: dict[int, _Plan] = {}  # id(agent) -> its plan (which holds the agent)
        self._unpriced_warned: set[str] = set()
        self.hedging = None if guards.hedge is None else HedgeTracker(guards.hedge)
        self._token_limited = (
            run.limiter is not None and run.limiter.limits.tokens_per_minute is not None
        )
        self._needs_estimate = run.ledger.limit_usd is not None or self._token_limited
        self._fallbacks = tuple(self._plan(guards.resolve(f)) for f in guards.policy.fallback_tools)

    def _plan(self, agent: SubAgent) -> _Plan:
        plan = self._plans.get(id(agent))
        if plan is None or plan.agent is not agent:
            if len(self._plans) >= _MAX_PLANS:  # a stream of new agents: stay bounded
                self._plans.clear()
            price = self._estimator.price(agent)
            plan = self._plans[id(agent)] = _Plan(
                agent=agent,
                name=agent.name,
                price=price,
                unknown_cost=price is None and agent.cost_per_call_usd is None,
                counts=price is not None or self._token_limited,
                circuit=agent.circuit_key(),
            )
        return plan

    async def __call__(self, task: Task, config: RunnableConfig | None = None) -> SubAgentResult:
        """The one result of ``task``; ``config`` replaces the dispatch's for this call
        (a graph node's own callbacks)."""
        if config is None:
            config = self._config
        if task.invalid is not None:
            return ended_with(task, InvalidItem(index=task.index, reason=task.invalid))
        prompt = task.prompt
        flags: tuple[str, ...] = ()
        screening = self._guards.screening
        if screening is not None and task.arguments is not None:
            try:
                if screening.scanners:  # a scanner may be async: awaited here, in the loop
                    args, found, _ = await screening.ascreen_input(task.arguments)
                else:
                    args, found, _ = screening.screen_input(task.arguments)
            except InjectionDetected as error:
                return ended_with(task, error)
            except Exception as exc:  # arguments the screen cannot walk (nested too deep)
                reason = f"the arguments could not be screened: {exc!r}"
                return ended_with(task, InvalidItem(index=task.index, reason=reason))
            flags = tuple(f"injection:{f.field}:{f.severity}:{','.join(f.markers)}" for f in found)
            if args is not task.arguments and task.template is not None:
                prompt = task.template.render(args)
        cache = self._guards.cache
        if cache is None:
            result = await self._recover(task, prompt, config)
        else:
            result = await self._cached(cache, task, prompt, config)
        if flags:
            result.flags = flags + result.flags
        return result

    async def _cached(
        self, cache: IdempotencyCache, task: Task, prompt: Any, config: RunnableConfig | None
    ) -> SubAgentResult:
        agent = task.agent
        try:
            plan = self._plan(agent)
            fingerprint = plan.fingerprint
            if fingerprint is None:
                fingerprint = plan.fingerprint = agent_fingerprint(agent.identity())
            key = keyed_by(fingerprint, prompt=prompt, sample=task.sample, user_key=task.key)
        except CacheKeyError as error:
            return ended_with(task, error)
        mine: list[SubAgentResult] = []

        async def compute() -> CacheEntry:
            result = await self._recover(task, prompt, config)
            mine.append(result)
            if not result.ok:
                raise _Failed(result)
            return CacheEntry(
                output=result.output,
                agent_used=result.agent_used or agent.name,
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
                cost_usd=result.cost_usd,
            )

        try:
            entry, source = await cache.run(key, compute, mode=self._guards.cache_mode)
        except _Failed as failed:
            if mine:
                return mine[0]
            shared = failed.result.error
            if isinstance(shared, RefusedError | CallCancelled | CallTimeout):
                # The leader was stopped by its own dispatch (budget, limits, deadline, its
                # timeout): that says nothing about the agent, so make our own call.
                return await self._recover(task, prompt, config)
            # The agent itself failed for the leader: share that, as a success would be
            # shared, rather than N followers repeating the same failing call.
            return SubAgentResult.from_error(
                index=task.index,
                agent=agent.name,
                error=shared or CallError("shared call failed"),
                sample=task.sample,
                question=task.question,
                cache_hit=True,
            )
        if source is CacheSource.MISS and mine:
            return mine[0]
        return SubAgentResult(
            index=task.index,
            agent=agent.name,
            status=Status.OK,
            output=entry.output,
            agent_used=entry.agent_used,
            cache_hit=True,
            sample=task.sample,
            question=task.question,
        )

    async def _recover(
        self, task: Task, prompt: Any, config: RunnableConfig | None
    ) -> SubAgentResult:
        loop = asyncio.get_running_loop()
        guards = self._guards
        account = _Account()
        started = loop.time()

        # The attempt of one agent, the plan its one argument (a partial: no extra frame).
        attempt: Callable[[_Plan], Awaitable[Any]] = (
            partial(self._attempt, task, prompt, account, config)
            if self.hedging is None
            else partial(self._hedged, self.hedging, task, prompt, account, config)
        )
        outcome = await run_with_recovery(
            attempt,
            primary=self._plan(task.agent),
            fallbacks=self._fallbacks,
            policy=guards.policy,
            name_of=_plan_name,
            key_of=_plan_circuit,
            breakers=guards.breakers,
            sleep=guards.sleep,
            rng=guards.rng,
            clock=loop.time,
        )
        error = outcome.error
        output = outcome.output
        flags: tuple[str, ...] = ()
        screening = guards.screening
        if error is None and screening is not None and screening.redact_outputs:
            try:
                output, report = screening.screen_output(output)
            except Exception as exc:  # a redactor that fails: the output is withheld
                reason = f"the output could not be redacted: {exc!r}"
                error, output = InvalidItem(index=task.index, reason=reason), None
            else:
                if report.items:  # already sorted (kind, count) pairs
                    flags = tuple(f"redacted:{kind}:{n}" for kind, n in report.items)
        return SubAgentResult(
            index=task.index,
            agent=task.agent.name,
            status=Status.OK if error is None else SubAgentResult.status_of(error),
            output=output,
            error=error,
            duration_s=max(0.0, loop.time() - started - account.rate_wait - account.budget_wait),
            attempts=outcome.attempts,
            agent_used=outcome.agent_used,
            cost_usd=account.cost,
            estimated_cost_usd=account.estimate,
            input_tokens=account.tokens_in,
            output_tokens=account.tokens_out,
            rate_wait_s=account.rate_wait,
            budget_wait_s=account.budget_wait,
            sample=task.sample,
            question=task.question,
            flags=flags,
            breakers_opened=outcome.breaker_opened,
            hedges=account.hedges,
            hedge_won=account.hedge_won,
        )

    async def _hedged(
        self,
        tracker: HedgeTracker,
        task: Task,
        prompt: Any,
        account: _Account,
        config: RunnableConfig | None,
        plan: _Plan,
    ) -> Any:
        """An attempt that gets a duplicate if it runs past the hedge threshold.

        The first copy to succeed wins; the other is cancelled (its reservation released)
        and awaited, so no task outlives the attempt.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        tracker.started()
        threshold = tracker.threshold_s()
        # Each copy records when it was sent: the clock starts then, not while it waits
        # for the rate limiter or a slot (a queued call is not a slow call).
        sent: dict[asyncio.Task[Any], list[float]] = {}
        first_sent: list[float] = []
        first = asyncio.create_task(
            self._attempt(task, prompt, account, config, plan, sent=first_sent)
        )
        sent[first] = first_sent
        copies = [first]
        try:
            if threshold is not None:
                while not first.done():
                    left = threshold if not first_sent else first_sent[0] + threshold - loop.time()
                    if first_sent and left <= 0:
                        break
                    await asyncio.wait(copies, timeout=left)
                if not first.done() and tracker.try_launch():
                    account.hedges += 1
                    hedge_sent: list[float] = []
                    hedge = asyncio.create_task(
                        self._attempt(
                            task, prompt, account, config, plan, hedge=True, sent=hedge_sent
                        )
                    )
                    sent[hedge] = hedge_sent
                    copies.append(hedge)
            pending: set[asyncio.Task[Any]] = set(copies)
            error: BaseException | None = None
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for copy in sorted(done, key=copies.index):
                    failure = copy.exception()
                    if failure is None:
                        own = sent[copy]
                        tracker.observe(loop.time() - (own[0] if own else started))
                        if copy is not first:
                            tracker.record_win()
                            account.hedge_won = True
                        return copy.result()
                    error = error or failure
            assert error is not None
            raise error
        finally:
            for copy in copies:
                if not copy.done():
                    copy.cancel()
            await asyncio.wait(copies)
            for copy in copies:
                if not copy.cancelled():
                    copy.exception()  # retrieved: a loser's error is not "never retrieved"

    async def _attempt(
        self,
        task: Task,
        prompt: Any,
        account: _Account,
        config: RunnableConfig | None,
        plan: _Plan,
        *,
        hedge: bool = False,
        sent: list[float] | None = None,
    ) -> Any:
        """One attempt of one agent: count, reserve, wait for the rate, take a slot, invoke.

        A hedge takes the next free slot ahead of calls not started yet: it exists to cut
        the tail, which waiting in line would defeat.
        """
        run = self._run
        agent = plan.agent
        run.count_agent()
        estimate, tokens, worst = 0.0, 0, None
        if self._needs_estimate:
            if agent.model in _COUNTED_MODELS or not plan.counts:
                estimate, tokens, worst = self._estimate(plan, prompt)
            else:
                # The first count for a model loads (and may seed) tiktoken's encoding: file
                # I/O and ~0.3 s of CPU that must not block the event loop.
                estimate, tokens, worst = await asyncio.to_thread(self._estimate, plan, prompt)
                _COUNTED_MODELS.add(agent.model)
        account.estimate = estimate  # kept on a refusal too: the report's "would have cost"
        parent = current_scope()
        inside = () if parent is None else parent.reservations
        # Under a budget every attempt is admitted by the ledger, a zero estimate included
        # (a call of unknown cost needs room left); without one there is nothing to hold.
        # Admission waits for calls in flight to free room, holding no slot meanwhile.
        reservation: Reservation | None = None
        loop = asyncio.get_running_loop()
        ledger = run.ledger
        if estimate or ledger.limit_usd is not None:
            reservation = ledger.try_admit(
                agent=plan.name, estimate_usd=estimate, unknown_cost=plan.unknown_cost
            )
            if reservation is None:  # it must wait for room, or be refused
                asked = loop.time()
                try:
                    reservation = await ledger.admit(
                        agent=plan.name,
                        estimate_usd=estimate,
                        unknown_cost=plan.unknown_cost,
                        inside=inside,
                        timeout_s=self._timeout,
                    )
                finally:
                    account.budget_wait += loop.time() - asked
        account.prompt = prompt
        capture: _CallUsage | None = None
        endpoint = plan.circuit
        pauses = self._guards.pauses
        invoked = False
        try:
            # The endpoint's Retry-After holds this call too, rate limit or not (and before
            # it takes a slot, so calls to other endpoints go on meanwhile).
            if pauses.paused(endpoint):
                account.rate_wait += await pauses.wait(endpoint, rng=self._guards.rng)
            if run.limiter is not None:
                account.rate_wait += await run.limiter.acquire(tokens)
            lease = SlotLease(run.concurrency)
            if not lease.try_acquire():
                await lease.acquire(first=hedge)
            held = inside if reservation is None or not estimate else (*inside, reservation)
            scope = Scope(run, self._depth, lease, loop, held)
            token = enter_scope(scope)
            if sent is not None:
                sent.append(loop.time())
            try:
                if agent.kind == "chat_model":
                    # One model call: its usage comes back in its AIMessage, read below
                    # without a callback handler in LangChain's dispatch.
                    config = _with_call(config, None, agent, task)
                elif agent.accepts_config:
                    capture = _CallUsage(scope, self._inner_calls(agent, reservation))
                    config = _with_call(config, capture, agent, task)
                invoked = True
                output = await self._invoke(agent, prompt, config)
                if agent.kind == "chat_model":
                    capture = _CallUsage(scope)
                    capture.record_message(output, agent.model)
            finally:
                exit_scope(token)
                lease.release()
        except BaseException as exc:
            self._settle_failed(agent, reservation, capture, exc, invoked, account, worst)
            if isinstance(exc, Exception):
                wait = provider_retry_after(exc)
                if wait is not None:
                    wait = min(max(0.0, wait), self._guards.policy.retry_after_cap_s)
                    pauses.pause(endpoint, wait)
                    if run.limiter is not None:
                        run.limiter.pause(wait)
            raise
        if capture is not None or reservation is not None:
            cost = self._settle(agent, capture, estimate, account, worst)
            self._charge(agent, reservation, cost, account, _extra(capture))
        return output

    def _inner_calls(self, agent: SubAgent, reservation: Reservation | None) -> _InnerCalls | None:
        """Per-call admission for an agent that is not one model call (a graph, a chain)
        whose model calls have a known worst case."""
        if reservation is None or agent.kind == "chat_model" or not reservation.estimate_usd:
            return None
        if self._price(agent) is None or agent.cost_per_call_usd is not None:
            return None
        covered = agent.max_model_calls or 1
        per_call = reservation.estimate_usd / covered
        return _InnerCalls(self._run.ledger, agent.name, per_call, covered)

    def _settle_failed(
        self,
        agent: SubAgent,
        reservation: Reservation | None,
        capture: _CallUsage | None,
        exc: BaseException,
        invoked: bool,
        account: _Account,
        worst: WorstCase | None,
    ) -> None:
        """Bill an attempt that ended without an output as the provider bills it.

        A request cut off in flight (cancelled, timed out) was received and is billed at
        least its input; the rest of its worst case stays counted as ``uncertain`` output.
        A call that failed with an answer (an error status) is billed what it reported, and
        one that never reached the agent nothing.
        """
        reported = capture is not None and capture.total().total_tokens > 0
        cut = invoked and isinstance(exc, asyncio.CancelledError | TimeoutError)
        if (
            cut
            and reservation is not None
            and (capture is None or capture.pending_calls or not reported)
        ):
            known = self._settle(agent, capture, 0.0, account, worst) if reported else 0.0
            if agent.cost_per_call_usd is not None:
                input_usd = agent.cost_per_call_usd
            else:
                input_usd = 0.0 if worst is None else worst.input_usd
            billed = max(known, input_usd)
            reservation.cut_off(billed, max(0.0, reservation.estimate_usd - billed))
            for more in _extra(capture):  # further model calls it had started
                more.cut_off(0.0, more.estimate_usd)
            account.cost += billed
        elif reported:
            cost = self._settle(
                agent, capture, reservation.estimate_usd if reservation else 0.0, account, worst
            )
            self._charge(agent, reservation, cost, account, _extra(capture))
        elif reservation is not None:
            # Refused, failed with an error answer, or never sent: nothing was billed.
            reservation.release()
            for more in _extra(capture):
                more.release()

    def _charge(
        self,
        agent: SubAgent,
        reservation: Reservation | None,
        cost: float,
        account: _Account,
        extra: Sequence[Reservation] = (),
    ) -> None:
        """Settle an attempt's reservation with its real cost (spread over the reservations
        of further model calls it was admitted for, the last one taking any excess)."""
        account.cost += cost
        if reservation is None:
            self._run.ledger.charge(agent=agent.name, actual_usd=cost)
            return
        if not extra:
            reservation.commit(cost)
            return
        held = [reservation, *extra]
        for part in held[:-1]:
            share = min(cost, part.estimate_usd)
            part.commit(share)
            cost -= share
        held[-1].commit(cost)

    async def _invoke(self, agent: SubAgent, prompt: Any, config: RunnableConfig | None) -> Any:
        try:
            if self._timeout is None:
                return await agent.ainvoke(prompt, config)
            try:
                async with asyncio.timeout(self._timeout) as cm:
                    return await agent.ainvoke(prompt, config)
            except TimeoutError:
                if cm.expired():
                    raise CallTimeout(agent=agent.name, timeout_s=self._timeout) from None
                raise
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling() == 0:
                # Nobody cancelled this task: the agent leaked a cancellation of its own
                # (an inner future it awaited was cancelled). That is the agent's failure.
                raise AgentError(
                    agent=agent.name, cause_type="CancelledError", detail="cancelled inside"
                ) from exc
            raise

    def worst_case_usd(self, task: Task) -> float:
        """The worst-case cost of one attempt of ``task`` (what its reservation will hold)."""
        return self._estimate(self._plan(task.agent), task.prompt)[0]

    def _price(self, agent: SubAgent) -> Price | None:
        return self._estimator.price(agent)

    def _estimate(self, plan: _Plan, prompt: Any) -> tuple[float, int, WorstCase | None]:
        """Worst-case USD and tokens of one attempt (``CostEstimator.worst_case``), and the
        worst case itself when one was counted."""
        agent = plan.agent
        if agent.cost_per_call_usd is not None:
            cost = agent.cost_per_call_usd
            if not self._token_limited:
                return cost, 0, None
            return cost, self._estimator.worst_case(agent, prompt).tokens, None
        if plan.price is None:
            budget = self._run.ledger.limit_usd is not None
            if agent.model is not None or agent.kind == "chat_model":
                self._unpriced(agent)
            elif not agent.accepts_config and budget:
                self._uncountable(agent)
            # Not a model itself (a callable or graph): the models it calls are billed
            # from real usage when it returns, and the cap can be overshot meanwhile.
            elif agent.accepts_config and budget:
                self._warn_unestimated(agent)
            if not self._token_limited:
                return 0.0, 0, None  # tokens only matter to a token-rate limiter
        worst = self._estimator.worst_case(agent, prompt)
        return worst.usd, worst.tokens, worst

    def _warn_output(self, agent: SubAgent, reported: int) -> None:
        warnings.warn(
            f"model {agent.model!r} of agent {agent.name!r} returned {reported} output "
            f"tokens, more than its max of {agent.max_output_tokens or 'the default'}: the "
            "excess is charged and counted as overshoot, and the rest of the run reserves "
            f"{reported} output tokens for its calls (does the server ignore max_tokens?)",
            OutputLimitWarning,
            stacklevel=2,
        )

    def _uncountable(self, agent: SubAgent) -> None:
        """A plain function under a budget: its cost can be neither estimated nor counted."""
        if not self._run.limits.allow_unpriced:
            raise UnpricedModel(agent=agent.name, model=None)
        if agent.name not in self._unpriced_warned:
            self._unpriced_warned.add(agent.name)
            warnings.warn(
                f"agent {agent.name!r} is a function with no cost_per_call_usd and no config "
                "argument, so its spend cannot be counted: allow_unpriced=True runs it at "
                "$0 under the budget",
                UnpricedModelWarning,
                stacklevel=2,
            )

    def _warn_unestimated(self, agent: SubAgent) -> None:
        if agent.name in self._unpriced_warned:
            return
        self._unpriced_warned.add(agent.name)
        warnings.warn(
            f"agent {agent.name!r} states no model, so its worst case is unknown before it "
            "runs: its calls are admitted while budget remains and billed from real usage "
            "(overshoot is reported). Declare SubAgent.of(agent, model=..., "
            "max_output_tokens=...) to reserve a worst case.",
            UnestimatedCostWarning,
            stacklevel=2,
        )

    def _unpriced(self, agent: SubAgent) -> None:
        if self._run.ledger.limit_usd is not None and not self._run.limits.allow_unpriced:
            raise UnpricedModel(agent=agent.name, model=agent.model)
        if agent.name not in self._unpriced_warned:
            self._unpriced_warned.add(agent.name)
            warnings.warn(
                f"no price known for model {agent.model!r} of agent {agent.name!r}: "
                "its calls are counted at zero cost",
                UnpricedModelWarning,
                stacklevel=2,
            )

    def _settle(
        self,
        agent: SubAgent,
        capture: _CallUsage | None,
        estimate: float,
        account: _Account,
        worst: WorstCase | None,
    ) -> float:
        """The real cost of an attempt, from the usage its model calls reported (or the
        agent's own ``cost_per_call_usd``); ``worst`` is this attempt's estimate."""
        if capture is None:
            return agent.cost_per_call_usd or 0.0
        total = capture.total()
        account.tokens_in += total.input_tokens
        account.tokens_out += total.output_tokens
        if agent.kind == "chat_model" and self._needs_estimate:
            if total.input_tokens:
                counted = None if worst is None else worst.counted
                self._estimator.learn(agent, account.prompt, total.input_tokens, counted)
            if self._estimator.learn_output(agent, total.output_tokens):
                self._warn_output(agent, total.output_tokens)
        if agent.cost_per_call_usd is not None:
            return agent.cost_per_call_usd
        if total.total_tokens == 0:
            # Nothing reported: a model that ran without usage metadata is charged its
            # worst case rather than nothing.
            return estimate if capture.unreported_calls else 0.0
        cost = capture.cost(self._price_for_capture(agent))
        if cost is None:
            # Without a budget nothing is left unenforced: the cost is just unknown (0).
            if self._run.ledger.limit_usd is not None and agent.name not in self._unpriced_warned:
                self._unpriced_warned.add(agent.name)
                warnings.warn(
                    f"agent {agent.name!r} called a model with no known price: "
                    "charged its estimate",
                    UnpricedModelWarning,
                    stacklevel=2,
                )
            return estimate
        return cost

    def _price_for_capture(self, agent: SubAgent) -> Callable[[str | None], Price | None]:
        own = self._price(agent)

        def price_for(model: str | None) -> Price | None:
            if own is not None and (model is None or model == agent.model):
                return own
            return self._estimator.price_of_model(model)

        return price_for


_COUNTED_MODELS: set[str | None] = set()  # models whose encoding is loaded in this process


def ended_with(task: Task, error: CallError) -> SubAgentResult:
    """The result of ``task`` ended by ``error`` before or without an answer."""
    return SubAgentResult.from_error(
        index=task.index,
        agent=task.agent.name,
        error=error,
        sample=task.sample,
        question=task.question,
    )


def _with_call(
    config: RunnableConfig | None, capture: UsageCapture | None, agent: SubAgent, task: Task
) -> RunnableConfig:
    """The dispatch's config plus this call's usage capture, run name and sample index."""
    base: dict[str, Any] = dict(config or {})
    callbacks = base.get("callbacks")
    if capture is None:
        pass
    elif isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.add_handler(capture, inherit=True)
        base["callbacks"] = manager
    else:
        base["callbacks"] = [*(callbacks or ()), capture]
    base.setdefault("run_name", agent.name)
    base["metadata"] = {
        **(base.get("metadata") or {}),
        "fanout_index": task.index,
        "sample_index": task.sample,
    }
    return base  # type: ignore[return-value]
