"""Plan a dispatch without calling a model: cost range, wall-time estimate, concurrency.

``plan_dispatch`` renders every prompt as the engine would and asks the engine's own
``CostEstimator`` for its worst case, so the plan's worst case is exactly what the engine
would reserve. Time is a model, not a measurement: every call is assumed
to take ``latency_s`` and the engine's own overhead (tens of microseconds per call, see
``benchmarks/overhead.py``) is left out.

Break-even, honestly: ``N`` independent calls of latency ``L`` at concurrency ``c`` take
about ``ceil(N / c) * L`` instead of ``N * L``. Parallel dispatch pays off when ``N > 1``,
``c > 1`` and ``L`` is large against the per-call overhead, which holds for any remote
model. It does not help one call, calls that depend on each other's output (a pipeline
is sequential by nature), or a provider rate limit that admits fewer than ``c`` calls
per latency: then throughput is ``rps`` whatever ``c`` is.

Example:
    >>> plan = plan_dispatch("Classify: {text}", [{"text": t} for t in receipts],
    ...                      agent=ChatOpenAI(model="gpt-4o-mini", max_tokens=50))
    >>> plan.max_cost_usd, plan.parallel_wall_s
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from langgraph_fanout.core.checks import MAX_SECONDS, check_number, check_samples, check_type
from langgraph_fanout.core.prompts import PromptTemplate, check_arguments, validate_arguments
from langgraph_fanout.engine.agents import AgentLike, SubAgent
from langgraph_fanout.engine.estimate import CostEstimator
from langgraph_fanout.errors import InvalidInputError
from langgraph_fanout.guards.limits import DispatchResourceLimits
from langgraph_fanout.guards.pricing import Price


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchPlan:
    """What a dispatch would do, computed without calling anything.

    Attributes:
        calls: calls planned (inputs times samples).
        model: the model id used for counting and pricing (``None`` if unknown).
        price: the price used, or ``None`` when no price is known (costs are then ``None``).
        prompt_tokens: prompt tokens of all calls together.
        max_output_tokens: worst-case output tokens of one call.
        min_cost_usd: every prompt priced, no output at all (a floor no run goes below).
        max_cost_usd: every prompt plus ``max_output_tokens`` per call, priced: the worst
            case, and what the budget guard reserves.
        budget_usd: ``max_total_cost_usd`` of the limits, if any.
        calls_within_budget: calls whose worst case fits the budget, taken in input order
            (``calls`` when there is no budget or no price).
        max_concurrent: the concurrency the estimate assumes.
        latency_s: the assumed latency of one call.
        parallel_wall_s: ``ceil(calls / concurrency) * latency_s``, where the concurrency is
            ``max_concurrent`` and, under ``requests_per_second``, no more than the rate
            admits per latency.
        sequential_wall_s: ``calls * latency_s``.
        recommended_max_concurrent: the smallest concurrency that reaches the best wall
            time these limits allow (more only adds load).
    """

    calls: int
    model: str | None
    price: Price | None
    prompt_tokens: int
    max_output_tokens: int
    min_cost_usd: float | None
    max_cost_usd: float | None
    budget_usd: float | None
    calls_within_budget: int
    max_concurrent: int
    latency_s: float
    parallel_wall_s: float
    sequential_wall_s: float
    recommended_max_concurrent: int

    @property
    def speedup(self) -> float:
        """Estimated ``sequential_wall_s / parallel_wall_s`` (1.0 for an empty plan)."""
        return self.sequential_wall_s / self.parallel_wall_s if self.parallel_wall_s else 1.0

    @property
    def pays_off(self) -> bool:
        """True when running in parallel is estimated to be faster than one call at a time."""
        return self.parallel_wall_s < self.sequential_wall_s

    @property
    def fits_budget(self) -> bool | None:
        """True when even the worst case fits the budget (``None``: no budget or no price)."""
        if self.budget_usd is None or self.max_cost_usd is None:
            return None
        return self.max_cost_usd <= self.budget_usd

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field and derived value."""
        data = asdict(self)
        data["price"] = None if self.price is None else asdict(self.price)
        data.update(speedup=self.speedup, pays_off=self.pays_off, fits_budget=self.fits_budget)
        return data

    def summary(self) -> str:
        """One line: calls, cost range, wall estimate."""
        if self.min_cost_usd is None or self.max_cost_usd is None:
            cost = f"cost unknown (no price for {self.model!r})"
        else:
            cost = f"${self.min_cost_usd:.6f} to ${self.max_cost_usd:.6f}"
        return (
            f"{self.calls} calls, {cost}, ~{self.parallel_wall_s:.2f}s at "
            f"max_concurrent={self.max_concurrent} vs ~{self.sequential_wall_s:.2f}s "
            f"sequential ({self.speedup:.1f}x)"
        )


