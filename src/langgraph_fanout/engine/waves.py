"""Voters in waves: each question's voters start only as many at a time as could settle it.

A dispatch whose aggregate is a ``majority_vote`` (``samples=k`` per input, or the voters of
``vote``) hands its tasks to the run through ``VoteWaves`` instead of in input order. A
question (the voters sharing ``Task.question``) opens with the smallest wave that could
settle it (3 of 5 under the exact rule), and each later wave is again the fewest that could,
given the votes so far (``majority_vote.next_wave``). A question's next wave waits for its
current one, so a question takes at most ``waves x slowest call``; meanwhile the window goes
to other questions' voters. Once a question is settled its voters not started end as
``VoterNotNeeded`` (never called, never billed); a question is never ended by another one.

Under a cost cap, a question with a leader whose next wave does not fit what is left of
the budget (worst case, what calls in flight hold counted as spent) ends with that leader
(``decided_by="budget"``) rather than having its voters refused one by one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from langgraph_fanout.aggregate.voting import majority_vote
from langgraph_fanout.core.results import Status, SubAgentResult
from langgraph_fanout.engine.call import Task, ended_with
from langgraph_fanout.errors import VoterNotNeeded

# Whether these voters' worst case fits what is left of the budget.
Affordable = Callable[[Sequence[Task]], bool]


@dataclass(slots=True)
class _Question:
    pending: list[Task]
    results: list[SubAgentResult] = field(default_factory=list)
    unfinished: int = 0  # voters of the current wave (ready or in flight) with no result


def question_of(task: Task) -> int:
    return task.index if task.question is None else task.question


class VoteWaves:
    """The tasks of a dispatch, handed out question by question in waves.

    Args:
        vote: the vote settling each question.
        tasks: every task, the voters of one question next to each other (as
            ``Dispatcher.tasks_from`` and ``vote`` build them).
        affordable: asked before a question's next wave once it has a leader; ``None``
            when there is no cap.
    """

    def __init__(
        self, vote: majority_vote, tasks: Iterator[Task], *, affordable: Affordable | None
    ) -> None:
        self.vote = vote
        self._tasks = tasks
        self._lookahead: Task | None = None
        self._exhausted = False
        self._ready: deque[Task] = deque()
        self._open: dict[int, _Question] = {}
        self._changed = asyncio.Event()
        self._stopped = False
        self._affordable = affordable

    async def next(self, stopped: Callable[[], bool]) -> Task | None:
        """The next task to start, waiting for a wave's results when nothing else can
        start; ``None`` when every task was handed out. Once ``stopped()``, every task
        left is handed out at once (the run ends each as not started)."""
        while True:
            if not self._stopped and stopped():
                self._stopped = True
                for question in self._open.values():
                    self._ready.extend(question.pending)
                    question.unfinished += len(question.pending)
                    question.pending = []
            if self._ready:
                return self._hand_out(self._ready.popleft())
            if self._stopped:
                task = self._pull()
                return None if task is None else self._hand_out(task, fresh=True)
            if self._open_next():
                continue
            if not any(q.unfinished for q in self._open.values()):
                return None
            self._changed.clear()
            await self._changed.wait()

    def finished(self, result: SubAgentResult) -> list[SubAgentResult]:
        """Record a handed-out task's result; return the results of the voters its
        question no longer needs (to be recorded as well)."""
        key = result.question_of
        question = self._open.get(key)
        if question is None:  # pragma: no cover - every result was handed out here
            return []
        question.results.append(result)
        question.unfinished -= 1
        if question.unfinished:
            return []
        ended: list[SubAgentResult] = []
        if not self._stopped and question.pending:
            ended = self._next_wave(key, question)
        if not question.pending and not question.unfinished:
            del self._open[key]
        self._changed.set()
        return ended

    # -- internals -----------------------------------------------------------------------

    def _hand_out(self, task: Task, *, fresh: bool = False) -> Task:
        if fresh:  # handed out after a stop, straight from the input
            key = question_of(task)
            question = self._open.setdefault(key, _Question(pending=[]))
            question.unfinished += 1
        return task

    def _pull(self) -> Task | None:
        if self._lookahead is not None:
            ahead, self._lookahead = self._lookahead, None
            return ahead
        if self._exhausted:
            return None
        pulled = next(self._tasks, None)
        if pulled is None:
            self._exhausted = True
        return pulled

    def _open_next(self) -> bool:
        first = self._pull()
        if first is None:
            return False
        key = question_of(first)
        voters = [first]
        while (task := self._pull()) is not None:
            if question_of(task) != key:
                self._lookahead = task
                break
            voters.append(task)
        question = self._open[key] = _Question(pending=voters)
        wave = self.vote.next_wave([], [t.index for t in voters]) or len(voters)
        self._start(question, wave)
        return True

    def _start(self, question: _Question, wave: int) -> None:
        tasks, question.pending = question.pending[:wave], question.pending[wave:]
        question.unfinished += len(tasks)
        # Open questions first: they finish sooner and keep few questions open at once.
        self._ready.extendleft(reversed(tasks))

    def _next_wave(self, key: int, question: _Question) -> list[SubAgentResult]:
        pending = [t.index for t in question.pending]
        settled = self.vote.decision(question.results, pending)
        if settled is not None:
            return self._not_needed(key, question, *settled)
        wave = self.vote.next_wave(question.results, pending) or len(pending)
        tasks = question.pending[:wave]
        has_leader = any(r.status is Status.OK for r in question.results)
        if self._affordable is not None and has_leader and not self._affordable(tasks):
            reason = (
                f"vote ended within budget: its next {wave} voter(s) do not fit what is "
                "left, so the current leader wins"
            )
            return self._not_needed(key, question, "budget", reason)
        self._start(question, wave)
        return []

    def _not_needed(
        self, key: int, question: _Question, decided_by: str, reason: str
    ) -> list[SubAgentResult]:
        ended = [
            ended_with(t, VoterNotNeeded(question=key, decided_by=decided_by, reason=reason))
            for t in question.pending
        ]
        question.pending = []
        return ended
