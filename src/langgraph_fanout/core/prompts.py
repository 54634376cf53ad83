"""Prompt templates: validated up front, rendered without ever re-parsing arguments.

Templates are the developer's and are never rewritten: only simple ``{name}`` fields are
allowed (no attribute or index access, conversions or format specs), and ``{{``/``}}`` are
literal braces. Arguments are untrusted text: they are spliced in as they are, so braces in
an argument never become template fields.

Example:
    >>> t = PromptTemplate.parse("Classify: {text}")
    >>> t.render({"text": "a {not a field}"})
    'Classify: a {not a field}'
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph_fanout.errors import InvalidInputError

_FORMATTER = string.Formatter()


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """A parsed template: literal pieces and field names, in order."""

    source: str
    literals: tuple[str, ...]
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, template: str) -> PromptTemplate:
        """Parse and validate ``template``.

        Raises:
            InvalidInputError: a field is not a plain identifier, or the braces do not balance.
        """
        if not isinstance(template, str):
            raise InvalidInputError(
                problems=[(-1, f"template must be a str, got {type(template).__name__}")]
            )
        literals: list[str] = []
        fields: list[str] = []
        problems: list[tuple[int, str]] = []
        try:
            parsed = list(_FORMATTER.parse(template))
        except ValueError as exc:
            raise InvalidInputError(
                problems=[(-1, f"{exc} (write '{{{{' for a literal brace)")]
            ) from None
        pending = ""
        for literal, name, spec, conversion in parsed:
            pending += literal
            if name is None:
                continue
            if not name.isidentifier():
                what = "empty field '{}'" if name == "" else f"field {{{name}}}"
                problems.append((-1, f"{what} is not allowed: use a plain name such as {{text}}"))
            elif conversion or spec:
                problems.append((-1, f"field {{{name}}} may not have a conversion or format spec"))
            literals.append(pending)
            fields.append(name)
            pending = ""
        if problems:
            raise InvalidInputError(problems=problems)
        literals.append(pending)
        return cls(template, tuple(literals), tuple(fields))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.fields)

    def render(self, arguments: Mapping[str, Any]) -> str:
        """Splice ``arguments`` into the template (values are converted with ``str``)."""
        fields, literals = self.fields, self.literals
        if not fields:
            return literals[0]
        if len(fields) == 1:  # the common template: one field
            return literals[0] + str(arguments[fields[0]]) + literals[1]
        parts: list[str] = []
        for literal, name in zip(self.literals, self.fields, strict=False):
            parts.append(literal)
            parts.append(str(arguments[name]))
        parts.append(self.literals[-1])
        return "".join(parts)


def check_arguments(arguments: object) -> None:
    """Raise ``InvalidInputError`` unless ``arguments`` is an iterable of inputs.

    A str, bytes or a mapping is one input, not several (iterating it would dispatch its
    characters or its keys): the message says to wrap it in a list.
    """
    if isinstance(arguments, str | bytes | bytearray | Mapping):
        kind = "a mapping" if isinstance(arguments, Mapping) else f"a {type(arguments).__name__}"
        raise InvalidInputError(
            problems=[(-2, f"got {kind}, which is one input: pass a list of inputs, e.g. [value]")]
        )
    if not isinstance(arguments, Iterable):
        raise InvalidInputError(
            problems=[
                (
                    -2,
                    f"must be an iterable of inputs (a list, a generator), "
                    f"got {type(arguments).__name__}",
                )
            ]
        )


def validate_arguments(template: PromptTemplate, arguments: Sequence[Any]) -> list[tuple[int, str]]:
    """Return ``(index, reason)`` for every argument set the template cannot render."""
    problems: list[tuple[int, str]] = []
    needed = template.names
    for index, args in enumerate(arguments):
        if not isinstance(args, Mapping):
            problems.append(
                (index, f"arguments must be a mapping of field names, got {type(args).__name__}")
            )
            continue
        missing = needed.difference(args)
        if missing:
            problems.append((index, f"missing field(s) {sorted(missing)}"))
    return problems
