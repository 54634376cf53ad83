"""What the model reads back from the tools: short content strings, built from the results.

Each tool returns ``content_and_artifact``; this module writes the content: counts, the
answer or aggregate, failures in one line, spent and remaining budget, and, when the budget
refused every call, a refusal that says what was spent and what remains. It also writes
the parts of the tool descriptions that list the agents and the budget.

Example:
    >>> print(dispatch_content(result, "collect_all", max_item_chars=600,
    ...                        max_content_chars=4000))
    2/2 ok; spent $0.0086 (run: $0.0086 of $0.0500, $0.0414 left)
    [0] positive
    [1] negative
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from langgraph_fanout.aggregate.voting import Vote, Votes
from langgraph_fanout.core.report import DispatchReport
from langgraph_fanout.core.results import SubAgentResult
from langgraph_fanout.core.text import as_text
from langgraph_fanout.delegation.client import A2AClient
from langgraph_fanout.delegation.requests import DelegationResult
from langgraph_fanout.engine.dispatch import DispatchResult
from langgraph_fanout.errors import BudgetExceeded, usd
from langgraph_fanout.guards.ledger import CostLedger

_FAILURES_SHOWN = 5
_ERROR_CHARS = 160


# --------------------------------------------------------------------------- descriptions


def registry_lines(client: A2AClient) -> str:
    registry = client.registry
    described = ((name, registry.description(name)) for name in registry)
    return ", ".join(f"{name} ({text})" if text else name for name, text in described)


def budget_sentence(client: A2AClient) -> str:
    cap = client.limits.max_total_cost_usd
    return f" Budget for the whole run: {usd(cap)}." if cap is not None else ""


# --------------------------------------------------------------------------- dispatch tool


def dispatch_content(
    result: DispatchResult, spec: str | None, *, max_item_chars: int, max_content_chars: int
) -> str:
    """The dispatch tool's content: a status line, then the outputs or their aggregate."""
    report = result.report
    refusal = _budget_refusal(result.results, report)
    if refusal is not None:
        return refusal
    lines = [_status_line(report, result.results)]
    aggregate = result.aggregate
    if spec is None or spec == "collect_all":
        lines.extend(_per_item(result.results, max_item_chars))
        return _fit(lines, max_content_chars)
    if isinstance(aggregate, Vote):
        lines.append(_vote_line(aggregate))
    elif isinstance(aggregate, Votes):
        for vote in aggregate:
            lines.append(f"[{vote.question}] {_vote_line(vote)}")
    elif isinstance(aggregate, SubAgentResult):
        text = _clip(as_text(aggregate.output), max_item_chars)
        lines.append(f"{spec}: [{aggregate.index}] {text}")
    elif isinstance(aggregate, int | float):
        lines.append(f"{spec}: {aggregate:.6g}")
    elif aggregate is None:
        lines.append(f"{spec}: no answer (no successful output had a value)")
    else:
        lines.append(f"{spec}: {_clip(as_text(aggregate), max_item_chars)}")
    if result.failures:
        lines.append(failure_line(result.results))
    return _fit(lines, max_content_chars)


def _per_item(results: Sequence[SubAgentResult], max_item_chars: int) -> list[str]:
    return [
        f"[{r.index}] {_clip(as_text(r.output), max_item_chars)}"
        if r.ok
        else f"[{r.index}] failed ({r.error_kind}): {_short(r.error)}"
        for r in results
    ]


def _fit(lines: list[str], max_content_chars: int) -> str:
    kept: list[str] = []
    used = 0
    for position, line in enumerate(lines):
        if used + len(line) + 1 > max_content_chars and kept:
            kept.append(f"... {len(lines) - position} more line(s) in the artifact")
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept)


# --------------------------------------------------------------------------- delegate tool


def delegation_content(result: DelegationResult, client: A2AClient, limit: int) -> str:
    ledger = client.active_ledger()
    budget = _ledger_text(ledger)
    attempts = len(result.attempts)
    if result.success:
        who = result.agent_used or result.agent_id
        if result.fallback_used:
            who = f"{who} (fallback for {result.agent_id})"
        head = f"{who} answered; {attempts} attempt(s), {usd(result.cost_usd)}{budget}"
        return head + "\n" + _clip(result.text, max(40, limit - len(head) - 1))
    if isinstance(result.error, BudgetExceeded):
        return _refusal_text(result.error, ledger.spent_usd, ledger.limit_usd)
    tried = ", ".join(result.errors) or "none"
    return (
        f"delegation to {result.agent_id!r} failed ({result.error_kind}): "
        f"{_short(result.error)}; attempt errors: {tried}; {usd(result.cost_usd)}{budget}"
    )


