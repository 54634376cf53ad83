"""What the model sends the tools: argument schemas, their errors, and the prompts built
from them.

The dispatch and delegate tools narrow these schemas to their registry's names
(``one_of``); invalid arguments come back to the model as ``explain_validation_error``'s
message. ``template_and_arguments`` turns the model's instruction and items into the
engine's template and argument sets; ``vote_template`` builds the vote tool's prompt.

Example:
    >>> template_and_arguments("Classify: {item}", ["a", "b"])
    ('Classify: {item}', [{'item': 'a'}, {'item': 'b'}])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

from langchain_core.tools import ToolException
from pydantic import BaseModel, Field, ValidationError
from pydantic.v1 import ValidationError as ValidationErrorV1

from langgraph_fanout.core.prompts import PromptTemplate
from langgraph_fanout.core.text import as_text
from langgraph_fanout.errors import InvalidInputError

AggregateName: TypeAlias = Literal[
    "collect_all", "majority_vote", "best_result", "first_success", "mean", "median"
]
"""Aggregations a model may ask the dispatch tool for."""


# --------------------------------------------------------------------------- argument schemas


class DispatchInput(BaseModel):
    """Arguments of the dispatch tool (the tool narrows ``agent`` to its registry's names)."""

    instruction: str = Field(
        min_length=1,
        description=(
            "What each sub-agent must do. Put {item} where the item goes, or {name} fields "
            "of dict items; without any field the item is appended. Write {{ and }} for "
            "literal braces."
        ),
    )
    items: list[str | dict[str, Any]] = Field(
        min_length=1,
        description="The items: one sub-agent call each (strings, or objects with the fields).",
    )
    agent: str | None = Field(
        default=None, description="Which agent runs the items (the tool's default if omitted)."
    )
    aggregate: AggregateName | None = Field(
        default=None,
        description=(
            "How to combine the results: collect_all (every output, the default), "
            "majority_vote, best_result, first_success (stops at the first), mean, median."
        ),
    )
    key: str | None = Field(
        default=None,
        description="JSON field to read from each output for the aggregate (e.g. 'category').",
    )


class DelegateInput(BaseModel):
    """Arguments of the delegate tool (the tool narrows ``agent`` to its registry's names)."""

    agent: str = Field(description="The agent to hand the task to.")
    task: str = Field(min_length=1, description="What the agent must do, in full sentences.")
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Named inputs the task needs (documents, data, earlier results).",
    )


class VoteInput(BaseModel):
    """Arguments of the vote tool."""

    question: str = Field(min_length=1, description="The question every voter answers.")
    options: list[str] | None = Field(
        default=None,
        description="The allowed answers; voters are told to answer with exactly one.",
    )
    context: str | None = Field(
        default=None, description="Material the question is about (a document, a message)."
    )


def explain_validation_error(error: ValidationError | ValidationErrorV1) -> str:
    """Turn invalid tool arguments into a message the model can act on.

    Example:
        >>> explain_validation_error(error)
        "invalid arguments, nothing was run: agent: Input should be 'a' or 'b'. Fix ..."
    """
    problems = []
    for detail in error.errors()[:6]:
        where = ".".join(str(part) for part in detail["loc"]) or "arguments"
        problems.append(f"{where}: {detail['msg']}")
    return (
        f"invalid arguments, nothing was run: {'; '.join(problems)}. "
        "Fix them and call the tool again."
    )


def one_of(names: Sequence[str]) -> Any:
    """``Literal[names]``: the JSON schema then lists them as an enum the model picks from."""
    return Literal.__getitem__(tuple(names))


# --------------------------------------------------------------------------- prompts


def template_and_arguments(instruction: str, items: Sequence[Any]) -> tuple[str, list[Any]]:
    """The engine's template and argument sets for the model's instruction and items."""
    try:
        parsed = PromptTemplate.parse(instruction)
    except InvalidInputError as exc:
        raise ToolException(
            f"invalid instruction: {exc.message}. Use {{item}} or plain {{name}} fields and "
            "write {{ and }} for literal braces."
        ) from None
    if not parsed.fields:  # no field: the item goes after the instruction
        return instruction + "\n\n{item}", [
            {"item": as_text(item, sort_keys=True)} for item in items
        ]
    arguments: list[Any] = []
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            arguments.append(dict(item))
        elif parsed.names == {"item"}:
            arguments.append({"item": item})
        else:
            raise ToolException(
                f"item {index} is a string but the instruction uses the fields "
                f"{sorted(parsed.names)}: pass objects with those fields, or use {{item}}"
            )
    return instruction, arguments


def vote_template(
    question: str, options: Sequence[str] | None, *, with_context: bool
) -> PromptTemplate:
    text = question
    if options:
        text += "\n\nAnswer with exactly one of: " + ", ".join(options)
    if not with_context:
        return PromptTemplate(text, (text,), ())
    # Built directly: the question is the model's own text, braces included, and the
    # context is the one untrusted argument (screened by the pipeline).
    return PromptTemplate(text, (text + "\n\nContext:\n", ""), ("context",))
