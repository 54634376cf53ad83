"""How many voter calls early decision saves, and what it costs in accuracy. Prints JSON.

Simulated questions, each answered by up to 15 independent voters: the voter accuracy of a
question is drawn in [0.55, 0.9]; wrong answers fall on the 3 other labels, evenly
("uniform") or split at random so that one distractor attracts more ("skewed"). Voters
write the same label in different spellings (" Paris.", "PARIS"), so normalisation is
exercised too. Every strategy sees the same voter stream per question (a paired
comparison):

- ``fixed``: all 15 voters, plain majority (``majority_vote(early=None)``);
- ``exact``: ``majority_vote(early="exact").stop_condition()``, fed one finished voter at
  a time as the engine does; the answer is always the fixed-15 answer;
- ``adaptive@c``: the Adaptive-Consistency Beta rule at confidence ``c`` (max 15 voters);
- ``bayes_oracle@eps`` (uniform only, a reference, not a product rule): stops when the
  true posterior error, computed with the simulation's own prior, is below ``eps``. No
  stopping rule that sees only the counts can do much better, so it shows what any
  target can ask for.

Run: ``.venv/bin/python benchmarks/voting.py [--questions 10000] [--seed 2023]``
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from langgraph_fanout.aggregate.extract import normalize_answer
from langgraph_fanout.aggregate.voting import majority_vote
from langgraph_fanout.core.results import Status, SubAgentResult
from langgraph_fanout.core.stopping import DispatchProgress
from langgraph_fanout.errors import CallCancelled

LABELS = ("Paris", "London", "Rome", "Berlin")
SPELLINGS: tuple[Callable[[str], str], ...] = (
    lambda s: s,
    lambda s: s.upper(),
    lambda s: f" {s.lower()}.",
    lambda s: f"**{s}**",
)
VOTERS = 15
ACCURACY_RANGE = (0.55, 0.9)
CONFIDENCES = (0.85, 0.9, 0.95, 0.97, 0.99)
ORACLE_EPS = (0.01, 0.003, 0.001)
TARGET_RATIO = 2.5
TARGET_LOSS_PP = 0.1


def draw_question(rng: random.Random, skewed: bool) -> tuple[str, list[SubAgentResult]]:
    """One question: its correct label and the results of all 15 voters."""
    accuracy = rng.uniform(*ACCURACY_RANGE)
    correct = rng.randrange(len(LABELS))
    if skewed:
        split = [rng.gammavariate(1.0, 1.0) for _ in range(len(LABELS) - 1)]
    else:
        split = [1.0] * (len(LABELS) - 1)
    wrong = [i for i in range(len(LABELS)) if i != correct]
    weights = [accuracy] + [(1 - accuracy) * part / sum(split) for part in split]
    picks = rng.choices([correct, *wrong], weights=weights, k=VOTERS)
    results = [
        SubAgentResult(
            index=i,
            agent=f"voter-{i}",
            status=Status.OK,
            output={"answer": rng.choice(SPELLINGS)(LABELS[label])},
        )
        for i, label in enumerate(picks)
    ]
    return LABELS[correct], results


def run_stopped(vote: majority_vote, results: Sequence[SubAgentResult]) -> tuple[int, Any, bool]:
    """Feed voters one at a time to the stop condition; count the vote like the engine would."""
    condition = vote.stop_condition()
    progress = DispatchProgress(total=len(results), finished=[])
    for result in results:
        progress.finished.append(result)
        progress.started += 1
        progress.succeeded += 1
        if condition is not None and condition(progress) is not None:
            break
    calls = len(progress.finished)
    reason = CallCancelled(reason="vote decided")
    rest = [
        SubAgentResult.from_error(index=r.index, agent=r.agent, error=reason)
        for r in results[calls:]
    ]
    outcome = vote([*progress.finished, *rest])
    return calls, outcome.winner_key, outcome.decided_early


# -- the reference: the true posterior of the simulated population (uniform distractors) --

_GRID = [
    ACCURACY_RANGE[0] + (ACCURACY_RANGE[1] - ACCURACY_RANGE[0]) * (k + 0.5) / 200
    for k in range(200)
]


@cache
def _oracle_error(counts: tuple[int, ...]) -> float:
    """P(the leading label is wrong | sorted counts), with the simulation's prior."""
    n = sum(counts)
    wrong_share = len(LABELS) - 1
    likelihood = [
        math.fsum(p ** counts[c] * ((1 - p) / wrong_share) ** (n - counts[c]) for p in _GRID)
        for c in range(len(counts))
    ]
    return 1.0 - likelihood[0] / math.fsum(likelihood)


