"""Aggregators and voting: output shapes, failures, ties, weights, order, early decision."""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel

from langgraph_fanout.aggregate.aggregators import (
    Aggregator,
    Scored,
    aggregator_from,
    best_result,
    collect_all,
    first_success,
    mean,
    median,
    rank_by_metric,
    stop_condition_of,
)
from langgraph_fanout.aggregate.extract import extract, normalize_answer
from langgraph_fanout.aggregate.voting import (
    Vote,
    leader_probability,
    majority_vote,
    stop_when_decided,
)
from langgraph_fanout.core.results import Status, SubAgentResult
from langgraph_fanout.core.stopping import (
    DispatchProgress,
    StopCondition,
    stop_after_failures,
    stop_after_successes,
)
from langgraph_fanout.errors import (
    AgentError,
    CallCancelled,
    ConfigurationError,
    FanoutError,
    KeyNotFound,
    VoteTie,
)

# -- building results ------------------------------------------------------------------


def ok(
    index: int, output: Any, *, agent: str = "a", agent_used: str | None = None
) -> SubAgentResult:
    return SubAgentResult(
        index=index, agent=agent, status=Status.OK, output=output, agent_used=agent_used
    )


def failed(index: int, *, agent: str = "a") -> SubAgentResult:
    error = AgentError(agent=agent, cause_type="ValueError", detail="boom")
    return SubAgentResult.from_error(index=index, agent=agent, error=error)


def cancelled(index: int, reason: str = "vote decided") -> SubAgentResult:
    return SubAgentResult.from_error(index=index, agent="a", error=CallCancelled(reason=reason))


def feed(
    condition: StopCondition | None, results: Sequence[SubAgentResult], *, total: int | None
) -> tuple[int | None, str | None]:
    """Feed results one at a time like the engine; return (how many were fed, reason)."""
    assert condition is not None
    progress = DispatchProgress(total=total, finished=[])
    for count, result in enumerate(results, start=1):
        progress.finished.append(result)
        progress.started += 1
        if result.ok:
            progress.succeeded += 1
        else:
            progress.failed += 1
        reason = condition(progress)
        if reason is not None:
            return count, reason
    return None, None


# -- output shapes ---------------------------------------------------------------------


class Verdict(BaseModel):
    category: str
    score: float


@dataclass
class VerdictData:
    category: str
    score: float


def _tool_call(record: dict[str, Any]) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": "classify", "args": record, "id": "c1"}])


SHAPES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict": lambda r: dict(r),
    "json_str": json.dumps,
    "pydantic": lambda r: Verdict(**r),
    "dataclass": lambda r: VerdictData(**r),
    "object": lambda r: SimpleNamespace(**r),
    "ai_json": lambda r: AIMessage(content=json.dumps(r)),
    "ai_fenced": lambda r: AIMessage(content=f"```json\n{json.dumps(r)}\n```"),
    "ai_blocks": lambda r: AIMessage(content=[{"type": "text", "text": json.dumps(r)}]),
    "ai_parsed": lambda r: AIMessage(content="", additional_kwargs={"parsed": Verdict(**r)}),
    "ai_tool_call": _tool_call,
}

RECORDS = [
    {"category": " Electronics.", "score": 0.4},
    {"category": "Books", "score": 0.95},
    {"category": "electronics", "score": 0.7},
    {"category": "ELECTRONICS!", "score": 0.7},
]


@pytest.fixture(params=sorted(SHAPES))
def shaped(request: pytest.FixtureRequest) -> list[SubAgentResult]:
    make = SHAPES[request.param]
    return [ok(i, make(record)) for i, record in enumerate(RECORDS)] + [failed(len(RECORDS))]


def test_extract_reads_every_shape(shaped: list[SubAgentResult]) -> None:
    assert extract(shaped[1].output, "category") == "Books"
    assert extract(shaped[1].output, "score") == 0.95


def test_majority_vote_on_every_shape(shaped: list[SubAgentResult]) -> None:
    vote = majority_vote("category")(shaped)
    assert vote.winner_key == "electronics"
    assert vote.winner == " Electronics."  # as the lowest-index voter wrote it
    assert vote.counts == {"electronics": 3.0, "books": 1.0}
    assert (vote.valid_votes, vote.abstentions, vote.voters) == (4, 1, 5)


