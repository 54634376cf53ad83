"""Redaction coverage: every default detector's samples in every shape an output can take.

Each positive sample sits in a sentence that is put in a plain string, a dict, list, tuple,
namedtuple, set, frozenset and a nested mixture, in LangChain messages (content string and
content blocks, ``additional_kwargs["function_call"]`` arguments with and without JSON
escapes, ``tool_calls``, ``invalid_tool_calls``, a streamed ``AIMessageChunk``'s
``tool_call_chunks``, ``response_metadata``, a ``ToolMessage``'s content and artifact), in
a pydantic model and in dataclasses (frozen too). For each: nothing leaks (the secret is
nowhere in the output's repr or JSON), every level of the output has its input's type, the
non-secret parts survive, the report counts each occurrence, and the input is not mutated.
Benign look-alikes (dates, long ids, prices, versions, times, spaced number lists) come back
as themselves.

Streaming limitation: the redactor is stateless, so it sees one chunk at a time; a secret
whose characters are split across two chunks' partial JSON is a secret in neither chunk.
The chunk tests therefore give each chunk whole values, and one test checks the remedy:
merged chunks (``a + b``, as LangChain accumulates a stream) are redacted like a message.

Keys and tokens are assembled from pieces so that the source holds nothing a secret
scanner would flag.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import namedtuple
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from pydantic import BaseModel, ConfigDict
from pydantic_core import to_jsonable_python

from langgraph_fanout.guards.redaction import (
    DEFAULT_DETECTORS,
    Match,
    RedactionReport,
    Redactor,
)


@dataclasses.dataclass(frozen=True)
class Sample:
    kind: str
    snippet: str  # what is written in the sentence
    secret: str = ""  # what must not survive; the whole snippet unless given

    def __post_init__(self) -> None:
        if not self.secret:
            object.__setattr__(self, "secret", self.snippet)
        assert self.secret in self.snippet


def _alnum(n: int, seed: str = "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv") -> str:
    return (seed * (n // len(seed) + 1))[:n]


STRIPE = "4eC39HqLyjWDarjtT1zdp7dc"
SAMPLES: list[Sample] = [
    Sample("EMAIL", "alice.smith+tag@example.co.uk"),
    Sample("EMAIL", "bob@mail.example.org"),
    # phone_us: punctuated, and new, unpunctuated with a valid NANP shape
    Sample("PHONE", "(555) 123-4567"),
    Sample("PHONE", "555-123-4567"),
    Sample("PHONE", "1-800-555-0199"),
    Sample("PHONE", "415.555.0134"),
    Sample("PHONE", "(415) 555 0134"),
    Sample("PHONE", "4155550134"),
    Sample("PHONE", "6465550187"),
    Sample("PHONE", "call 415 555 0134", "415 555 0134"),
    Sample("PHONE", "tel: 646 555 0187", "646 555 0187"),
    # phone_intl
    Sample("PHONE", "+44 20 7946 0958"),
    Sample("PHONE", "+1 415 555 0134"),
    Sample("SSN", "123-45-6789"),
    Sample("SSN", "078-05-1120"),
    Sample("CREDIT_CARD", "4111 1111 1111 1111"),
    Sample("CREDIT_CARD", "5555-5555-5555-4444"),
    Sample("CREDIT_CARD", "378282246310005"),
    Sample("IBAN", "GB82 WEST 1234 5698 7654 32"),
    Sample("IBAN", "DE89370400440532013000"),
    Sample("IP_ADDRESS", "192.168.1.42"),
    Sample("IP_ADDRESS", "10.20.30.40"),
    Sample("IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"),
    Sample("IP_ADDRESS", "fe80::1ff:fe23:4567:890a"),
    Sample("OPENAI_KEY", "sk-" + "proj-" + _alnum(30)),
    Sample("OPENAI_KEY", "sk-" + _alnum(40)),
    Sample("ANTHROPIC_KEY", "sk-" + "ant-api03-" + _alnum(24) + "-" + _alnum(6)),
    Sample("ANTHROPIC_KEY", "sk-" + "ant-admin01-" + _alnum(32, "Zy9Xw8Vu7")),
    Sample("AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
    Sample("AWS_ACCESS_KEY", "AS" + "IAY34FZKBOKMUTVV7A"),
    Sample("GITHUB_TOKEN", "gh" + "p_" + _alnum(36)),
    Sample("GITHUB_TOKEN", "gh" + "o_" + _alnum(36, "Zz9Yy8Xx7")),
    Sample("GITHUB_TOKEN", "github" + "_pat_11ABCDEFG0123456789_" + _alnum(26)),
    Sample("GITHUB_TOKEN", "github" + "_pat_" + _alnum(82, "Xy7_Wz8")),
    Sample(
        "JWT",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    Sample("JWT", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlLXBhcnQ"),
    Sample("BEARER_TOKEN", "Bearer abcDEF123456ghiJKL789mno", "abcDEF123456ghiJKL789mno"),
    Sample("BEARER_TOKEN", "bearer 0a1b2c3d4e5f6a7b8c9d", "0a1b2c3d4e5f6a7b8c9d"),
    Sample("STRIPE_KEY", "sk" + "_live_" + STRIPE),
    Sample("STRIPE_KEY", "sk" + "_test_" + STRIPE),
    Sample("STRIPE_KEY", "rk" + "_live_" + _alnum(32)),
    Sample("STRIPE_KEY", "rk" + "_test_" + _alnum(16)),
    Sample("STRIPE_KEY", "pk" + "_live_" + _alnum(40)),
    Sample("SLACK_TOKEN", "xox" + "b-123456789012-1234567890123-" + _alnum(24)),
    Sample("SLACK_TOKEN", "xox" + "p-123456789012-123456789012-123456789012-" + "0a1b2c3d" * 4),
    Sample("SLACK_TOKEN", "xox" + "a-2-123456789012-" + _alnum(20)),
    Sample("SLACK_TOKEN", "xox" + "s-123456789012-" + _alnum(12)),
    Sample("GOOGLE_API_KEY", "AI" + "zaSy" + _alnum(33)),
    Sample("GOOGLE_API_KEY", "AI" + "zaSyD-9tSrke72PouQMnMX-a7eZSW0jkF_BWY"),
]
SAMPLE_IDS = [f"{s.kind}-{i}" for i, s in enumerate(SAMPLES)]
NEW_KINDS = {"STRIPE_KEY", "SLACK_TOKEN", "GOOGLE_API_KEY"}

PREFIX, SUFFIX = "Note for Ada Lovelace: ", ", thanks."


def _sentence(snippet: str) -> str:
    return f"{PREFIX}{snippet}{SUFFIX}"


# --- shapes -------------------------------------------------------------------------------


class Inner(BaseModel):
    note: str
    score: float = 1.0


class Outer(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str
    inner: Inner
    items: list[str]
    meta: dict[str, Any]
    count: int = 7


@dataclasses.dataclass
class Plain:
    text: str
    tags: list[str]
    count: int = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Frozen:
    text: str
    pair: tuple[str, ...]


Pair = namedtuple("Pair", "left right")


def _call(name: str, args: Any, call_id: str) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def _shapes(t: str) -> dict[str, tuple[Any, tuple[str, ...], int]]:
    """Shape name -> (value holding ``t``, non-secret strings that must survive, how many
    times ``t`` occurs in it)."""
    escaped = json.dumps({"body": t.replace(": ", ":\n"), "urgent": True})
    return {
        "str": (t, (), 1),
        "dict": ({"note": t, "n": 1}, ("note",), 1),
        "list": (["keep", t, 3], ("keep",), 1),
        "tuple": (("keep", t), ("keep",), 1),
        "namedtuple": (Pair("keep", t), ("keep",), 1),
        "set": ({"keep", t}, ("keep",), 1),
        "frozenset": (frozenset({"keep", t}), ("keep",), 1),
        "nested": ({"a": [{"b": (t, {"c": [t]})}], "k": "keep"}, ("keep",), 2),
        "human_message": (HumanMessage(content=t, id="h-1"), ("h-1",), 1),
        "ai_message": (AIMessage(content=t, id="run-1"), ("run-1",), 1),
        "content_blocks": (
            AIMessage(
                content=[
                    {"type": "text", "text": t},
                    {"type": "reasoning", "reasoning": t},
                    {"type": "thinking", "thinking": t, "signature": "sig-1"},
                    {"type": "tool_use", "id": "toolu_1", "name": "send_note", "input": {"url": t}},
                    "plain " + t,
                ]
            ),
            ("toolu_1", "send_note", "sig-1", "plain"),
            5,
        ),
        "function_call": (
            AIMessage(
                content="",
                additional_kwargs={
                    "function_call": {"name": "send_note", "arguments": json.dumps({"body": t})}
                },
            ),
            ("send_note", "body"),
            1,
        ),
        "function_call_escaped": (
            AIMessage(
                content="",
                additional_kwargs={"function_call": {"name": "send_note", "arguments": escaped}},
            ),
            ("send_note", "urgent"),
            1,
        ),
        "tool_calls": (
            AIMessage(content="", tool_calls=[_call("send_note", {"body": t, "n": 1}, "call_1")]),
            ("send_note", "call_1"),
            1,
        ),
        "invalid_tool_calls": (
            AIMessage(
                content="",
                invalid_tool_calls=[
                    {
                        "name": "send_note",
                        "args": '{"body": ' + json.dumps(t),  # truncated JSON
                        "id": "call_2",
                        "error": "unterminated",
                        "type": "invalid_tool_call",
                    }
                ],
            ),
            ("send_note", "call_2", "unterminated"),
            1,
        ),
        # Partial JSON; the chunk's parsed tool_calls hold the value a second time.
        "tool_call_chunks": (
            AIMessageChunk(
                content="",
                tool_call_chunks=[
                    {
                        "name": "send_note",
                        "args": '{"body": ' + json.dumps(t),
                        "id": "call_3",
                        "index": 0,
                        "type": "tool_call_chunk",
                    }
                ],
            ),
            ("send_note", "call_3"),
            2,
        ),
        "response_metadata": (
            AIMessage(
                content="ok",
                response_metadata={"model_name": "gpt-4o", "finish_reason": "stop", "note": t},
            ),
            ("gpt-4o", "stop"),
            1,
        ),
        "tool_message": (
            ToolMessage(
                content=t,
                tool_call_id="call_9",
                name="lookup",
                artifact={"data": [{"note": t, "n": 2}], "source": "crm"},
            ),
            ("call_9", "lookup", "crm"),
            2,
        ),
        "pydantic": (
            Outer(title=t, inner=Inner(note=t), items=[t, "keep"], meta={"k": t}),
            ("keep",),
            4,
        ),
        "dataclass": (Plain(text=t, tags=[t, "keep"]), ("keep",), 2),
        "frozen_dataclass": (Frozen(text=t, pair=("keep", t)), ("keep",), 2),
        "mixture": (
            {
                "messages": [AIMessage(content=[{"type": "text", "text": t}])],
                "records": (Frozen(text=t, pair=("keep", t)),),
                "tags": frozenset({t, "other"}),
                "model": Inner(note=t),
            },
            ("keep", "other"),
            5,
        ),
    }


SHAPES = list(_shapes("x"))


def _dump(value: Any) -> str:
    """Everything an output shows: its repr and its JSON."""
    return repr(value) + json.dumps(to_jsonable_python(value, fallback=repr))


def _assert_same_types(old: Any, new: Any, path: str = "value") -> None:
    assert type(new) is type(old), path
    if isinstance(old, dict):
        assert new.keys() == old.keys(), path
        for k in old:
            _assert_same_types(old[k], new[k], f"{path}[{k!r}]")
    elif isinstance(old, (list, tuple)):
        assert len(new) == len(old), path
        for i, (o, n) in enumerate(zip(old, new, strict=True)):
            _assert_same_types(o, n, f"{path}[{i}]")
    elif isinstance(old, (set, frozenset)):
        assert {type(x) for x in new} <= {type(x) for x in old}, path
    elif isinstance(old, BaseModel):
        for name in type(old).model_fields:
            _assert_same_types(getattr(old, name), getattr(new, name), f"{path}.{name}")
    elif dataclasses.is_dataclass(old):
        for f in dataclasses.fields(old):
            _assert_same_types(getattr(old, f.name), getattr(new, f.name), f"{path}.{f.name}")


# --- positives ----------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_each_sample_is_found_with_its_exact_span(sample: Sample) -> None:
    text = _sentence(sample.snippet)
    start = text.index(sample.secret)
    assert Redactor().find(text) == [Match(start, start + len(sample.secret), sample.kind)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_each_sample_is_redacted_in_every_shape(sample: Sample, shape: str) -> None:
    original, survivors, occurrences = _shapes(_sentence(sample.snippet))[shape]
    snapshot = copy.deepcopy(original)

    out, report = Redactor().redact(original)

    dump = _dump(out)
    assert sample.secret not in dump
    assert f"[REDACTED:{sample.kind}]" in dump
    _assert_same_types(original, out)
    for part in (PREFIX.strip(), SUFFIX.strip(), *survivors):
        assert part in dump, part
    assert report.counts == {sample.kind: occurrences}
    assert original == snapshot, "the input was mutated"


@pytest.mark.parametrize("sample", SAMPLES, ids=SAMPLE_IDS)
def test_a_stream_whose_chunks_carry_whole_values_is_redacted_chunk_by_chunk(
    sample: Sample,
) -> None:
    head = AIMessageChunk(
        content="",
        tool_call_chunks=[
            {
                "name": "send_note",
                "args": '{"to": "ada", ',
                "id": "c1",
                "index": 0,
                "type": "tool_call_chunk",
            }
        ],
    )
    body = AIMessageChunk(
        content="",
        tool_call_chunks=[
            {
                "name": None,
                "args": '"body": ' + json.dumps(_sentence(sample.snippet)) + "}",
                "id": None,
                "index": 0,
                "type": "tool_call_chunk",
            }
        ],
    )
    redacted = [Redactor().redact(chunk)[0] for chunk in (head, body)]
    assert all(sample.secret not in _dump(chunk) for chunk in redacted)
    merged = redacted[0] + redacted[1]
    assert merged.tool_calls[0]["args"]["to"] == "ada"
    assert sample.secret not in merged.tool_calls[0]["args"]["body"]


def test_a_secret_split_across_chunks_is_redacted_once_the_chunks_are_merged() -> None:
    # Neither chunk holds the number; their sum (what a stream accumulates) does.
    first = AIMessageChunk(
        content="",
        tool_call_chunks=[
            {
                "name": "send",
                "args": '{"body": "call 41555',
                "id": "c1",
                "index": 0,
                "type": "tool_call_chunk",
            }
        ],
    )
    second = AIMessageChunk(
        content="",
        tool_call_chunks=[
            {"name": None, "args": '50134 now"}', "id": None, "index": 0, "type": "tool_call_chunk"}
        ],
    )
    out, report = Redactor().redact(first + second)
    assert out.tool_calls[0]["args"] == {"body": "call [REDACTED:PHONE] now"}
    assert "4155550134" not in _dump(out)
    assert report.counts == {"PHONE": 2}  # the chunks' raw args and the parsed tool call


def test_redacted_set_items_may_merge_and_are_still_counted() -> None:
    out, report = Redactor().redact({"a@b.com", "c@d.org", "keep"})
    assert out == {"[REDACTED:EMAIL]", "keep"}
    assert report.counts == {"EMAIL": 2}


def test_subclasses_of_containers_keep_their_type_and_attributes() -> None:
    class Tags(set[str]):
        source = "crm"

    class Frozen2(frozenset[str]):
        pass

    class Rows(list[str]):
        pass

    tags = Tags({"a@b.com"})
    tags.source = "erp"
    value = {"tags": tags, "frozen": Frozen2({"a@b.com"}), "rows": Rows(["a@b.com"])}
    out, _ = Redactor().redact(value)
    assert type(out["tags"]) is Tags and out["tags"].source == "erp"
    assert type(out["frozen"]) is Frozen2 and type(out["rows"]) is Rows
    assert out["tags"] == out["frozen"] == {"[REDACTED:EMAIL]"}
    assert out["rows"] == ["[REDACTED:EMAIL]"]


def test_a_dataclass_that_validates_is_copied_without_rerunning_its_checks() -> None:
    @dataclasses.dataclass(frozen=True)
    class Contact:
        email: str
        kind: str = dataclasses.field(default="person", init=False)

        def __post_init__(self) -> None:
            if "@" not in self.email:
                raise ValueError("not an e-mail")

    out, report = Redactor().redact(Contact(email="bob@example.com"))
    assert (type(out), out.email, out.kind) == (Contact, "[REDACTED:EMAIL]", "person")
    assert report.counts == {"EMAIL": 1}


def test_pydantic_extra_fields_are_redacted() -> None:
    class Loose(BaseModel):
        model_config = ConfigDict(extra="allow")

        title: str

    out, _ = Redactor().redact(Loose(title="ok", contact="call 4155550134"))
    assert type(out) is Loose
    assert out.model_extra == {"contact": "call [REDACTED:PHONE]"}


def test_binary_data_is_left_alone_but_short_base64_like_text_is_not() -> None:
    blob = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" + "+AKIAIOSFODNN7EXAMPLE/" + "Q" * 40) * 20
    data_url = "data:image/png;base64," + blob[:200]
    key = "sk" + "_live_" + STRIPE  # base64 alphabet, but a key's length
    value = {"data": blob, "image_url": {"url": data_url}, "token": key}
    out, report = Redactor().redact(value)
    assert out["data"] is blob and out["image_url"] is value["image_url"]
    assert out["token"] == "[REDACTED:STRIPE_KEY]"
    assert report.counts == {"STRIPE_KEY": 1}


def test_data_under_a_binary_sounding_key_is_still_redacted() -> None:
    message = ToolMessage(
        content=[{"type": "text", "text": "done", "url": "https://x.example/?to=bob@example.com"}],
        tool_call_id="c1",
        artifact={"data": {"url": "call 4155550134"}},
    )
    out, report = Redactor().redact(message)
    assert out.content[0]["url"] == "https://x.example/?to=[REDACTED:EMAIL]"
    assert out.artifact == {"data": {"url": "call [REDACTED:PHONE]"}}
    assert report.counts == {"EMAIL": 1, "PHONE": 1}


# --- negatives ----------------------------------------------------------------------------

BENIGN = [
    "Dates: 2024-05-01, 01/05/2024, 2024.05.01, 20240501 and 2024-05-01T12:00:01Z.",
    "Compact stamps 2024050112 and 2405011230 in the log.",
    "Order 1234567890123456 shipped; invoice 98765432109876543 is paid.",
    "Ids INV-4155550134, #4155550134, x4155550134, 4155550134-01, 41555501349, 94155550134.",
    "Prices: $4,155.50, $4155550134, 4155550134.50 EUR and 1,234,567.89 in total.",
    "Versions 4.15.555, v2.4.1-rc3, 10.5.3 and build 2024.05.3 are out.",
    "Times 12:30:45, 23:59:59.999 and 1714564801 seconds (1714564801123 ms).",
    "Sizes 256 512 1024 2048, and the numbers 256 512 1024 2048 too.",
    "Measurements 212 555 1234 mm and 415 555 0134 units.",
    "Not area codes: 4115550134, 2125110134, 2905550134, 1415555013, 0415555013.",
    "ISBN 0-306-40615-2 and 3161484100, uuid 123e4567-e89b-12d3-a456-426614174000.",
    "Short or public keys: sk_live_short, rk_test_tooShort1, pk_test_" + STRIPE + ".",
    "Slack-ish xoxb-12 and xoxq-123456789012-abcdef, Google-ish AIza" + _alnum(34) + ".",
    "Too long: AIza" + _alnum(36) + " and a clearer pricing page, nearer the deadline.",
    "Escapes alone: line one\\nline two\\tand \\u00e9t\\u00e9 2024-05-01.",
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("text", BENIGN)
def test_benign_text_comes_back_unchanged_in_every_shape(text: str, shape: str) -> None:
    assert Redactor().find(text) == []
    original, _, _ = _shapes(text)[shape]
    out, report = Redactor().redact(original)
    assert out is original
    assert report == RedactionReport()


# --- the prefilter knows the new detectors ------------------------------------------------


def test_every_default_detector_has_at_least_two_samples() -> None:
    for detector in DEFAULT_DETECTORS:
        hits = [s for s in SAMPLES if list(detector.find(_sentence(s.snippet)))]
        assert len(hits) >= 2, detector.name
    assert {s.kind for s in SAMPLES} >= NEW_KINDS


# --- identifiers are not content ------------------------------------------------------------


def test_a_messages_id_and_type_are_kept_unscanned_and_its_content_is_not() -> None:
    # LangChain and the provider set a message's id ("lc_run--<uuid>", "chatcmpl-...") and
    # type: never text from the prompt. They stay as they are, even when they would look
    # like a secret; every other field is still scanned.
    odd_id = "lc_run--a@b.example.com-4111111111111111"
    message = AIMessage(
        content="mail jane@example.com",
        id=odd_id,
        response_metadata={"note": "card 4111 1111 1111 1111"},
    )
    out, report = Redactor().redact(message)
    assert out.id == odd_id and out.type == "ai"
    assert out.content == "mail [REDACTED:EMAIL]"
    assert out.response_metadata == {"note": "card [REDACTED:CREDIT_CARD]"}
    assert report.counts == {"EMAIL": 1, "CREDIT_CARD": 1}
    assert message.content == "mail jane@example.com"  # the original is not mutated
