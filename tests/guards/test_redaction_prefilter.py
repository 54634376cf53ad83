"""The redactor's prefilter never hides a match: a text it lets through unscanned is one
in which no default detector finds anything."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from langgraph_fanout.guards.redaction import DEFAULT_DETECTORS, Redactor, _has_candidates

FRAGMENTS = [
    # Stripe, Slack and Google keys, NANP phones, JSON escapes
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "pk_live_",
    "pk_test_",
    "xoxb-",
    "xoxp-123-",
    "xoxa-2-",
    "AIza",
    "AIzaSy" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv"[:33],
    "4155550134",
    "415 555 0134",
    "(415) 555 0134",
    "2024050112",
    "call ",
    "tel:",
    "phone ",
    '"',
    "'",
    "\\n",
    "\\",
    "\\u00e9",
    "Bearer ",
    "clearer ",
    "Ab1Cd2Ef3Gh4Ij5K",
    "eyJhbGciOi.eyJzdWIi.sig",
    "sk-",
    "sk-ant-",
    "ghp_",
    "github_pat_",
    "AKIA",
    "ASIA",
    "Bearer ",
    "bEaReR ",
    "@",
    "a@b.co",
    "+",
    "+44 20 7946 0958",
    ":",
    "::",
    "fe80::1",
    "GB82",
    "GB82 WEST 1234 5698 7654 32",
    "1.2",
    "192.168.0.1",
    "(555) 123-4567",
    "555-123-4567",
    "555.123.4567",
    "1-555-123-4567",
    "123-45-6789",
    "4111 1111 1111 1111",
    "4111111111111111",
    "ABIA",
    "ACCA",
    "ACCAABCDEFGHIJKLMNOP",
    "AKIAABCDEFGHIJKLMNOP",
    "ghp_" + "a" * 36,
    "sk-" + "b" * 24,
    "EARER",
    "order 12: two coffees",
    " ",
    "-",
    ".",
    "(",
    ")",
]

texts = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.text(
            alphabet="0123456789 .-()+:@ABCDEFGKSIabcdefghp_'\"\\nAIzaSyxobkplrvetis", max_size=12
        ),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=3000, deadline=None)
@given(texts)
@example("Summarise the receipt for order 12: two coffees and a croissant, paid by card.")
def test_a_text_without_candidates_has_no_match_for_any_default_detector(text: str) -> None:
    if not _has_candidates(text):
        for detector in DEFAULT_DETECTORS:
            assert list(detector.find(text)) == [], (detector.name, text)


@settings(max_examples=500, deadline=None)
@given(texts)
def test_redacting_with_the_prefilter_equals_redacting_without_it(text: str) -> None:
    with_prefilter = Redactor()
    plain = Redactor(detectors=list(DEFAULT_DETECTORS))  # a new tuple: no prefilter
    assert plain.detectors is not DEFAULT_DETECTORS
    assert with_prefilter.redact(text) == plain.redact(text)