def test_best_result_on_every_shape(shaped: list[SubAgentResult]) -> None:
    best = best_result("score")(shaped)
    assert best is not None and best.index == 1
    worst = best_result("score", reverse=False)(shaped)
    assert worst is not None and worst.index == 0


def test_rank_by_metric_on_every_shape(shaped: list[SubAgentResult]) -> None:
    ranked = rank_by_metric("score")(shaped)
    assert [(item.score, item.result.index) for item in ranked] == [
        (0.95, 1),
        (0.7, 2),  # equal scores keep input order
        (0.7, 3),
        (0.4, 0),
    ]
    assert ranked[0].output is shaped[1].output
    ascending = rank_by_metric("score", reverse=False)(shaped)
    assert [item.result.index for item in ascending] == [0, 2, 3, 1]


def test_mean_median_collect_all_on_every_shape(shaped: list[SubAgentResult]) -> None:
    assert mean("score")(shaped) == pytest.approx((0.4 + 0.95 + 0.7 + 0.7) / 4)
    assert median("score")(shaped) == pytest.approx(0.7)
    assert collect_all("category")(shaped) == [r["category"] for r in RECORDS]


def test_key_none_reads_text_of_messages_and_plain_strings() -> None:
    results = [
        ok(0, AIMessage(content=[{"type": "text", "text": "Paris"}, {"type": "reasoning"}])),
        ok(1, AIMessage(content=[{"type": "text", "text": "par"}, {"type": "text", "text": "is"}])),
        ok(2, HumanMessage(content="London")),
        ok(3, " paris. "),
    ]
    assert [extract(r.output, None) for r in results] == ["Paris", "paris", "London", " paris. "]
    assert collect_all()(results) == [r.output for r in results]  # unchanged outputs
    vote = majority_vote()(results)
    assert (vote.winner_key, vote.support, vote.winner) == ("paris", 3, "Paris")


# -- extract -----------------------------------------------------------------------------


def test_extract_dotted_paths_sequences_and_literal_keys() -> None:
    output = {"verdict": {"labels": ["spam", "ham"]}, "a.b": 1, "a": {"b": 2}}
    assert extract(output, "verdict.labels.1") == "ham"
    assert extract(output, "a.b") == 1  # a literal key wins over the path
    assert extract({"a": {"b": 2}}, "a.b") == 2
    assert extract({"inner": '{"x": 3}'}, "inner.x") == 3  # JSON strings are walked


def test_extract_message_sources_in_documented_order() -> None:
    message = AIMessage(
        content='{"label": "from-content"}',
        additional_kwargs={"parsed": {"label": "from-parsed", "only_parsed": 1}},
        tool_calls=[{"name": "f", "args": {"label": "from-tool", "only_tool": 2}, "id": "1"}],
        usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
    )
    assert extract(message, "label") == "from-content"
    assert extract(message, "only_parsed") == 1
    assert extract(message, "only_tool") == 2
    assert extract(message, "usage_metadata.total_tokens") == 7  # the message's own fields last


def test_extract_missing_key_raises_with_context_or_returns_default() -> None:
    with pytest.raises(KeyNotFound) as info:
        extract({"label": "x", "score": 1}, "category")
    error = info.value
    assert isinstance(error, FanoutError) and isinstance(error, LookupError)
    assert (error.key, error.output_type, error.available) == (
        "category",
        "dict",
        ("label", "score"),
    )
    assert str(error) == "key 'category' not found in dict output (it has 'label', 'score')"
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.available) == (KeyNotFound, str(error), error.available)
    assert extract({"label": "x"}, "category", default=None) is None


@pytest.mark.parametrize(
    ("output", "key"),
    [
        ("plain text", "upper"),  # a bound method is not a field
        ("not json", "label"),
        ('["a", "list"]', "label"),  # JSON, but not an object
        (Verdict(category="x", score=1), "model_dump"),
        ({"a": [1]}, "a.5"),
        ({"a": [1]}, "a.x"),
        (AIMessage(content="no structure here"), "label"),
        (None, "label"),
    ],
)
def test_extract_not_found_cases(output: Any, key: str) -> None:
    assert extract(output, key, default="MISSING") == "MISSING"