# --------------------------------------------------------------------------- vote tool


def vote_content(result: DispatchResult) -> str:
    report = result.report
    refusal = _budget_refusal(result.results, report)
    if refusal is not None:
        return refusal
    vote = result.aggregate
    decided = isinstance(vote, Vote) and vote.winner is not None
    lines = [_vote_line(vote) if decided else "no valid votes"]
    lines.append(_status_line(report, result.results))
    if result.failures:
        lines.append(failure_line(result.results))
    return "\n".join(lines)


def _vote_line(vote: Vote) -> str:
    notes = [f"{vote.share:.0%}"]
    if vote.tie:
        notes.append("tie broken by the first voter")
    if vote.decided_early:
        notes.append(f"decided early, {vote.not_voted} voter(s) not needed")
    counts = ", ".join(f"{answer}: {weight:g}" for answer, weight in list(vote.counts.items())[:6])
    winner = _clip(as_text(vote.winner), 200)
    return f"vote: {winner} ({vote.support}/{vote.voters} votes, {'; '.join(notes)}); {counts}"


# --------------------------------------------------------------------------- content helpers


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _short(error: Any) -> str:
    return _clip(str(error), _ERROR_CHARS)


def _status_line(report: DispatchReport, results: Sequence[SubAgentResult]) -> str:
    failed = report.inputs - report.succeeded
    line = f"{report.succeeded}/{report.inputs} ok"
    if failed:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(report.failures_by_kind.items()))
        line += f"; {failed} failed ({kinds})"
    line += f"; spent {usd(report.spent_usd)}"
    if report.budget_usd is not None:
        left = max(0.0, report.budget_usd - report.total_spent_usd)
        line += (
            f" (run: {usd(report.total_spent_usd)} of {usd(report.budget_usd)}, {usd(left)} left)"
        )
    refused = [r.error for r in results if isinstance(r.error, BudgetExceeded)]
    if refused and report.budget_usd is not None:
        line += (
            f"; {len(refused)} refused by the budget (one call needs up to "
            f"{usd(max(e.estimate_usd for e in refused))})"
        )
    if report.stop_reason:
        line += f"; stopped early: {report.stop_reason}"
    return line


def failure_line(results: Sequence[SubAgentResult]) -> str:
    failed = [r for r in results if not r.ok]
    shown = "; ".join(
        f"[{r.index}] {r.error_kind}: {_short(r.error)}" for r in failed[:_FAILURES_SHOWN]
    )
    more = f" (+{len(failed) - _FAILURES_SHOWN} more)" if len(failed) > _FAILURES_SHOWN else ""
    return f"failed: {shown}{more}" if failed else "failed: none"


def _budget_refusal(results: Sequence[SubAgentResult], report: DispatchReport) -> str | None:
    """The refusal message when the budget refused every input (nothing ran)."""
    if not results or not all(isinstance(r.error, BudgetExceeded) for r in results):
        return None
    error = cast(BudgetExceeded, results[0].error)
    return _refusal_text(error, report.total_spent_usd, report.budget_usd)


def _refusal_text(error: BudgetExceeded, spent: float, limit: float | None) -> str:
    cap = error.limit_usd if limit is None else limit
    return (
        "refused: the cost budget of this run cannot cover the call, nothing was run. "
        f"Spent {usd(spent)} of {usd(cap)}, {usd(max(0.0, cap - spent))} left; one call needs "
        f"up to {usd(error.estimate_usd)}. Answer with the results you already have."
    )


def _ledger_text(ledger: CostLedger) -> str:
    if ledger.limit_usd is None:
        return ""
    left = max(0.0, ledger.limit_usd - ledger.spent_usd)
    return f"; run: {usd(ledger.spent_usd)} of {usd(ledger.limit_usd)}, {usd(left)} left"