def run_oracle(eps: float, results: Sequence[SubAgentResult]) -> tuple[int, Any]:
    answers = [normalize_answer(r.output["answer"]) for r in results]
    counts: Counter[Any] = Counter()
    calls = len(answers)
    for step, answer in enumerate(answers, start=1):
        counts[answer] += 1
        ranked = sorted([counts[label.lower()] for label in LABELS], reverse=True)
        if ranked[0] > ranked[1] and _oracle_error(tuple(ranked)) < eps:
            calls = step
            break
    seen = answers[:calls]
    tally = Counter(seen)
    top = max(tally.values())
    # Same tie rule as majority_vote's default: the answer of the lowest-index voter.
    winner = next(a for a in seen if tally[a] == top)
    return calls, winner


def summarise(calls: list[int], correct: list[bool], fixed_correct: list[bool]) -> dict[str, Any]:
    n = len(calls)
    mean_calls = sum(calls) / n
    accuracy = sum(correct) / n
    fixed_accuracy = sum(fixed_correct) / n
    return {
        "calls_per_question": round(mean_calls, 4),
        "call_ratio_vs_fixed": round(VOTERS / mean_calls, 3),
        "accuracy": round(accuracy, 5),
        "accuracy_loss_pp": round(100 * (fixed_accuracy - accuracy), 3),
        "questions_lost": sum(f and not c for f, c in zip(fixed_correct, correct, strict=True)),
        "questions_gained": sum(c and not f for f, c in zip(fixed_correct, correct, strict=True)),
    }


def scenario(questions: int, seed: int, skewed: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    drawn = [draw_question(rng, skewed) for _ in range(questions)]
    truth = [normalize_answer(label) for label, _ in drawn]

    fixed = majority_vote("answer", early=None)
    fixed_correct = [
        fixed(results).winner_key == t for (_, results), t in zip(drawn, truth, strict=True)
    ]
    out: dict[str, Any] = {
        "fixed_n15": {
            "calls_per_question": float(VOTERS),
            "accuracy": round(sum(fixed_correct) / questions, 5),
        }
    }

    strategies: dict[str, majority_vote] = {"exact": majority_vote("answer", early="exact")}
    for confidence in CONFIDENCES:
        strategies[f"adaptive@{confidence}"] = majority_vote(
            "answer", early="adaptive", confidence=confidence
        )
    for name, vote in strategies.items():
        calls, correct, early = [], [], 0
        for (_, results), t in zip(drawn, truth, strict=True):
            used, winner, decided_early = run_stopped(vote, results)
            calls.append(used)
            correct.append(winner == t)
            early += decided_early
        out[name] = summarise(calls, correct, fixed_correct) | {
            "decided_early_share": round(early / questions, 4)
        }

    if not skewed:
        for eps in ORACLE_EPS:
            calls, correct = [], []
            for (_, results), t in zip(drawn, truth, strict=True):
                used, winner = run_oracle(eps, results)
                calls.append(used)
                correct.append(winner == t)
            out[f"bayes_oracle@{eps}"] = summarise(calls, correct, fixed_correct)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2023)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    scenarios = {
        "uniform_distractors": scenario(args.questions, args.seed, skewed=False),
        "skewed_distractors": scenario(args.questions, args.seed + 1, skewed=True),
    }
    meeting = {
        f"{name}/{strategy}": row["call_ratio_vs_fixed"]
        for name, rows in scenarios.items()
        for strategy, row in rows.items()
        if strategy.startswith("adaptive")
        and row["call_ratio_vs_fixed"] >= TARGET_RATIO
        and row["accuracy_loss_pp"] <= TARGET_LOSS_PP
    }
    print(
        json.dumps(
            {
                "benchmark": "voting",
                "questions": args.questions,
                "seed": args.seed,
                "voters_max": VOTERS,
                "labels": len(LABELS),
                "voter_accuracy": list(ACCURACY_RANGE),
                "scenarios": scenarios,
                "target": {
                    "call_ratio_at_least": TARGET_RATIO,
                    "accuracy_loss_pp_at_most": TARGET_LOSS_PP,
                    "met_by": meeting,
                },
                "seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