def test_extract_with_a_key_function() -> None:
    assert extract({"a": 2}, lambda o: o["a"] * 10) == 20

    def needs_b(o: Any) -> Any:
        return o["b"]

    with pytest.raises(KeyNotFound, match="needs_b"):
        extract({"a": 2}, needs_b)
    assert extract("text", needs_b, default=0) == 0  # TypeError counts as not found


@pytest.mark.parametrize("key", ["", 3])
def test_extract_rejects_bad_keys(key: Any) -> None:
    with pytest.raises(ConfigurationError):
        extract({}, key)


# -- the other aggregators -------------------------------------------------------------


def test_collect_all_is_in_index_order_and_can_keep_errors() -> None:
    results = [ok(2, {"v": "c"}), failed(1), ok(0, {"v": "a"}), ok(3, {"w": 1})]
    assert collect_all("v")(results) == ["a", "c"]
    kept = collect_all("v", include_errors=True)(results)
    assert kept[0] == "a" and kept[2] == "c"
    assert isinstance(kept[1], AgentError)
    assert isinstance(kept[3], KeyNotFound)
    assert collect_all()(results) == [{"v": "a"}, {"v": "c"}, {"w": 1}]


def test_rank_and_best_skip_missing_and_non_numeric_metrics() -> None:
    results = [
        ok(0, {"s": "0.5"}),  # numeric strings count
        ok(1, {"s": True}),  # booleans do not
        ok(2, {"s": float("nan")}),
        ok(3, {"s": "high"}),
        ok(4, {"other": 1}),
        ok(5, {"s": 3}),
        failed(6),
    ]
    assert [(i.score, i.result.index) for i in rank_by_metric("s")(results)] == [(3.0, 5), (0.5, 0)]
    best = best_result("s")(results)
    assert best is not None and best.index == 5
    assert best_result("s")([failed(0), ok(1, {"s": "x"})]) is None
    assert best_result()([ok(0, 2), ok(1, 7), ok(2, 7)]) == ok(1, 7)  # ties: lowest index


def test_best_result_with_a_score_function() -> None:
    results = [ok(0, {"text": "short"}), ok(1, {"text": "much longer"})]
    best = best_result("text", score=len)(results)
    assert best is not None and best.index == 1
    ranked = rank_by_metric("text", score=len, reverse=False)(results)
    assert ranked == [Scored(score=5.0, result=results[0]), Scored(score=11.0, result=results[1])]


def test_first_success_is_the_lowest_index_success_and_stops_at_the_first() -> None:
    aggregator = first_success()
    assert aggregator([ok(3, "late"), failed(0), ok(1, "early")]) == ok(1, "early")
    assert aggregator([failed(0), cancelled(1)]) is None
    condition = aggregator.stop_condition()
    assert feed(condition, [failed(0), ok(1, "x"), ok(2, "y")], total=3)[0] == 2


def test_mean_and_median_without_numbers_give_none() -> None:
    assert mean("x")([failed(0), ok(1, {"y": 1})]) is None
    assert median("x")([]) is None
    assert median()([ok(0, 1), ok(1, 10), ok(2, 4), ok(3, "2")]) == 3.0


# -- the vote: counting, failures, ties, weights ---------------------------------------


def test_vote_fields() -> None:
    results = [
        ok(0, {"c": "Electronics"}),
        ok(1, {"c": " electronics."}),
        ok(2, {"c": "Books"}),
        failed(3),
        ok(4, {"other": "x"}),  # key missing: abstains
        ok(5, {"c": "  "}),  # empty answer: abstains
        ok(6, {"c": None}),  # null answer: abstains
        cancelled(7),  # never voted
    ]
    vote = majority_vote("c")(results)
    assert vote == Vote(
        winner="Electronics",
        winner_key="electronics",
        counts={"electronics": 2.0, "books": 1.0},
        support=2,
        share=2 / 3,
        unanimous=False,
        tie=False,
        voters=8,
        valid_votes=3,
        abstentions=4,
        not_voted=1,
        # One voter missing: "books" could at best tie, and a tie goes to voter 0's answer.
        decided_early=True,
        question=None,  # the results are of different inputs (no question of their own)
        margin=1.0,
        calls=7,
        calls_saved=0,  # the cancelled voter was cancelled, not settled without
        cancelled=0,
        decided_by="exact",
    )
    assert str(vote) == "Electronics (2/8 votes)"
    unanimous = majority_vote("c")(results[:2] + results[3:5])
    assert unanimous.unanimous and unanimous.share == 1.0 and unanimous.abstentions == 2


