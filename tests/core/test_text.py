"""``as_text``: the one way a value becomes prompt text."""

from __future__ import annotations

import dataclasses

from langchain_core.messages import AIMessage
from pydantic import BaseModel

from langgraph_fanout import Status, SubAgentResult
from langgraph_fanout.core.text import as_text


class Invoice(BaseModel):
    vendor: str
    total: float


@dataclasses.dataclass
class Line:
    item: str


class WithText:
    @property
    def text(self) -> str:
        return "from a text property"


def test_strings_messages_and_results_are_their_text() -> None:
    assert as_text("plain") == "plain"
    assert as_text(AIMessage("paris")) == "paris"
    result = SubAgentResult(index=0, agent="a", status=Status.OK, output=AIMessage("lyon"))
    assert as_text(result) == "lyon"
    assert as_text(WithText()) == "from a text property"


def test_anything_else_is_json_with_messages_models_and_dataclasses_inside() -> None:
    value = {"b": AIMessage("x"), "a": [Invoice(vendor="Café", total=12.5), Line("€")]}
    assert as_text(value) == '{"b": "x", "a": [{"vendor": "Café", "total": 12.5}, {"item": "€"}]}'
    assert as_text(value, sort_keys=True).startswith('{"a": ')
    assert as_text({"when": {3}}) == '{"when": "{3}"}'  # JSON cannot hold a set: its str()
