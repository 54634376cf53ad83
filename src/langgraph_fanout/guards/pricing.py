"""Prices: what a model's tokens cost.

``lookup_price`` reads genai-prices' bundled snapshot (never the network) unless an
override is given; ``Price.cost`` turns tokens into USD, tiers and cached input included.

Example:
    >>> lookup_price("gpt-4o-mini").cost(1_000, 100)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import genai_prices
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import TieredPrices

from langgraph_fanout.core.checks import MAX_USD, check_mapping, check_number, check_text, shown
from langgraph_fanout.errors import ConfigurationError


def split_provider(model: str) -> tuple[str | None, str]:
    """``"openai:gpt-4o"`` -> ``("openai", "gpt-4o")``; Bedrock ids and ``ft:`` stay whole."""
    prefix, sep, rest = model.partition(":")
    if sep and rest and prefix != "ft" and prefix.replace("_", "").replace("-", "").isalnum():
        return prefix, rest
    return None, model


# --------------------------------------------------------------------------- prices


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """USD per million tokens for one model.

    Args:
        input_per_mtok: uncached input tokens.
        output_per_mtok: output tokens (reasoning included).
        cached_input_per_mtok: input tokens read from the provider's prompt cache
            (``None``: billed as ordinary input).
        tiers: ``(above_input_tokens, price)`` pairs, ascending: when a call's input exceeds
            the threshold, every token of it is billed at that price (long-context pricing).

    Raises:
        ConfigurationError: a rate is negative or not finite, or tiers are not ascending.

    Example:
        >>> Price(input_per_mtok=2.5, output_per_mtok=10).cost(1_000, 500)
        0.0075
    """

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    tiers: tuple[tuple[int, Price], ...] = ()

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok"):
            check_number(
                f"Price.{name}",
                getattr(self, name),
                at_least=0,
                at_most=MAX_USD,
                optional=name == "cached_input_per_mtok",
            )
        tiers = self.tiers
        if not isinstance(tiers, tuple | list) or not all(
            isinstance(t, tuple | list) and len(t) == 2 and isinstance(t[1], Price) for t in tiers
        ):
            raise ConfigurationError(
                f"Price.tiers must be (above_input_tokens, Price) pairs, got {shown(tiers)}"
            )
        object.__setattr__(self, "tiers", tuple((t, p) for t, p in tiers))
        for threshold, _ in self.tiers:
            check_number("Price.tiers threshold", threshold, at_least=0, integer=True)
        thresholds = [t for t, _ in self.tiers]
        if thresholds != sorted(set(thresholds)) or any(t < 0 for t in thresholds):
            raise ConfigurationError(f"Price.tiers must be ascending and >= 0: {thresholds}")

    def cost(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        """USD for one call.

        Args:
            input_tokens: all prompt tokens, cached ones included (as LangChain reports them).
            output_tokens: completion tokens.
            cached_input_tokens: the part of ``input_tokens`` read from the prompt cache.
        """
        rate = self
        for threshold, tier in self.tiers:
            if input_tokens > threshold:
                rate = tier
        cached = min(cached_input_tokens, input_tokens)
        cached_rate = rate.cached_input_per_mtok
        if cached_rate is None:
            cached_rate = rate.input_per_mtok
        return (
            (input_tokens - cached) * rate.input_per_mtok
            + cached * cached_rate
            + output_tokens * rate.output_per_mtok
        ) / 1_000_000


def _rate(value: Any, above_input_tokens: int | None = None) -> float | None:
    if value is None:
        return None
    if isinstance(value, TieredPrices):
        rate = value.base
        for tier in value.tiers:
            if above_input_tokens is not None and above_input_tokens >= tier.start:
                rate = tier.price
        return float(rate)
    return float(value)


SIMULATED_PRICES: Final[Mapping[str, Price]] = {
    "simulated-small": Price(input_per_mtok=0.15, output_per_mtok=0.60),
    "simulated-large": Price(input_per_mtok=2.50, output_per_mtok=10.00),
}
"""The made-up prices of the offline simulator's models (``SimulatedChatModel``), part of
the price table so that simulated runs are budgeted exactly as real ones."""


def as_price(value: object, *, model: str) -> Price:
    """``value`` as a ``Price``: a ``Price``, or an ``(input_per_mtok, output_per_mtok)``
    pair in USD per million tokens.

    Raises:
        ConfigurationError: anything else, naming ``model``.

    Example:
        >>> as_price((0.15, 0.60), model="simulated-small").output_per_mtok
        0.6
    """
    if isinstance(value, Price):
        return value
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        try:
            return Price(input_per_mtok=float(value[0]), output_per_mtok=float(value[1]))
        except ConfigurationError as exc:
            raise ConfigurationError(f"price of {model!r}: {exc}") from None
    raise ConfigurationError(
        f"price of {model!r} must be a Price(input_per_mtok=..., output_per_mtok=...) or an "
        f"(input_per_mtok, output_per_mtok) pair in USD per million tokens, got {value!r}"
    )


@lru_cache(maxsize=2048)
def _genai_price(model: str, provider: str | None) -> Price | None:
    if provider is not None:
        try:
            get_snapshot().find_provider(None, provider, None)
        except LookupError:
            provider = None  # e.g. "ollama" or a fake model: match the model id alone
    try:
        # The bundled snapshot: genai-prices only fetches prices if UpdatePrices is started.
        calc = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=0, output_tokens=0),
            model_ref=model,
            provider_id=provider,
        )
    except LookupError:
        return None
    prices = calc.model_price
    fields = [getattr(prices, k, None) for k in ("input_mtok", "output_mtok", "cache_read_mtok")]
    if fields[0] is None:
        return None
    starts = sorted({t.start for f in fields if isinstance(f, TieredPrices) for t in f.tiers})

    def at(threshold: int | None) -> Price:
        inp, out, cached = (_rate(f, threshold) for f in fields)
        return Price(
            input_per_mtok=inp or 0.0, output_per_mtok=out or 0.0, cached_input_per_mtok=cached
        )

    base = at(None)
    return Price(
        input_per_mtok=base.input_per_mtok,
        output_per_mtok=base.output_per_mtok,
        cached_input_per_mtok=base.cached_input_per_mtok,
        tiers=tuple((s, at(s)) for s in starts),
    )


def lookup_price(
    model: str | None,
    *,
    provider: str | None = None,
    overrides: Mapping[str, Price] | None = None,
) -> Price | None:
    """The price of ``model``: from ``overrides`` first, then genai-prices' bundled table.

    Args:
        model: a model id, optionally provider-prefixed (``"anthropic:claude-sonnet-4-0"``).
        provider: genai-prices or LangChain provider id (``"openai"``, ``"google_genai"``);
            an unknown provider is ignored and the model id alone is matched.
        overrides: exact model id -> price (checked with and without the prefix).

    Returns:
        The price, or ``None`` if no one knows it.

    Example:
        >>> lookup_price("openai:gpt-4o").output_per_mtok
        10.0
    """
    check_text("lookup_price model", model, optional=True)
    check_text("lookup_price provider", provider, optional=True)
    check_mapping("lookup_price overrides", overrides, optional=True)
    if model is None:
        return None
    prefix, bare = split_provider(model)
    if overrides:
        for key in (model, bare):
            if key in overrides:
                return overrides[key]
    simulated = SIMULATED_PRICES.get(bare)
    if simulated is not None:
        return simulated
    return _genai_price(bare, provider or prefix)