def test_vote_without_valid_votes() -> None:
    vote = majority_vote("c")([failed(0), ok(1, {"x": 1}), cancelled(2)])
    assert (vote.winner, vote.winner_key, vote.counts, vote.share) == (None, None, {}, 0.0)
    assert (vote.valid_votes, vote.abstentions, vote.not_voted) == (0, 2, 1)
    assert not vote.unanimous and not vote.decided_early


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (" Electronics.", "electronics"),
        ("**Electronics**.", "electronics"),
        ('"Electronics"', "electronics"),
        ("New   York\n", "new york"),
        ("ＡＢＣ", "abc"),  # NFKC: full-width letters
        ("Straße", "STRASSE"),  # casefold
    ],
)
def test_normalization_merges_spellings(left: str, right: str) -> None:
    assert normalize_answer(left) == normalize_answer(right)
    vote = majority_vote()([ok(0, left), ok(1, right), ok(2, "other"), ok(3, "more")])
    assert vote.support == 2 and vote.winner == left


def test_normalization_of_structured_answers() -> None:
    assert normalize_answer({"b": 1, "a": [1, 2]}) == normalize_answer({"a": (1, 2), "b": 1})
    assert normalize_answer(Verdict(category="x", score=1)) == normalize_answer(
        {"category": "x", "score": 1.0}
    )
    assert normalize_answer(1) == normalize_answer(1.0)
    assert normalize_answer("A") != normalize_answer({"A": 1})
    vote = majority_vote()([ok(0, {"x": [1]}), ok(1, {"x": (1,)}), ok(2, {"x": [2]})])
    assert vote.support == 2


def test_custom_normalizer_and_unhashable_result() -> None:
    exact = majority_vote(normalize=lambda v: v)
    assert exact([ok(0, "A"), ok(1, "a"), ok(2, "a")]).winner_key == "a"
    broken = majority_vote(normalize=lambda v: [v])  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match="unhashable list"):
        broken([ok(0, "A")])


def test_nan_answers_abstain() -> None:
    vote = majority_vote()([ok(0, math.nan), ok(1, math.nan), ok(2, 1.5)])
    assert (vote.winner_key, vote.abstentions) == (1.5, 2)


TIED = [ok(0, "Banana"), ok(1, "apple"), ok(2, "banana"), ok(3, "Apple."), failed(4)]


@pytest.mark.parametrize(("tie_break", "winner"), [("first", "Banana"), ("lexical", "apple")])
def test_tie_rules_are_deterministic(tie_break: Any, winner: str) -> None:
    aggregator = majority_vote(tie_break=tie_break)
    votes = {aggregator(order) for order in (TIED, TIED[::-1], TIED[1:] + TIED[:1])}
    assert len(votes) == 1
    assert votes.pop().winner == winner
    vote = aggregator(TIED)
    assert vote.tie and vote.share == 0.5


def test_tie_break_raise() -> None:
    with pytest.raises(VoteTie) as info:
        majority_vote(tie_break="raise")(TIED)
    error = info.value
    assert (error.tied, error.weight) == (("apple", "banana"), 2.0)
    assert str(error) == (
        "vote tied between 'apple', 'banana' at 2 vote(s) each; "
        "pass tie_break='first' or 'lexical' to settle ties"
    )
    assert pickle.loads(pickle.dumps(error)).tied == error.tied
    assert majority_vote(tie_break="raise")(TIED[:3]).winner_key == "banana"  # no tie, no raise


