"""``Guards``: the guard options of a run, one frozen value validated once.

Every surface takes them the same way: ``guards=Guards(...)`` (one value to share between a
dispatch, a graph and a tool), or the same names as keyword arguments, typed by
``GuardOptions`` so that a misspelled option is an error for mypy and the IDE, and a
``ConfigurationError`` at run time. Keywords given with ``guards=`` replace its fields.

Example:
    >>> guards = Guards(cache=True, policy=ErrorRecoveryPolicy(max_retries=3))
    >>> await dispatch_agents(template, items, agent=model, guards=guards)
    >>> await dispatch_agents(template, items, agent=model, cache=True)  # the same
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, TypedDict, cast

from langgraph_fanout.core.checks import check_type
from langgraph_fanout.engine.agents import SubAgent
from langgraph_fanout.engine.call import PipelineGuards
from langgraph_fanout.errors import ConfigurationError
from langgraph_fanout.guards.breaker import BreakerRegistry, default_breakers
from langgraph_fanout.guards.cache import CacheMode, IdempotencyCache
from langgraph_fanout.guards.hedging import HedgePolicy
from langgraph_fanout.guards.ledger import CostLedger
from langgraph_fanout.guards.pricing import Price, as_price
from langgraph_fanout.guards.ratelimit import EndpointPauses, RateLimiter, default_pauses
from langgraph_fanout.guards.recovery import ErrorRecoveryPolicy, ErrorStrategy
from langgraph_fanout.guards.screening import InjectionPolicy, ScreeningPolicy

DEFAULT_SCREENING = ScreeningPolicy(injection=InjectionPolicy.FLAG, redact_outputs=False)
"""Flag prompt-injection markers in arguments; no redaction (pass ``ScreeningPolicy()``)."""

_DEFAULT_CACHE: IdempotencyCache | None = None


def default_cache() -> IdempotencyCache:
    """The process-wide in-memory idempotency cache used by ``cache=True`` (TTL one hour)."""
    global _DEFAULT_CACHE
    if _DEFAULT_CACHE is None:
        _DEFAULT_CACHE = IdempotencyCache()
    return _DEFAULT_CACHE


class GuardOptions(TypedDict, total=False):
    """The fields of ``Guards`` as keyword arguments (see ``Guards`` for each)."""

    policy: ErrorRecoveryPolicy | None
    cache: IdempotencyCache | bool | None
    cache_mode: CacheMode | str
    screening: ScreeningPolicy | None
    prices: Mapping[str, Price | tuple[float, float]] | None
    ledger: CostLedger | None
    rate_limiter: RateLimiter | None
    breakers: BreakerRegistry | None
    pauses: EndpointPauses | None
    hedge: HedgePolicy | None
    sleep: Callable[[float], Awaitable[None]] | None
    rng: random.Random | None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Guards:
    """What guards every call of a run: recovery, cache, screening, prices, a budget or a
    rate limiter to share, hedging, and the injection points of tests.

    Args:
        policy: retries, fallbacks and breakers (``ErrorRecoveryPolicy()``: two retries of
            transient errors, a breaker per agent).
        cache: ``True`` for the process-wide in-memory idempotency cache, or an
            ``IdempotencyCache`` (e.g. over ``SqliteCache``); off by default.
        cache_mode: ``"use"``, ``"refresh"`` or ``"bypass"``.
        screening: argument screening and output redaction (default: flag injection
            markers, no redaction); ``None`` for neither.
        prices: model id -> ``Price`` (or an ``(input_per_mtok, output_per_mtok)`` pair in
            USD per million tokens) for models the price table does not know.
        ledger: a budget to share with other runs (its cap is the budget).
        rate_limiter: a rate limiter to share (e.g. one per provider).
        breakers: the breaker registry (process-wide by default).
        pauses: where a provider's Retry-After holds every call to its endpoint
            (``EndpointPauses``; process-wide by default).
        hedge: start a duplicate of slow calls (``HedgePolicy``).
        sleep / rng: the backoff sleep and the jitter source (inject fakes in tests).

    Raises:
        ConfigurationError: a value of the wrong type or out of its domain.
    """

    policy: ErrorRecoveryPolicy | None = None
    cache: IdempotencyCache | bool | None = None
    cache_mode: CacheMode | str = CacheMode.USE
    screening: ScreeningPolicy | None = DEFAULT_SCREENING
    prices: Mapping[str, Price | tuple[float, float]] | None = None
    ledger: CostLedger | None = None
    rate_limiter: RateLimiter | None = None
    breakers: BreakerRegistry | None = None
    pauses: EndpointPauses | None = None
    hedge: HedgePolicy | None = None
    sleep: Callable[[float], Awaitable[None]] | None = None
    rng: random.Random | None = None

    def __post_init__(self) -> None:
        check_type("policy", self.policy, ErrorRecoveryPolicy, optional=True)
        check_type("cache", self.cache, IdempotencyCache | bool, optional=True)
        check_type("screening", self.screening, ScreeningPolicy, optional=True)
        check_type("ledger", self.ledger, CostLedger, optional=True)
        check_type("rate_limiter", self.rate_limiter, RateLimiter, optional=True)
        check_type("breakers", self.breakers, BreakerRegistry, optional=True)
        check_type("pauses", self.pauses, EndpointPauses, optional=True)
        check_type("hedge", self.hedge, HedgePolicy, optional=True)
        check_type("rng", self.rng, random.Random, optional=True)
        if self.sleep is not None and not callable(self.sleep):
            raise ConfigurationError(f"sleep must be an async function, got {self.sleep!r}")
        try:
            object.__setattr__(self, "cache_mode", CacheMode(self.cache_mode))
        except ValueError:
            choices = [m.value for m in CacheMode]
            raise ConfigurationError(
                f"cache_mode must be one of {choices}, got {self.cache_mode!r}"
            ) from None
        if self.prices is not None:
            if not isinstance(self.prices, Mapping):
                raise ConfigurationError(
                    f"prices must map model ids to Price, got {type(self.prices).__name__}"
                )
            # A Price or an (input, output) pair per million tokens; anything else is named.
            prices = {str(k): as_price(v, model=str(k)) for k, v in self.prices.items()}
            object.__setattr__(self, "prices", MappingProxyType(prices))
        policy = self.policy
        if (
            policy is not None
            and policy.fallback_tools
            and policy.strategy is not ErrorStrategy.FALLBACK
        ):
            raise ConfigurationError(
                "fallback_tools are only tried with strategy=ErrorStrategy.FALLBACK, "
                f"got strategy={policy.strategy.value}"
            )

    @classmethod
    def of(cls, guards: Guards | None, options: Mapping[str, Any]) -> Guards:
        """``guards`` (or the defaults) with ``options`` replacing its fields.

        Raises:
            ConfigurationError: an unknown option, or a bad value.
        """
        if guards is not None and not isinstance(guards, Guards):
            raise ConfigurationError(f"guards must be a Guards, got {type(guards).__name__}")
        unknown = sorted(set(options) - _FIELDS)
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {unknown}; the options are {sorted(_FIELDS)}"
            )
        if guards is None:
            return cls(**options)
        return dataclasses.replace(guards, **options) if options else guards

    def pipeline(self, resolve: Callable[[Any], SubAgent]) -> PipelineGuards:
        """What the call pipeline reads, with the defaults filled in."""
        cache = default_cache() if self.cache is True else self.cache or None
        return PipelineGuards(
            policy=self.policy if self.policy is not None else _DEFAULT_POLICY,
            resolve=resolve,
            breakers=self.breakers if self.breakers is not None else default_breakers,
            pauses=self.pauses if self.pauses is not None else default_pauses,
            cache=cache,
            cache_mode=CacheMode(self.cache_mode),
            screening=self.screening,
            # Every value is a Price by now: __post_init__ converted the pairs.
            prices=cast("Mapping[str, Price] | None", self.prices),
            sleep=self.sleep if self.sleep is not None else asyncio.sleep,
            rng=self.rng,
            hedge=self.hedge,
        )


_FIELDS = frozenset(f.name for f in dataclasses.fields(Guards))
_DEFAULT_POLICY = ErrorRecoveryPolicy()  # frozen: one shared value keeps one tenacity controller