def plan_dispatch(
    template: str | None,
    arguments: Iterable[Any],
    *,
    agent: AgentLike,
    limits: DispatchResourceLimits | None = None,
    latency_s: float = 1.0,
    prices: Mapping[str, Price] | None = None,
    samples: int = 1,
) -> DispatchPlan:
    """Plan ``dispatch_agents(template, arguments, agent=agent, ...)`` without running it.

    Args:
        template: the prompt template, or ``None`` when each argument is the prompt.
        arguments: one mapping of field values per input (validated like a dispatch).
        agent: the sub-agent; its model id and ``max_tokens`` drive counting and pricing.
        limits: the limits the dispatch would run under (``DispatchResourceLimits()``).
        latency_s: assumed seconds per call, for the wall-time estimate.
        prices: model id -> ``Price`` overrides, as for ``dispatch_agents``.
        samples: calls per input.

    Returns:
        A ``DispatchPlan``.

    Raises:
        InvalidInputError: the template or an argument set is invalid (as a dispatch would).
        ConfigurationError: ``latency_s`` is not positive or ``samples`` is below 1.

    Example:
        >>> plan = plan_dispatch("Q: {q}", [{"q": "a"}, {"q": "b"}], agent=model,
        ...                      limits=DispatchResourceLimits(max_concurrent=2))
        >>> plan.parallel_wall_s, plan.sequential_wall_s
        (1.0, 2.0)
    """
    check_number("plan_dispatch latency_s", latency_s, above=0, at_most=MAX_SECONDS)
    check_samples(samples)
    check_type("plan_dispatch limits", limits, DispatchResourceLimits, optional=True)
    check_arguments(arguments)
    limits = limits if limits is not None else DispatchResourceLimits()
    sub = SubAgent.of(agent)
    prompts = _render_all(template, list(arguments))
    estimator = CostEstimator(
        default_max_output_tokens=limits.default_max_output_tokens, prices=prices
    )
    max_out = estimator.max_output(sub)
    price = estimator.price(sub)

    calls = len(prompts) * samples
    prompt_tokens = 0
    min_cost = max_cost = 0.0
    budget = limits.max_total_cost_usd
    within = 0
    for prompt in prompts:
        worst = estimator.worst_case(sub, prompt)
        prompt_tokens += worst.input_tokens * samples
        if price is None:
            continue
        floor = price.cost(worst.input_tokens, 0)
        for _ in range(samples):
            min_cost += floor
            max_cost += worst.usd
            # The guard admits a call only while everything reserved so far still fits.
            if budget is None or max_cost <= budget + 1e-12:
                within += 1
    if price is None or budget is None:
        within = calls

    cap = limits.max_concurrent or max(calls, 1)
    effective = max(1, min(cap, calls))
    rps = limits.requests_per_second
    if rps is not None:
        # Little's law: a rate admits rps * latency calls in flight; more would only queue.
        effective = max(1, min(effective, math.ceil(rps * latency_s)))
    rounds = math.ceil(calls / effective) if calls else 0
    parallel = rounds * latency_s
    if rps is not None and calls:
        parallel = max(parallel, (calls - 1) / rps + latency_s)
    # The fewest slots that still finish in the same number of rounds.
    recommended = max(1, math.ceil(calls / rounds)) if rounds else 1
    return DispatchPlan(
        calls=calls,
        model=sub.model,
        price=price,
        prompt_tokens=prompt_tokens,
        max_output_tokens=max_out,
        min_cost_usd=None if price is None else min_cost,
        max_cost_usd=None if price is None else max_cost,
        budget_usd=budget,
        calls_within_budget=within,
        max_concurrent=effective,
        latency_s=float(latency_s),
        parallel_wall_s=parallel,
        sequential_wall_s=calls * latency_s,
        recommended_max_concurrent=recommended,
    )


def _render_all(template: str | None, arguments: list[Any]) -> list[Any]:
    """The prompts the engine would send: rendered, or each argument as it is."""
    if template is None:
        return arguments
    parsed = PromptTemplate.parse(template)
    problems = validate_arguments(parsed, arguments)
    if problems:
        raise InvalidInputError(problems=problems)
    return [parsed.render(a) for a in arguments]