def test_weights_by_agent_that_answered() -> None:
    results = [
        ok(0, "cat", agent="strong"),
        ok(1, "dog", agent="weak"),
        ok(2, "dog", agent="weak"),
        ok(3, "dog", agent="strong", agent_used="weak"),  # a fallback answered
    ]
    by_name = majority_vote(weights={"strong": 4.0, "weak": 1.0})
    vote = by_name(results)
    assert vote.winner_key == "cat"
    assert vote.counts == {"cat": 4.0, "dog": 3.0}
    assert vote.share == pytest.approx(4 / 7) and vote.support == 1
    assert majority_vote(weights={"strong": 2.0})(results).winner_key == "dog"  # 2 < 3 x 1
    by_function = majority_vote(weights=lambda r: 10.0 if r.index == 1 else 1.0, early=None)
    assert by_function(results).winner_key == "dog"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weights": {"a": -1.0}},
        {"weights": {"a": math.inf}},
        {"weights": {"a": "heavy"}},
        {"weights": {"a": 3.0}, "max_weight": 2.0},
        {"weights": lambda r: 1.0},  # early decision needs max_weight with a function
        {"max_weight": 0.0},
        {"tie_break": "coin"},
        {"early": "eager"},
        {"confidence": 0.5},
        {"confidence": 1.0},
    ],
)
def test_vote_rejects_bad_configuration(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        majority_vote(**kwargs)


def test_weight_function_is_checked_on_each_result() -> None:
    vote = majority_vote(weights=lambda r: float(r.index), max_weight=2.0)
    with pytest.raises(ConfigurationError, match="exceeds max_weight=2"):
        vote([ok(3, "x")])
    with pytest.raises(ConfigurationError, match="total=1 is less than"):
        vote([ok(0, "x"), ok(1, "y")], total=1)


def test_weights_mapping_is_copied() -> None:
    weights = {"a": 2.0}
    vote = majority_vote(weights=weights)
    weights["a"] = 100.0
    assert vote([ok(0, "x")]).counts == {"x": 2.0}


# -- order independence (hypothesis) ----------------------------------------------------

LABELS = ["Paris", " paris.", "PARIS!", "London", "london", "Rome", "rome ", "Oslo"]
OUTCOMES = st.one_of(
    st.sampled_from(LABELS).map(lambda label: ("ok", label)),
    st.just(("missing", None)),
    st.just(("failed", None)),
    st.just(("cancelled", None)),
)


def build(outcomes: list[tuple[str, Any]], agents: list[str]) -> list[SubAgentResult]:
    results = []
    for index, ((kind, label), agent) in enumerate(zip(outcomes, agents, strict=True)):
        if kind == "ok":
            results.append(ok(index, {"answer": label}, agent=agent))
        elif kind == "missing":
            results.append(ok(index, {"other": 1}, agent=agent))
        elif kind == "failed":
            results.append(failed(index, agent=agent))
        else:
            results.append(cancelled(index))
    return results


@st.composite
def elections(draw: st.DrawFn) -> tuple[list[SubAgentResult], list[SubAgentResult]]:
    outcomes = draw(st.lists(OUTCOMES, min_size=1, max_size=12))
    agents = draw(
        st.lists(st.sampled_from(["a", "b", "c"]), min_size=len(outcomes), max_size=len(outcomes))
    )
    results = build(outcomes, agents)
    return results, draw(st.permutations(results))


def _outcome(aggregator: majority_vote, results: list[SubAgentResult]) -> Vote | str:
    try:
        return aggregator(results, total=len(results) + 1)
    except VoteTie as tie:
        return f"tie {tie.tied}"


@settings(max_examples=300, deadline=None)
@given(
    election=elections(),
    tie_break=st.sampled_from(["first", "lexical", "raise"]),
    weighted=st.booleans(),
)
def test_vote_does_not_depend_on_completion_order(
    election: tuple[list[SubAgentResult], list[SubAgentResult]], tie_break: Any, weighted: bool
) -> None:
    results, shuffled = election
    weights = {"a": 0.1, "b": 0.2, "c": 0.7} if weighted else None  # float sums would vary
    aggregator = majority_vote("answer", tie_break=tie_break, weights=weights)
    assert _outcome(aggregator, shuffled) == _outcome(aggregator, results)


# -- deciding early ----------------------------------------------------------------------


def test_exact_early_decision_with_nine_voters() -> None:
    results = [ok(i, "yes") for i in range(5)] + [ok(i, "no") for i in range(5, 9)]
    condition = majority_vote().stop_condition()
    assert condition is not None
    progress = DispatchProgress(total=9, finished=[])
    for fed, result in enumerate(results, start=1):
        progress.finished.append(result)
        progress.succeeded += 1
        reason = condition(progress)
        if fed < 5:  # 4 agree with 5 to come: still overtakeable
            assert reason is None
        else:
            assert reason == (
                "vote decided: 'yes' leads 5 to 0 and the 4 voter(s) left cannot change the winner"
            )
            break
    stopped = results[:5] + [cancelled(i) for i in range(5, 9)]
    vote = majority_vote()(stopped)
    assert vote.decided_early and vote.not_voted == 4 and vote.winner == "yes"
    assert majority_vote()(results[:5], total=9).decided_early


def test_exact_decision_counts_failures_as_spent_voters() -> None:
    # 4 "yes", 2 failures: with 3 left, 4 > 0 + 3 already.
    stream = [ok(0, "yes"), failed(1), ok(2, "yes"), failed(3), ok(4, "yes"), ok(5, "yes")]
    fed, _ = feed(majority_vote().stop_condition(), [*stream, ok(6, "no")], total=9)
    assert fed == 6


@pytest.mark.parametrize(
    ("tie_break", "fires_at"),
    [
        # After 3 "b" (voters 0, 1, 2) the 3 voters left can at best tie with a new answer.
        ("first", 3),  # a tie goes to the answer of voter 0: "b" has won
        ("lexical", None),  # a tie goes to "a" < "b": open until the end
        ("raise", None),  # a tie raises: open until the end
    ],
)
def test_exact_rule_considers_the_tie_break(tie_break: Any, fires_at: int | None) -> None:
    stream = [ok(0, "b"), ok(1, "b"), ok(2, "b"), ok(3, "a"), ok(4, "a"), ok(5, "a")]
    condition = majority_vote(tie_break=tie_break).stop_condition()
    assert feed(condition, stream, total=6)[0] == fires_at


def test_first_rule_waits_for_a_lower_index_voter() -> None:
    # Same counts, but voter 0 has not answered yet: it could tie for "a" and win the tie.
    stream = [ok(1, "b"), ok(2, "b"), ok(3, "b"), ok(4, "a"), ok(5, "a"), ok(0, "b")]
    assert feed(majority_vote().stop_condition(), stream, total=6)[0] is None


@settings(max_examples=400, deadline=None)
@given(
    election=elections(),
    order=st.randoms(use_true_random=False),
    tie_break=st.sampled_from(["first", "lexical", "raise"]),
    weighted=st.booleans(),
)
def test_exact_stop_never_changes_the_winner(
    election: tuple[list[SubAgentResult], list[SubAgentResult]],
    order: Any,
    tie_break: Any,
    weighted: bool,
) -> None:
    results, _ = election
    # A dispatch of its own: voters that answer (or fail), indexed 0..n-1, in random order.
    voters = [r for r in results if r.status is not Status.CANCELLED]
    voters = [replace(r, index=i) for i, r in enumerate(voters)]
    arrival = list(voters)
    order.shuffle(arrival)
    weights = {"a": 0.5, "b": 1.0, "c": 2.0} if weighted else None
    aggregator = majority_vote("answer", tie_break=tie_break, weights=weights)
    assert feed(aggregator.stop_condition(), arrival, total=None) == (None, None)
    fed, _ = feed(aggregator.stop_condition(), arrival, total=len(arrival))
    if fed is None:
        return
    partial = aggregator(arrival[:fed], total=len(arrival))
    full = aggregator(arrival)  # never a VoteTie once the stop fired
    assert partial.winner_key == full.winner_key
    assert partial.decided_early
    assert partial.not_voted == len(arrival) - fed


@settings(max_examples=300, deadline=None)
@given(
    labels=st.lists(st.sampled_from(["b", "c", "d"]), min_size=1, max_size=10),
    order=st.randoms(use_true_random=False),
    tie_break=st.sampled_from(["first", "lexical", "raise"]),
)
def test_exact_stop_fires_as_soon_as_the_winner_is_fixed(
    labels: list[str], order: Any, tie_break: Any
) -> None:
    """Whenever the condition stays silent, some completion of the vote changes the winner."""
    results = [ok(i, label) for i, label in enumerate(labels)]
    arrival = list(results)
    order.shuffle(arrival)
    aggregator = majority_vote(normalize=lambda v: v, tie_break=tie_break)
    condition = aggregator.stop_condition()
    assert condition is not None
    progress = DispatchProgress(total=len(results), finished=[])
    for step, result in enumerate(arrival[:-1], start=1):
        progress.finished.append(result)
        progress.succeeded += 1
        if condition(progress) is not None:
            return
        seen = arrival[:step]
        to_come = sorted(r.index for r in arrival[step:])
        try:
            leader = aggregator(seen, total=len(results))
        except VoteTie:
            continue  # a tied vote is undecided by definition
        outcomes = set()
        # The adversary sends every remaining voter to one rival, "a" being a new answer
        # that wins lexical ties.
        for rival in [*leader.counts, "a"]:
            completed = seen + [ok(i, rival) for i in to_come]
            try:
                outcomes.add(aggregator(completed).winner_key)
            except VoteTie:
                outcomes.add("<tie>")
        assert outcomes != {leader.winner_key}, (seen, to_come)


def test_adaptive_stops_earlier_than_exact_on_a_lopsided_stream() -> None:
    stream = [ok(i, "yes") for i in range(15)]
    exact = feed(majority_vote().stop_condition(), stream, total=15)
    adaptive = feed(majority_vote(early="adaptive").stop_condition(), stream, total=15)
    assert exact[0] == 8
    assert adaptive[0] == 4  # P = 1 - 1/32 > 0.95; three votes give 0.9375
    assert adaptive[1] == "vote decided (adaptive): P('yes' is the majority) = 0.9688 > 0.95"
    stopped = stream[:4] + [cancelled(i) for i in range(4, 15)]
    assert majority_vote(early="adaptive")(stopped).decided_early
    assert not majority_vote(early="exact")(stopped).decided_early


def test_adaptive_never_stops_on_one_vote() -> None:
    eager = majority_vote(early="adaptive", confidence=0.6)  # one vote has P = 0.75
    assert feed(eager.stop_condition(), [ok(0, "x")], total=5) == (None, None)
    assert feed(eager.stop_condition(), [ok(0, "x"), ok(1, "x")], total=5)[0] == 2
    unknown_total = feed(eager.stop_condition(), [ok(0, "x"), failed(1), ok(2, "x")], total=None)
    assert unknown_total[0] == 3


def test_adaptive_does_not_stop_a_close_race() -> None:
    stream = [ok(i, "ab"[i % 2]) for i in range(11)]
    assert feed(majority_vote(early="adaptive").stop_condition(), stream, total=11) == (None, None)


def test_vote_cut_by_a_deadline_is_not_decided_early() -> None:
    results = [ok(0, "x"), ok(1, "x"), ok(2, "y")] + [cancelled(i, "deadline") for i in range(3, 6)]
    vote = majority_vote()(results)
    assert vote.winner == "x" and vote.not_voted == 3 and not vote.decided_early


def test_stop_condition_protocol_details() -> None:
    aggregator = majority_vote("c")
    condition = aggregator.stop_condition()
    assert isinstance(condition, stop_when_decided)
    assert repr(condition) == "stop_when_decided(exact, key=c)"
    assert majority_vote(early=None).stop_condition() is None
    with pytest.raises(ConfigurationError):
        stop_when_decided(majority_vote(early=None))
    # Nothing left to save: no reason even though the vote is decided.
    assert feed(condition, [ok(0, {"c": "x"})], total=1) == (None, None)
    # Reused on another dispatch (another progress): counts start again.
    stream = [ok(i, {"c": "x"}) for i in range(3)]
    assert feed(condition, stream, total=5)[0] == 3
    assert feed(condition, stream, total=5)[0] == 3
    combined = condition | stop_after_failures(2)
    assert feed(combined, [failed(0), failed(1)], total=5)[1] == "2 failure(s) reached"


# -- the Beta posterior -------------------------------------------------------------------


def _posterior_by_integration(a: float, b: float, steps: int = 20_000) -> float:
    """P(p > 1/2) for Beta(a + 1, b + 1) by Simpson's rule on the density."""
    log_norm = math.lgamma(a + b + 2) - math.lgamma(a + 1) - math.lgamma(b + 1)

    def density(p: float) -> float:
        return float(math.exp(log_norm) * p**a * (1.0 - p) ** b)

    h = 0.5 / steps
    total = density(0.5) + density(1.0)
    total += sum((4 if k % 2 else 2) * density(0.5 + k * h) for k in range(1, steps))
    return total * h / 3


@pytest.mark.parametrize(("a", "b"), [(0, 0), (1, 0), (4, 0), (5, 1), (7, 3), (12, 11)])
def test_leader_probability_integer_counts(a: int, b: int) -> None:
    exact = leader_probability(a, b)
    assert exact == pytest.approx(_posterior_by_integration(a, b), abs=1e-9)
    # The continued fraction agrees with the exact sum.
    assert leader_probability(a + 1e-12, b) == pytest.approx(exact, abs=1e-9)


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.0), (3.7, 1.2), (2.5, 2.5), (1.0, 6.3), (40.2, 30.9)])
def test_leader_probability_weighted_counts(a: float, b: float) -> None:
    assert leader_probability(a, b) == pytest.approx(_posterior_by_integration(a, b), abs=1e-9)
    assert leader_probability(a, b) + leader_probability(b, a) == pytest.approx(1.0)


