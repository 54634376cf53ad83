"""Ensembles: ask several models (or N samples of one) the same question and vote.

The voters run through the engine, so they get the budget, recovery, cache and screening
of every other call. They start in waves (``engine.waves``): only as many at a time as
could settle the vote, so the voters a settled vote does not need are never called (or
billed), whatever the concurrency.

Example:
    >>> result = await vote("Classify: {text}", {"text": receipt},
    ...                     agents=[gpt, claude, gemini, llama, mistral])
    >>> result.aggregate.winner, result.report.calls_saved
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from langchain_core.runnables import RunnableConfig

from langgraph_fanout.aggregate.voting import Votes, majority_vote
from langgraph_fanout.core.prompts import PromptTemplate, validate_arguments
from langgraph_fanout.engine.agents import AgentLike, SubAgent
from langgraph_fanout.engine.call import Task
from langgraph_fanout.engine.dispatch import Dispatcher, DispatchResult, sync_twin
from langgraph_fanout.engine.options import GuardOptions, Guards
from langgraph_fanout.errors import ConfigurationError, InvalidInputError
from langgraph_fanout.guards.limits import DispatchResourceLimits


async def vote(
    question: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    agents: Sequence[AgentLike] | None = None,
    agent: AgentLike | None = None,
    n: int = 1,
    by: majority_vote | None = None,
    limits: DispatchResourceLimits | None = None,
    config: RunnableConfig | None = None,
    guards: Guards | None = None,
    **options: Unpack[GuardOptions],
) -> DispatchResult:
    """Ask every voter ``question`` and return the dispatch with its ``Vote`` as aggregate.

    Voters are each of ``agents`` ``n`` times, or ``agent`` ``n`` times; every voter is a
    distinct sample (its own call and cache key). Results are ordered agent by agent.

    Args:
        question: the prompt, or a template with ``{name}`` fields filled from ``arguments``.
        arguments: untrusted values for the template (screened like any dispatch's).
        agents: several models or agents (e.g. five providers).
        agent: one model sampled ``n`` times (use a temperature above 0).
        n: samples per agent.
        by: the vote (default ``majority_vote()``: exact early decision, ties to the first
            voter); pass ``majority_vote(early="adaptive", confidence=0.95)`` to stop sooner.
        limits: resource limits (budget, concurrency, deadline...).
        config: passed to every voter call.
        guards / **options: the guards, as for ``dispatch_agents`` (``policy``, ``cache``,
            ``prices``...).

    Returns:
        A ``DispatchResult`` whose ``aggregate`` is the ``Vote`` and whose report counts the
        voters that were never called (``calls_saved``).

    Raises:
        ConfigurationError: neither or both of ``agents``/``agent``, or ``n < 1``.
        InvalidInputError: the template does not fit ``arguments``.
    """
    if (agents is None) == (agent is None):
        raise ConfigurationError("pass exactly one of agents=[...] (several models) or agent=")
    if n < 1:
        raise ConfigurationError(f"n must be >= 1, got {n}")
    voters = [SubAgent.of(a) for a in (agents if agents is not None else [agent])]
    if not voters:
        raise ConfigurationError("agents=[] has no voter")
    names = [v.name for v in voters]
    if len(set(names)) != len(names):
        raise ConfigurationError(
            f"voter names must be distinct (breakers and cache keys use them): {names}; "
            "name them with SubAgent.of(model, name=...)"
        )
    template = PromptTemplate.parse(question)
    args = dict(arguments or {})
    problems = validate_arguments(template, [args])
    if problems:
        raise InvalidInputError(problems=problems)
    prompt = template.render(args)
    tasks = [
        Task(
            index=i * n + s,
            agent=voter,
            prompt=prompt,
            arguments=args if template.fields else None,
            template=template,
            sample=s,
            question=0,
        )
        for i, voter in enumerate(voters)
        for s in range(n)
    ]
    ballot = by if by is not None else majority_vote()
    dispatcher = Dispatcher(
        limits=limits,
        aggregate=ballot,
        config=config,
        guards=guards,
        **options,
    )
    return one_vote(await dispatcher.run_tasks(tasks))


def one_vote(done: DispatchResult) -> DispatchResult:
    """``done`` with the one ``Vote`` of its single question as aggregate (not ``Votes``)."""
    if isinstance(done.aggregate, Votes) and len(done.aggregate) == 1:
        return DispatchResult(done.results, done.report, done.aggregate[0])
    return done


vote_sync = sync_twin(vote, name="vote_sync")
