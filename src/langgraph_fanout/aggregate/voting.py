"""Majority vote over sub-agent outputs, and deciding it before every voter has answered.

``majority_vote`` counts normalised answers (optionally weighted by agent), settles ties by
a fixed rule and never depends on the order in which results finished. Its
``stop_condition()`` lets the engine stop the dispatch, cancelling the voters still to
come (they are never billed), as soon as the vote is decided:

- ``early="exact"``: the leader can no longer be overtaken, nor tied and beaten on the
  tie-break, even if every remaining voter backed the strongest rival with the largest
  weight a voter can have. The winner is then the one a full vote would have given.
- ``early="adaptive"`` (Adaptive-Consistency, Aggarwal et al. 2023): also stop when the
  posterior probability that the leader is the true majority exceeds ``confidence``:
  ``P(p > 1/2)`` for ``p ~ Beta(v1 + 1, v2 + 1)``, ``v1`` and ``v2`` the two top counts.
  Cheaper; right with about that probability.

Example:
    >>> vote = majority_vote("category", early="adaptive")
    >>> done = await dispatch_agents(..., aggregate=vote)
    >>> done.aggregate.winner, done.aggregate.decided_early
    ('electronics', True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from fractions import Fraction
from typing import Any, Final, Literal, TypeAlias

from langgraph_fanout.aggregate.extract import (
    Key,
    by_index,
    check_options,
    extract,
    key_name,
    normalize_answer,
)
from langgraph_fanout.core.checks import MAX_COUNT, check_number, shown
from langgraph_fanout.core.results import Status, SubAgentResult
from langgraph_fanout.core.stopping import DispatchProgress, StopCondition
from langgraph_fanout.errors import CallCancelled, ConfigurationError, VoterNotNeeded, VoteTie

TieBreak: TypeAlias = Literal["first", "lexical", "raise"]
EarlyRule: TypeAlias = Literal["exact", "adaptive"]
GroupBy: TypeAlias = Literal["input"] | None
DecidedBy: TypeAlias = Literal["complete", "exact", "adaptive", "budget"]

_ABSENT: Final = object()
_UNSEEN: Final = object()  # stands for any answer no voter has given yet
_HOPED: Final = object()  # the answer a wave's voters are assumed to give when planning it
_EXACT_SUM_LIMIT: Final = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote:
    """The outcome of a majority vote.

    Attributes:
        winner: the winning answer as the lowest-index voter for it gave it (not
            normalised); ``None`` when nobody voted.
        winner_key: the normalised answer that won.
        counts: normalised answer -> summed weight, best first.
        support: how many voters gave the winning answer.
        share: the winner's weight over the weight of all valid votes.
        unanimous: every valid vote went to the winner (abstentions do not count).
        tie: the top weight was shared and the tie rule picked the winner.
        voters: results considered.
        valid_votes: voters that gave a countable answer.
        abstentions: voters that ran but gave none (failed, key missing, empty answer).
        not_voted: planned voters with no answer at all: cancelled, or absent from the
            results when ``total`` was given.
        decided_early: some planned voters did not vote and the vote's stopping rule
            shows they could not have changed the outcome.
        question: the question voted on (``SubAgentResult.question_of`` of its voters).
        margin: the winner's weight minus the runner-up's (0 on a tie or with no votes).
        calls: voters that were called (every result but those never started).
        calls_saved: voters never called because the vote was settled without them.
        cancelled: voters cancelled in flight (started, so possibly billed).
        decided_by: ``"complete"`` (every voter voted), ``"exact"`` or ``"adaptive"`` (the
            early rule settled it), ``"budget"`` (the next wave did not fit the budget; the
            leader won), or ``None`` (not settled: stopped, or nobody voted).
    """

    # Left out of the hash (still compared): a Vote is hashable even with a dict winner.
    winner: Any = field(hash=False)
    winner_key: Hashable | None
    counts: dict[Hashable, float] = field(hash=False)
    support: int
    share: float
    unanimous: bool
    tie: bool
    voters: int
    valid_votes: int
    abstentions: int
    not_voted: int
    decided_early: bool
    question: int | None = None
    margin: float = 0.0
    calls: int = 0
    calls_saved: int = 0
    cancelled: int = 0
    decided_by: DecidedBy | None = None

    def __str__(self) -> str:
        return f"{self.winner} ({self.support}/{self.voters} votes)"


@dataclass(frozen=True, slots=True)
class Votes(Sequence[Vote]):
    """One ``Vote`` per question, in question order: what ``majority_vote()`` gives as the
    aggregate of a dispatch (each input's samples vote among themselves).

    Example:
        >>> done = await dispatch_agents(..., samples=5, aggregate=majority_vote())
        >>> done.aggregate.winners, done.aggregate.calls_saved
    """

    votes: tuple[Vote, ...]

    def __getitem__(self, index: Any) -> Any:
        return self.votes[index]

    def __len__(self) -> int:
        return len(self.votes)

    @property
    def winners(self) -> list[Any]:
        return [v.winner for v in self.votes]

    @property
    def calls(self) -> int:
        return sum(v.calls for v in self.votes)

    @property
    def calls_saved(self) -> int:
        return sum(v.calls_saved for v in self.votes)

    @property
    def cancelled(self) -> int:
        return sum(v.cancelled for v in self.votes)

    @property
    def decided_by(self) -> dict[str, int]:
        """How many questions each way settled (``None`` counted as ``"unsettled"``)."""
        counts: dict[str, int] = {}
        for v in self.votes:
            name = v.decided_by or "unsettled"
            counts[name] = counts.get(name, 0) + 1
        return counts


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ballot:
    index: int
    ran: bool
    valid: bool = False
    key: Hashable = None
    value: Any = None
    weight: Fraction = field(default_factory=Fraction)


class _Tally:
    """Running counts. Weights are exact fractions, so sums never depend on arrival order."""

    __slots__ = ("abstained", "first", "support", "valid", "value", "weight")

    def __init__(self) -> None:
        self.weight: dict[Hashable, Fraction] = {}
        self.support: dict[Hashable, int] = {}
        self.first: dict[Hashable, int] = {}
        self.value: dict[Hashable, Any] = {}
        self.valid = 0
        self.abstained = 0

    def add(self, ballot: _Ballot) -> None:
        if not ballot.ran:
            return
        if not ballot.valid:
            self.abstained += 1
            return
        key = ballot.key
        self.valid += 1
        self.weight[key] = self.weight.get(key, Fraction(0)) + ballot.weight
        self.support[key] = self.support.get(key, 0) + 1
        if key not in self.first or ballot.index < self.first[key]:
            self.first[key] = ballot.index
            self.value[key] = ballot.value

    def copy(self) -> _Tally:
        other = _Tally()
        other.weight, other.support = dict(self.weight), dict(self.support)
        other.first, other.value = dict(self.first), dict(self.value)
        other.valid, other.abstained = self.valid, self.abstained
        return other

    def ranking(self, tie_break: TieBreak) -> list[Hashable]:
        if tie_break == "first":
            return sorted(self.weight, key=lambda k: (-self.weight[k], self.first[k]))
        return sorted(self.weight, key=lambda k: (-self.weight[k], _lexical(k)))


def _lexical(key: Hashable) -> tuple[int, Any]:
    # A total order over mixed keys: numbers ascending, then strings, then the rest by repr.
    if isinstance(key, int | float) and not isinstance(key, bool):
        return (0, key)
    if isinstance(key, str):
        return (1, key)
    return (2, repr(key))


@dataclass(frozen=True, slots=True)
class majority_vote:
    """Majority vote over the answers of successful results, usable as a stop condition.

    Failed results, outputs without ``key`` and empty answers abstain. Ties are settled
    by ``tie_break``: ``"first"`` (default) picks the tied answer given by the
    lowest-index voter, ``"lexical"`` the smallest normalised answer, ``"raise"`` raises
    ``VoteTie``. None of them depends on completion order.

    Args:
        key: what to read from each output (see ``extract``); ``None``: the whole output
            (a message's text).
        normalize: maps an answer to the hashable key it is counted under; default
            ``normalize_answer`` (``" Electronics."`` == ``"electronics"``).
        weights: by agent name (the agent that answered, after any fallback; agents not
            listed weigh 1), or a function of the result. Weights are finite and >= 0.
        max_weight: the largest weight any voter can have. Needed for early decision with
            a weight function; with a mapping it is at least 1 and the largest listed.
        tie_break: ``"first"``, ``"lexical"`` or ``"raise"``.
        early: ``"exact"``, ``"adaptive"`` or ``None`` (``stop_condition()`` gives none).
        confidence: posterior threshold of the adaptive rule, in (0.5, 1).
        group_by: ``"input"`` (default): as a dispatch's aggregate, each input's samples
            vote among themselves (``samples=k``) and the aggregate is ``Votes``, one per
            input; distinct inputs never stop each other. ``None``: every result of the
            dispatch is a voter of one question (a vote across inputs, asked for
            explicitly) and the aggregate is one ``Vote``. Calling the vote on a list of
            results always counts them as one vote; ``per_question`` groups them.

    Raises:
        ConfigurationError: an argument is out of range.

    Example:
        >>> vote = majority_vote("category", weights={"gpt-4o": 2.0})
        >>> vote(results).winner
        'electronics'
    """

    key: Key = None
    _: KW_ONLY
    normalize: Callable[[Any], Hashable] | None = None
    weights: Mapping[str, float] | Callable[[SubAgentResult], float] | None = None
    max_weight: float | None = None
    tie_break: TieBreak = "first"
    early: EarlyRule | None = "exact"
    confidence: float = 0.95
    group_by: GroupBy = "input"

    def __post_init__(self) -> None:
        if self.group_by not in ("input", None):
            raise ConfigurationError(
                f"group_by must be 'input' (each input's samples vote) or None (every "
                f"result is a voter of one question), got {self.group_by!r}"
            )
        if self.tie_break not in ("first", "lexical", "raise"):
            raise ConfigurationError(
                f"tie_break must be 'first', 'lexical' or 'raise', got {self.tie_break!r}"
            )
        if self.early not in (None, "exact", "adaptive"):
            raise ConfigurationError(
                f"early must be 'exact', 'adaptive' or None, got {self.early!r}"
            )
        check_number("majority_vote confidence", self.confidence, above=0.5, below=1)
        check_number(
            "majority_vote max_weight", self.max_weight, above=0, at_most=MAX_COUNT, optional=True
        )
        check_options(self)
        if self.weights is not None and not (
            isinstance(self.weights, Mapping) or callable(self.weights)
        ):
            raise ConfigurationError(
                "majority_vote weights must map agent names to weights or be a function of a "
                f"result, got {shown(self.weights)}"
            )
        if isinstance(self.weights, Mapping):
            # A private copy: a dict changed later must not change a vote already configured.
            object.__setattr__(self, "weights", dict(self.weights))
            for agent, weight in self.weights.items():
                self._checked_weight(weight, agent)
        elif self.weights is not None and self.early is not None and self.max_weight is None:
            raise ConfigurationError(
                "a weight function needs max_weight= for early decision "
                "(the largest weight a voter still to come can have), or early=None"
            )

    def __call__(self, results: Sequence[SubAgentResult], *, total: int | None = None) -> Vote:
        """Count the votes in ``results``.

        Args:
            results: every result of the vote (in any order); cancelled ones did not vote.
            total: voters planned, if some are absent from ``results``.

        Raises:
            VoteTie: the vote is tied and ``tie_break="raise"``.
            ConfigurationError: ``total`` is below ``len(results)``, a weight is invalid,
                or ``normalize`` returned an unhashable value.
        """
        if total is not None and total < len(results):
            raise ConfigurationError(f"total={total} is less than the {len(results)} results")
        tally = _Tally()
        unanswered: list[int] = []
        for result in by_index(results):
            ballot = self._ballot(result)
            tally.add(ballot)
            if not ballot.ran:
                unanswered.append(result.index)
        if total is not None and total > len(results):
            seen = {r.index for r in results}
            unanswered.extend(i for i in range(total) if i not in seen)
        not_voted = max(len(unanswered), (total or 0) - tally.valid - tally.abstained)
        ranking = tally.ranking(self.tie_break)
        never = [r for r in results if _never_started(r)]
        saved = sum(1 for r in never if isinstance(r.error, VoterNotNeeded))
        counted: dict[str, Any] = {
            "question": _question(results),
            "calls": len(results) - len(never),
            "calls_saved": saved,
            "cancelled": sum(1 for r in results if r.status is Status.CANCELLED) - len(never),
        }
        if not ranking:
            return Vote(
                winner=None,
                winner_key=None,
                counts={},
                support=0,
                share=0.0,
                unanimous=False,
                tie=False,
                voters=len(results),
                valid_votes=0,
                abstentions=tally.abstained,
                not_voted=not_voted,
                decided_early=False,
                **counted,
            )
        top = tally.weight[ranking[0]]
        tied = [k for k in ranking if tally.weight[k] == top]
        if len(tied) > 1 and self.tie_break == "raise":
            raise VoteTie(tied=tied, weight=float(top))
        winner = ranking[0]
        total_weight = sum(tally.weight.values(), Fraction(0))
        first_open = min(unanswered, default=None)
        rule = self._decided(tally, ranking, not_voted, first_open) if not_voted else None
        decided_by: DecidedBy | None = "complete" if not not_voted else None
        if rule is not None:
            decided_by = rule[0]
        elif not_voted:
            marks = [r.error.decided_by for r in never if isinstance(r.error, VoterNotNeeded)]
            if "budget" in marks:
                decided_by = "budget"
        second = tally.weight[ranking[1]] if len(ranking) > 1 else Fraction(0)
        return Vote(
            winner=tally.value[winner],
            winner_key=winner,
            counts={k: float(tally.weight[k]) for k in ranking},
            support=tally.support[winner],
            share=float(top / total_weight) if total_weight else 0.0,
            unanimous=len(ranking) == 1,
            tie=len(tied) > 1,
            voters=len(results),
            valid_votes=tally.valid,
            abstentions=tally.abstained,
            not_voted=not_voted,
            decided_early=rule is not None,
            margin=float(top - second),
            decided_by=decided_by,
            **counted,
        )

    def per_question(self, results: Sequence[SubAgentResult]) -> Votes:
        """One vote per question (``SubAgentResult.question_of``), in question order."""
        groups: dict[int, list[SubAgentResult]] = {}
        for result in results:
            groups.setdefault(result.question_of, []).append(result)
        return Votes(tuple(self(groups[q]) for q in sorted(groups)))

    def stop_condition(self) -> StopCondition | None:
        """The condition that stops a dispatch once this vote is decided (``None`` if not
        early). It treats every input of the dispatch as a voter of one question, so the
        engine uses it only with ``group_by=None``; per-input votes settle in waves."""
        return None if self.early is None else stop_when_decided(self)

    # -- waves: what the engine and the graphs ask of one question ----------------------

    def decision(
        self, results: Sequence[SubAgentResult], pending: Sequence[int]
    ) -> tuple[DecidedBy, str] | None:
        """Whether one question is settled: its ``results`` so far (none in flight) and the
        indices of its voters not started yet. ``None``: not settled (or nothing pending)."""
        if not pending or self.early is None:
            return None
        tally = self._tally_of(results)
        ranking = tally.ranking(self.tie_break)
        return self._decided(tally, ranking, len(pending), min(pending))

    def next_wave(self, results: Sequence[SubAgentResult], pending: Sequence[int]) -> int:
        """How many of the ``pending`` voters to start now: the fewest that could settle the
        vote if they all backed the leader (or, with no votes yet, agreed among
        themselves); every pending voter when nothing fewer could, or without an early
        rule; 0 when the vote is settled or nothing is pending."""
        remaining = len(pending)
        if remaining == 0 or self.early is None:
            return remaining
        tally = self._tally_of(results)
        ranking = tally.ranking(self.tie_break)
        first_open = min(pending)
        if self._decided(tally, ranking, remaining, first_open) is not None:
            return 0
        reach = self._reach() or Fraction(1)
        leader = ranking[0] if ranking else _HOPED
        low, high = 1, remaining  # the smallest wave that could settle it, by bisection
        if not self._settles(tally, leader, high, reach, remaining, pending):
            return remaining
        while low < high:
            middle = (low + high) // 2
            if self._settles(tally, leader, middle, reach, remaining, pending):
                high = middle
            else:
                low = middle + 1
        return low

    def _settles(
        self,
        tally: _Tally,
        leader: Hashable,
        wave: int,
        reach: Fraction,
        remaining: int,
        pending: Sequence[int],
    ) -> bool:
        hoped = tally.copy()
        for index in sorted(pending)[:wave]:
            hoped.add(_Ballot(index=index, ran=True, valid=True, key=leader, weight=reach))
        left = remaining - wave
        first_open = sorted(pending)[wave] if left else None
        if left == 0:
            return True
        return self._decided(hoped, hoped.ranking(self.tie_break), left, first_open) is not None

    def _tally_of(self, results: Sequence[SubAgentResult]) -> _Tally:
        tally = _Tally()
        for result in results:
            tally.add(self._ballot(result))
        return tally

    # -- internals shared with stop_when_decided ---------------------------------------

    def _ballot(self, result: SubAgentResult) -> _Ballot:
        if result.status is Status.CANCELLED:
            return _Ballot(index=result.index, ran=False)
        if not result.ok:
            return _Ballot(index=result.index, ran=True)
        value = extract(result.output, self.key, default=_ABSENT)
        if value is _ABSENT or value is None:
            return _Ballot(index=result.index, ran=True)
        key = (self.normalize or normalize_answer)(value)
        try:
            hash(key)
        except TypeError:
            raise ConfigurationError(
                f"normalize returned an unhashable {type(key).__name__} for the answer of "
                f"input {result.index}; return a str, number or tuple"
            ) from None
        # NaN never equals itself, so it could never gather a second vote: it abstains.
        if key is None or key == "" or (isinstance(key, float) and math.isnan(key)):
            return _Ballot(index=result.index, ran=True)
        weight = self._weight_of(result)
        return _Ballot(
            index=result.index, ran=True, valid=True, key=key, value=value, weight=weight
        )

    def _weight_of(self, result: SubAgentResult) -> Fraction:
        if self.weights is None:
            return Fraction(1)
        agent = result.agent_used or result.agent
        if isinstance(self.weights, Mapping):
            return self._checked_weight(self.weights.get(agent, 1.0), agent)
        return self._checked_weight(self.weights(result), agent)

    def _checked_weight(self, weight: Any, agent: str) -> Fraction:
        try:
            number = float(weight)
        except (TypeError, ValueError):
            number = math.nan
        if not 0 <= number < math.inf:
            raise ConfigurationError(
                f"weight of agent {agent!r} must be finite and >= 0, got {weight!r}"
            )
        if self.max_weight is not None and number > self.max_weight:
            raise ConfigurationError(
                f"weight {number:g} of agent {agent!r} exceeds max_weight={self.max_weight:g}"
            )
        return Fraction(number)

    def _reach(self) -> Fraction | None:
        """The largest weight one voter still to come can add (``None``: unknown)."""
        if self.max_weight is not None:
            return Fraction(self.max_weight)
        if self.weights is None:
            return Fraction(1)
        if isinstance(self.weights, Mapping):
            return max([Fraction(1), *(Fraction(float(w)) for w in self.weights.values())])
        return None

    def _decided(
        self, tally: _Tally, ranking: list[Hashable], remaining: int | None, first_open: int | None
    ) -> tuple[DecidedBy, str] | None:
        """Which rule settles the vote with ``remaining`` voters to come, and why; or ``None``."""
        if not ranking:
            return None
        leader = ranking[0]
        lead = tally.weight[leader]
        second = tally.weight[ranking[1]] if len(ranking) > 1 else Fraction(0)
        reach = self._reach()
        if remaining is not None and reach is not None:
            rivals: list[tuple[Hashable, Fraction]] = [(k, tally.weight[k]) for k in ranking[1:]]
            if remaining > 0:
                rivals.append((_UNSEEN, Fraction(0)))
            if all(
                self._holds(tally, leader, rival, weight + remaining * reach, first_open)
                for rival, weight in rivals
            ):
                return "exact", (
                    f"vote decided: {leader!r} leads {float(lead):g} to {float(second):g} and "
                    f"the {remaining} voter(s) left cannot change the winner"
                )
        if self.early == "adaptive" and tally.valid >= 2:
            # One vote is never a consensus, whatever the threshold.
            probability = leader_probability(float(lead), float(second))
            if probability > self.confidence:
                return "adaptive", (
                    f"vote decided (adaptive): P({leader!r} is the majority) = "
                    f"{probability:.4f} > {self.confidence:g}"
                )
        return None

    def _holds(
        self,
        tally: _Tally,
        leader: Hashable,
        rival: Hashable,
        rival_best: Fraction,
        first_open: int | None,
    ) -> bool:
        """Whether ``leader`` still wins against ``rival`` at the rival's best."""
        lead = tally.weight[leader]
        if rival_best != lead:
            return rival_best < lead
        # The rival can only tie, and needs every remaining voter to do it.
        if self.tie_break == "raise":
            return False
        if self.tie_break == "lexical":
            return rival is not _UNSEEN and _lexical(leader) < _lexical(rival)
        rival_first = tally.first.get(rival, math.inf)
        if first_open is not None:
            rival_first = min(rival_first, first_open)
        return tally.first[leader] < rival_first


class stop_when_decided(StopCondition):
    """Stop a dispatch once ``vote`` is decided by its ``early`` rule.

    Counts incrementally from ``progress.finished``; the exact rule needs
    ``progress.total`` (inputs of unknown number can only stop by the adaptive rule). It
    assumes every input of the dispatch is a voter of this one vote, indexed ``0..total-1``.
    When nothing remains it returns ``None``: there is nothing left to save.

    Raises:
        ConfigurationError: ``vote.early`` is ``None``.
    """

    def __init__(self, vote: majority_vote) -> None:
        if vote.early is None:
            raise ConfigurationError("majority_vote(early=None) never decides early")
        self.vote = vote
        self._reset(None)

    def _reset(self, finished: list[SubAgentResult] | None) -> None:
        self._finished = finished
        self._seen = 0
        self._tally = _Tally()
        self._done: set[int] = set()
        self._first_open = 0

    def __call__(self, progress: DispatchProgress) -> str | None:
        finished = progress.finished
        # A different list (or a reused condition) means a different dispatch: recount.
        if finished is not self._finished or len(finished) < self._seen:
            self._reset(finished)
        for result in finished[self._seen :]:
            self._tally.add(self.vote._ballot(result))
            self._done.add(result.index)
        self._seen = len(finished)
        remaining = progress.remaining
        if remaining is not None and remaining <= 0:
            return None
        first_open: int | None = None
        if progress.total is not None:
            while self._first_open in self._done:
                self._first_open += 1
            first_open = self._first_open
        ranking = self._tally.ranking(self.vote.tie_break)
        decided = self.vote._decided(self._tally, ranking, remaining, first_open)
        return None if decided is None else decided[1]

    def __repr__(self) -> str:
        return f"stop_when_decided({self.vote.early}, key={key_name(self.vote.key)})"


def _never_started(result: SubAgentResult) -> bool:
    error = result.error
    return isinstance(error, CallCancelled) and not error.started


def _question(results: Sequence[SubAgentResult]) -> int | None:
    questions = {r.question_of for r in results}
    return questions.pop() if len(questions) == 1 else None


def leader_probability(leader: float, runner_up: float) -> float:
    """Posterior probability that the leading answer is the true majority.

    The Adaptive-Consistency Beta rule: ``P(p > 1/2)`` for
    ``p ~ Beta(leader + 1, runner_up + 1)``. Integer counts are summed exactly
    (``P(Binomial(n, 1/2) <= leader)``, ``n = leader + runner_up + 1``); other weights go
    through the regularised incomplete beta function (continued fraction, ``lgamma``).

    Raises:
        ConfigurationError: a count is negative or not finite.

    Example:
        >>> round(leader_probability(4, 0), 4)
        0.9688
    """
    if not (0 <= leader < math.inf and 0 <= runner_up < math.inf):
        raise ConfigurationError(f"counts must be finite and >= 0, got {leader}, {runner_up}")
    if (
        float(leader).is_integer()
        and float(runner_up).is_integer()
        and leader + runner_up < _EXACT_SUM_LIMIT
    ):
        v1, v2 = int(leader), int(runner_up)
        n = v1 + v2 + 1
        return sum(math.comb(n, j) for j in range(v1 + 1)) / (1 << n)
    return 1.0 - _regularized_beta(0.5, leader + 1.0, runner_up + 1.0)


def _regularized_beta(x: float, a: float, b: float) -> float:
    """``I_x(a, b)`` by the continued fraction (Numerical Recipes ``betai``)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The fraction converges fast only on this side of the mean; use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((a - 1.0 + m2) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + 1.0 + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h