def test_leader_probability_large_counts_and_bad_input() -> None:
    a, b = 1600, 1500  # past the exact-sum limit: the continued fraction answers
    n = a + b + 1
    exact = sum(math.comb(n, j) for j in range(a + 1)) / (1 << n)
    assert leader_probability(a, b) == pytest.approx(exact, rel=1e-9)
    assert leader_probability(0, 0) == 0.5
    with pytest.raises(ConfigurationError):
        leader_probability(-1, 0)
    with pytest.raises(ConfigurationError):
        leader_probability(math.nan, 0)


# -- protocol and names -------------------------------------------------------------------


async def test_engine_stops_a_decided_vote_and_never_calls_the_rest() -> None:
    from langgraph_fanout.engine.dispatch import dispatch_agents
    from langgraph_fanout.guards.limits import DispatchResourceLimits

    answers = ["Paris", "paris.", "PARIS", "London", "paris", "Rome", "paris", "Oslo", "Oslo"]
    calls: list[Any] = []

    async def voter(prompt: Any) -> dict[str, str]:
        calls.append(prompt)
        return {"answer": answers[len(calls) - 1]}

    done = await dispatch_agents(
        None,
        [{"q": "capital of France?"}],
        agent=voter,
        samples=9,
        limits=DispatchResourceLimits(max_concurrent=1),
        aggregate=majority_vote("answer"),
    )
    # After 6 answers "paris" leads 4-1-1; a rival reaching 4 would tie, and lose to voter 0.
    assert len(calls) == 6
    (vote,) = done.aggregate  # one input, its 9 samples: one vote
    assert isinstance(vote, Vote)
    assert (vote.calls, vote.calls_saved, vote.decided_by) == (6, 3, "exact")
    assert (vote.winner, vote.support, vote.not_voted, vote.decided_early) == ("Paris", 4, 3, True)
    assert [r.status for r in done.results[6:]] == [Status.CANCELLED] * 3


def test_aggregators_satisfy_the_protocol() -> None:
    def plain(results: Sequence[SubAgentResult]) -> int:
        return len(results)

    for aggregator in (collect_all(), majority_vote(), best_result(), first_success(), plain):
        assert isinstance(aggregator, Aggregator)
    assert stop_condition_of(plain) is None
    assert stop_condition_of(collect_all()) is None
    assert stop_condition_of(mean("x")) is None
    first = stop_condition_of(first_success())
    assert isinstance(first, stop_after_successes) and first.k == 1
    assert isinstance(stop_condition_of(majority_vote()), stop_when_decided)


def test_stop_condition_of_rejects_a_wrong_type() -> None:
    class Odd:
        def __call__(self, results: Sequence[SubAgentResult]) -> None:
            return None

        def stop_condition(self) -> str:
            return "stop!"

    with pytest.raises(ConfigurationError, match="not a StopCondition"):
        stop_condition_of(Odd())


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("collect_all", collect_all()),
        ("collect_all:summary", collect_all("summary")),
        ("majority_vote", majority_vote()),
        ("majority-vote:category", majority_vote("category")),
        ("best_result:score", best_result("score")),
        ("rank_by_metric:score", rank_by_metric("score")),
        ("first_success", first_success()),
        (" mean : score ", mean("score")),
        ("median:latency", median("latency")),
    ],
)
def test_aggregator_from_names(spec: str, expected: Aggregator) -> None:
    assert aggregator_from(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("average", "unknown aggregator 'average'; known: best_result, collect_all, first_success"),
        ("first_success:x", "first_success takes no key"),
        ("best_result:", "empty key"),
        (42, "a name or a callable"),
    ],
)
def test_aggregator_from_errors(spec: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        aggregator_from(spec)


def test_aggregator_from_passes_callables_through() -> None:
    custom = majority_vote("x", tie_break="lexical")
    assert aggregator_from(custom) is custom
    assert aggregator_from(len) is len
