"""PII and secrets redaction for sub-agent outputs, logs and error messages.

A :class:`Detector` finds spans of one kind of sensitive value; a :class:`Redactor` runs a
set of detectors, resolves overlaps (the longest match wins), replaces every match
according to its :class:`RedactionMode`, and walks whatever an agent returned (strings,
dicts, lists, tuples, sets, pydantic models including every field of a LangChain message,
dataclasses) without mutating it. The :class:`RedactionReport` counts what was replaced by
kind, never the values themselves.

Example:
    >>> text, report = Redactor().redact("mail bob@example.com")
    >>> text, report.counts
    ('mail [REDACTED:EMAIL]', {'EMAIL': 1})
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import hashlib
import hmac
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import Enum, StrEnum
from typing import Any, Final, Protocol, TypeVar, cast, runtime_checkable

from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from langgraph_fanout.errors import ConfigurationError

T = TypeVar("T")

# A replacement can unblock a neighbour: in "x@y.uk+44 20 7946 0958" the phone number is
# not one (it follows a letter) until the e-mail becomes "[REDACTED:EMAIL]". Redaction
# repeats until nothing is found (so it is idempotent), rescanning only _REACH characters
# around the new tokens: a chain of such neighbours costs O(n), not a full pass per link.
_REACH = 256
_EDGE = 16  # a match this close to a window's cut may be cut itself: rescan everything
# Binary payloads (base64 images and audio, data: URLs) are left alone wherever they occur:
# a chance "sk-..." inside base64 must not corrupt an image. Below this size a base64-looking
# string may be a key or a token, so it is scanned like any text.
_BLOB_SIZE = 1024
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-\r\n]*={0,2}\s*", re.ASCII)
# A JSON escape glues its letter to the next character ("\n415-555-0134"): detectors scan a
# copy in which escapes are blanked, same length, so spans still index the original.
_JSON_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|[\"\\/bfnrt])")


class RedactionMode(StrEnum):
    """How a detected value is replaced."""

    REDACT = "redact"  # "[REDACTED:EMAIL]"
    MASK = "mask"  # all but the last four characters become "*"
    HASH = "hash"  # "[EMAIL:<first 12 hex of sha256>]": equal values give equal tokens


@dataclasses.dataclass(frozen=True, slots=True)
class Match:
    """A detected span ``text[start:end]`` of kind ``kind`` (``"EMAIL"``, ``"JWT"``, ...)."""

    start: int
    end: int
    kind: str


@runtime_checkable
class Detector(Protocol):
    """Finds sensitive spans in a text; plug in your own (a Presidio analyzer, a name list).

    Example:
        >>> class Names:
        ...     name = "names"
        ...     def find(self, text):
        ...         i = text.find("Alice")
        ...         return [Match(i, i + 5, "PERSON")] if i >= 0 else []
        >>> Redactor(detectors=[Names()]).redact("hi Alice")[0]
        'hi [REDACTED:PERSON]'
    """

    @property
    def name(self) -> str: ...

    def find(self, text: str) -> Iterable[Match]: ...


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RegexDetector:
    """A detector made of a compiled pattern and an optional validator.

    Args:
        name: detector name (unique within a redactor, for diagnostics).
        kind: what a match is reported and replaced as (``"CREDIT_CARD"``).
        pattern: compiled regular expression; ``group`` selects the span to redact.
        validate: called with the matched text; ``False`` rejects it (Luhn, mod-97, ...).
        hints: cheap prefilter: the pattern runs only if one of these substrings occurs.
        shrink: when validation fails, retry the candidate cut at its last separators, so
            ``"4111 1111 1111 1111 2024"`` still finds the card.
    """

    name: str
    kind: str
    pattern: re.Pattern[str]
    group: int = 0
    validate: Callable[[str], bool] | None = None
    hints: tuple[str, ...] = ()
    shrink: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, re.Pattern):
            raise ConfigurationError(f"RegexDetector {self.name!r}: pattern must be compiled")
        if not self.name or not self.kind:
            raise ConfigurationError("RegexDetector needs a non-empty name and kind")

    def find(self, text: str) -> Iterator[Match]:
        if self.hints:
            for hint in self.hints:  # a loop, not any(genexpr): this runs on every text
                if hint in text:
                    break
            else:
                return
        search, pos = self.pattern.search, 0
        while (m := search(text, pos)) is not None:
            start, end = m.span(self.group)
            span = self._check(text, start, end)
            if span is not None:
                yield Match(span[0], span[1], self.kind)
                pos = max(span[1], m.start() + 1)
            else:
                # A rejected candidate may hide a valid one starting later inside it.
                pos = m.start() + 1

    def _check(self, text: str, start: int, end: int) -> tuple[int, int] | None:
        if start >= end:
            return None
        if self.validate is None or self.validate(text[start:end]):
            return start, end
        if self.shrink:
            for cut in range(end - 1, start, -1):
                cuttable = text[cut] in " .-" and text[cut - 1] not in " .-("
                if cuttable and self.validate(text[start:cut]):
                    return start, cut
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class RedactionReport:
    """How many values of each kind were replaced; never the values themselves.

    Example:
        >>> r = RedactionReport.of({"EMAIL": 2}) + RedactionReport.of({"JWT": 1})
        >>> r.counts, r.total
        ({'EMAIL': 2, 'JWT': 1}, 3)
    """

    # Sorted (kind, count) pairs: immutable, hashable and picklable.
    items: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, counts: Mapping[str, int]) -> RedactionReport:
        """A report from ``{kind: count}``; zero counts are dropped."""
        return cls(tuple(sorted((k, int(v)) for k, v in counts.items() if v)))

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.items)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __add__(self, other: RedactionReport) -> RedactionReport:
        return RedactionReport.of(Counter(self.counts) + Counter(other.counts))


# --- validators ---------------------------------------------------------------------------


def _luhn(candidate: str) -> bool:
    digits = [ord(c) - 48 for c in candidate if c.isdigit()]
    # Real card numbers start with 2-6 (Mastercard, Amex/Diners/JCB, Visa, Discover, ...):
    # this keeps millisecond timestamps and order ids that happen to pass Luhn out.
    if not 13 <= len(digits) <= 19 or not 2 <= digits[0] <= 6:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_IBAN_COUNTRIES = (
    " AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB GE"
    " GI GL GR GT HN HR HU IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR MT"
    " MU NI NL NO OM PK PL PS PT QA RO RS RU SA SC SD SE SI SK SM SO ST SV TL TN TR UA VA VG"
    " XK YE "
)


def _iban(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34 or f" {s[:2]} " not in _IBAN_COUNTRIES:
        return False
    return int("".join(str(int(c, 36)) for c in s[4:] + s[:4])) % 97 == 1


def _ipv4(candidate: str) -> bool:
    return all(int(octet) <= 255 for octet in candidate.split("."))


def _intl_phone(candidate: str) -> bool:
    # E.164 allows at most 15 digits; fewer than 8 is a short code or a score ("+5").
    return 8 <= sum(c.isdigit() for c in candidate) <= 15


def _ipv6(candidate: str) -> bool:
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    # "a::b" or "::1" also occur in code (C++ scopes); demand three groups or an IPv4 tail.
    return "." in candidate or sum(1 for g in candidate.split(":") if g) >= 3


def _has_digit(candidate: str) -> bool:
    return any(c.isdigit() for c in candidate)


def _datetime_digits(d: str) -> bool:
    """Whether ten digits read as ``YYYYMMDDhh`` (20xx) or ``YYMMDDhhmm``."""
    n = [int(d[i : i + 2]) for i in range(0, 10, 2)]
    if n[0] == 20 and 1 <= n[2] <= 12 and 1 <= n[3] <= 31 and n[4] <= 23:
        return True
    return 1 <= n[1] <= 12 and 1 <= n[2] <= 31 and n[3] <= 23 and n[4] <= 59


# --- default detectors --------------------------------------------------------------------
# Patterns begin with a literal or a narrow class where possible and check the left boundary
# right after it: a leading look-behind would disable the regex engine's fast prefix scan.

_X = re.ASCII


def _rx(name: str, kind: str, pattern: str, **kw: Any) -> RegexDetector:
    return RegexDetector(name=name, kind=kind, pattern=re.compile(pattern, _X), **kw)


class _EmailDetector:
    """Anchors on "@" (rare in text) and grows the address both ways from there."""

    name = "email"
    _local = re.compile(r"[A-Za-z0-9._%+\-]{1,64}\Z", _X)
    _domain = re.compile(
        r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w\-])", _X
    )

    def find(self, text: str) -> Iterator[Match]:
        at = text.find("@")
        while at >= 0:
            local = self._local.search(text, max(0, at - 64), at)
            domain = self._domain.match(text, at + 1)
            if local and domain:
                start = local.start()
                if start == 0 or not (text[start - 1].isalnum() or text[start - 1] in "._%+-"):
                    yield Match(start, domain.end(), "EMAIL")
                    at = text.find("@", domain.end())
                    continue
            at = text.find("@", at + 1)


class _IPv6Detector:
    """Anchors on two colons at most four hex digits apart, which every IPv6 address has,
    instead of trying a match at every hex digit of the text."""

    name = "ipv6"
    _anchor = re.compile(r":[0-9A-Fa-f]{0,4}:", _X)
    _candidate = re.compile(
        r"(?<![\w:.])(?=[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:]{2,39}"
        r"(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?![\w:]|\.\d)",
        _X,
    )

    def find(self, text: str) -> Iterator[Match]:
        pos = 0
        for anchor in self._anchor.finditer(text):
            at = anchor.start()
            if at < pos:
                continue
            # An address starts at most four characters before its first colon and is at
            # most 55 long, so this window never cuts one.
            m = self._candidate.search(text, max(pos, at - 4), at + 64)
            if m is not None and m.start() <= at and _ipv6(m.group()):
                yield Match(m.start(), m.end(), "IP_ADDRESS")
                pos = m.end()


_QUOTES: Final = ("", '"', "'")  # what may delimit a whole value


class _UsPhoneDetector:
    """US/Canadian numbers: ``"(415) 555-0134"``, ``"415-555-0134"``, ``"1-800-555-0199"``,
    ``"415.555.0134"``, and without punctuation ``"4155550134"`` and ``"415 555 0134"``.

    Unpunctuated numbers need a NANP shape (area code ``[2-9][0-8]x`` and exchange
    ``[2-9]xx``, neither ``N11``) and a clean left edge (not after ``/``, ``#`` or ``$``: a
    path, an id or a price). Ten bare digits that read as a date-time (``2024050112``) are
    not phones. Three spaced groups also read as a list (``"sizes 256 512 1024"``), so they
    need a phone word just before them (``call``, ``tel``, ``phone``, ...) or to be a whole
    value: the entire text, or quoted. One pattern covers every form: one scan of the text.
    """

    name = "phone_us"
    _candidate = re.compile(
        r"[(\d](?<![\w+.\-(][(\d])(?:"
        # punctuated: "(415) 555-0134", "1-800-555-0199", "415-555-0134", "415.555.0134"
        r"(?:(?<=\()[2-9]\d\d\)\s?\d{3}[ .\-]|(?<=1)[.\-][2-9]\d\d([.\-])\d{3}\1"
        r"|(?<=[2-9])\d\d([.\-])\d{3}\2)\d{4}(?![\w\-]|\.\d)"
        # unpunctuated: "4155550134", "415 555 0134" (gap is "" or " ")
        r"|(?<=[2-9])(?!11)[0-8]\d(?P<gap> ?)[2-9](?!11)\d\d(?P=gap)\d{4}"
        r"(?!(?P=gap)\d)(?![\w\-]|[.,:/]\d))",
        _X,
    )
    _cue = re.compile(
        r"\b(?:tel|phone|call|cell|mobile|fax|sms|text|whatsapp|contact|dial|num|no\b|ph\b)",
        _X | re.IGNORECASE,
    )

    def find(self, text: str) -> Iterator[Match]:
        search, pos = self._candidate.search, 0
        while (m := search(text, pos)) is not None:
            start, end = m.span()
            pos = start + 1
            gap = m.group("gap")
            if gap is not None and not self._plausible(text, start, end, gap):
                continue
            yield Match(start, end, "PHONE")
            pos = end

    def _plausible(self, text: str, start: int, end: int, gap: str) -> bool:
        before = text[start - 1] if start else ""
        if before in ("/", "#", "$"):
            return False
        if not gap:
            return not _datetime_digits(text[start:end])
        if before == " " and start >= 2 and text[start - 2].isdigit():
            return False  # the tail of a list: "1024 415 555 0134"
        after = text[end] if end < len(text) else ""
        if before in _QUOTES and after in _QUOTES:
            return True
        return self._cue.search(text, max(0, start - 16), start) is not None


DEFAULT_DETECTORS: tuple[Detector, ...] = (
    _rx("jwt", "JWT", r"eyJ(?<![\w\-]eyJ)[\w\-]{5,}\.[\w\-]{5,}\.[\w\-]*", hints=("eyJ",)),
    _rx("anthropic_key", "ANTHROPIC_KEY", r"sk-ant-(?<![\w\-]sk-ant-)[\w\-]{20,}"),
    _rx("openai_key", "OPENAI_KEY", r"sk-(?<![\w\-]sk-)(?!ant-)[\w\-]{20,}"),
    _rx("github_token", "GITHUB_TOKEN", r"gh(?<!\wgh)[pousr]_[A-Za-z0-9]{36,255}"),
    _rx("github_pat", "GITHUB_TOKEN", r"github_pat_(?<!\wgithub_pat_)\w{22,255}"),
    _rx(
        "stripe_key",
        "STRIPE_KEY",
        # Secret and restricted keys, live and test; of publishable keys only live ones.
        r"[rsp]k_(?<![A-Za-z0-9][rsp]k_)(?:live|test)_(?<!pk_test_)[0-9A-Za-z]{16,}",
        hints=("k_live_", "k_test_"),
    ),
    _rx(
        "slack_token",
        "SLACK_TOKEN",
        r"xox(?<![A-Za-z0-9]xox)[bpars]-(?=[0-9A-Za-z\-]{10})\d+(?:-[0-9A-Za-z]+)+",
        hints=("xox",),
    ),
    _rx(
        "google_api_key",
        "GOOGLE_API_KEY",
        r"AIza(?<![\w\-]AIza)[\w\-]{35}(?![\w\-])",
        hints=("AIza",),
    ),
    _rx(
        "aws_access_key",
        "AWS_ACCESS_KEY",
        r"A(?:KIA|SIA|BIA|CCA)(?<![A-Za-z0-9]A...)[A-Z0-9]{16}(?![A-Za-z0-9])",
        hints=("KIA", "SIA", "BIA", "CCA"),
    ),
    _rx(
        "bearer",
        "BEARER_TOKEN",
        r"[Bb][Ee][Aa][Rr][Ee][Rr](?<!\w......)\s+([\w\-.~+/]{16,}=*)",
        group=1,
        validate=_has_digit,
        hints=("earer", "EARER"),
    ),
    _EmailDetector(),
    _rx(
        "iban",
        "IBAN",
        r"[A-Z]{2}(?<![A-Za-z0-9][A-Z]{2})\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?!\w)",
        validate=_iban,
        shrink=True,
    ),
    _rx(
        "credit_card",
        "CREDIT_CARD",
        r"\d(?<![\w\-]\d)(?:\d{12,18}|\d{3}(?:[ \-]\d{3,7}){2,4})(?!\w)",
        validate=_luhn,
        shrink=True,
    ),
    _rx(
        "ssn",
        "SSN",
        r"\d(?<![\w\-]\d)(?<!000)(?<!666)(?<!9\d\d)\d\d-(?!00)\d\d-(?!0000)\d{4}(?![\w\-])",
    ),
    _UsPhoneDetector(),
    _rx(
        "phone_intl",
        "PHONE",
        r"\+(?<![\w+]\+)[1-9]\d{0,3}(?:[ .\-]?\(\d{1,4}\))?(?:[ .\-]?\d{1,5})++(?!\w)",
        validate=_intl_phone,
        hints=("+",),
        shrink=True,
    ),
    _IPv6Detector(),
    _rx(
        "ipv4",
        "IP_ADDRESS",
        r"\d(?<![\w.]\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\w|\.\d)",
        validate=_ipv4,
    ),
)


# What every match of a default detector contains, so that a text with none of it needs
# no detector at all (a test compares the detectors' findings with and without this).
_IPV6_ANCHOR = re.compile(r":[0-9A-Fa-f]{0,4}:")
# The bearer pattern's head: "clearer pricing" has "earer" but no bearer token.
_BEARER_WORD = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr](?<!\w......)\s", _X)
# iban (two capitals and two digits); ipv4 (digit, dot, digit); cards, ssn and all phones
# (a digit, then 7+ characters of digits and separators ending in a digit). One leading
# class, not two alternatives, so the regex engine skips other characters in its fast loop.
_DIGIT_CANDIDATES = re.compile(
    r"[0-9A-Z](?:(?<=\d)(?:\.\d|[\d \-().]{6,}\d)|(?<=[A-Z])[A-Z]\d\d)", _X
)


def _has_candidates(text: str) -> bool:
    """Whether any default detector could match ``text`` (cheap: substring tests first)."""
    if len(text) < 6:
        return False  # the shortest possible matches: "a@b.cd", "1:2::3"
    if (
        "@" in text  # email
        or "+" in text  # international phone
        or "eyJ" in text  # jwt
        or "sk-" in text  # openai and anthropic keys
        or (  # github tokens (gh?_, github_pat_), stripe keys (sk_live_, ...)
            "_" in text
            and ("gh" in text or "github_pat_" in text or "k_live_" in text or "k_test_" in text)
        )
        or "IA" in text  # aws: AKIA, ASIA, ABIA
        or "CA" in text  # aws: ACCA
        or "xox" in text  # slack tokens
        or "AIza" in text  # google api keys
    ):
        return True
    if ":" in text and _IPV6_ANCHOR.search(text) is not None:
        return True
    if _DIGIT_CANDIDATES.search(text) is not None:
        return True
    # Bearer tokens, last: "earer" is common ("clearer"), so the detector's hints are
    # followed by its head, the one scan here that the text may not have needed.
    return ("earer" in text or "EARER" in text) and _BEARER_WORD.search(text) is not None


_NOTHING: Final = RedactionReport()
# A pydantic model class -> its declared field names (read once: a message is walked per call).
_MODEL_FIELDS: dict[type, tuple[str, ...]] = {}
_BUILTIN_CONTAINERS: Final = frozenset({dict, list, tuple, set, frozenset})
_INERT: Final = frozenset({int, float, bool, bytes, type(None)})


def _scan_view(text: str) -> str:
    """``text`` with JSON escapes blanked to spaces (same length), for the detectors."""
    if "\\" not in text:
        return text
    return _JSON_ESCAPE.sub(lambda m: " " * len(m.group()), text)


def _is_blob(text: str) -> bool:
    """Whether ``text`` is binary data: a base64 ``data:`` URL, or base64 of 1 KiB or more."""
    if text.startswith("data:"):
        header, _, payload = text.partition(",")
        return header.endswith(";base64") and _BASE64.fullmatch(payload) is not None
    return len(text) >= _BLOB_SIZE and _BASE64.fullmatch(text) is not None


def _inside(m: Match, spans: list[tuple[int, int]]) -> bool:
    i = bisect.bisect_right(spans, m.start, key=lambda span: span[0]) - 1
    return i >= 0 and spans[i][0] <= m.start and m.end <= spans[i][1]


def _rebuilt(
    value: list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any], items: list[Any]
) -> Any:
    """A container of ``value``'s own type holding ``items``: a subclass of list or set is
    copied (keeping its attributes), a namedtuple rebuilt from its fields."""
    cls: Any = type(value)
    if cls in (list, tuple, set, frozenset):
        return cls(items)
    if isinstance(value, list):
        new_list = copy.copy(value)
        new_list[:] = items
        return new_list
    if isinstance(value, set):
        new_set = copy.copy(value)
        new_set.clear()
        new_set.update(items)
        return new_set
    if hasattr(value, "_fields"):  # namedtuple
        return cls._make(items)
    return cls(items)


# --- the redactor -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Redactor:
    """Replaces what its detectors find, in any output type, without mutating the input.

    Args:
        detectors: what to look for (default: emails, phones, SSNs, Luhn-checked cards,
            mod-97-checked IBANs, IPv4/IPv6, OpenAI/Anthropic/AWS/GitHub/Stripe/Google
            keys, Slack tokens, bearer tokens, JWTs).
        mode: how matches are replaced (see :class:`RedactionMode`).
        hash_key: secret salt for ``HASH`` mode (HMAC-SHA256); without it, short values
            such as phone numbers can be recovered by brute force from their hash.

    Raises:
        ConfigurationError: a detector does not follow the :class:`Detector` protocol, or
            the mode is unknown.

    Example:
        >>> Redactor(mode=RedactionMode.MASK).redact("card 4111111111111111")[0]
        'card ************1111'
    """

    detectors: tuple[Detector, ...] = DEFAULT_DETECTORS
    mode: RedactionMode = RedactionMode.REDACT
    hash_key: bytes | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        detectors = tuple(self.detectors)
        for d in detectors:
            if not isinstance(d, Detector) or not isinstance(d.name, str):
                raise ConfigurationError(
                    f"detector {d!r} must have a str `name` and a `find(text)` method"
                )
        try:
            mode = RedactionMode(self.mode)
        except ValueError:
            choices = ", ".join(m.value for m in RedactionMode)
            raise ConfigurationError(f"mode must be one of {choices}, got {self.mode!r}") from None
        key = self.hash_key
        if isinstance(key, str):
            key = key.encode()
        elif key is not None and not isinstance(key, bytes):
            raise ConfigurationError("hash_key must be bytes, str or None")
        object.__setattr__(self, "detectors", detectors)
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "hash_key", key)

    def find(self, text: str) -> list[Match]:
        """Non-overlapping matches in ``text``, by position; of overlapping ones the longest
        wins, and of equally long ones the detector listed first. JSON escapes separate
        words, so in a JSON string ``"call:\\n4155550134"`` the number is found."""
        text = _scan_view(text)
        found: list[tuple[int, int, Match]] = []
        size = len(text)
        for rank, detector in enumerate(self.detectors):
            for m in detector.find(text):
                # A plug-in's bad span is dropped rather than corrupting the output.
                if 0 <= m.start < m.end <= size:
                    found.append((m.start - m.end, rank, m))
        if len(found) <= 1:
            return [m for _, _, m in found]
        found.sort(key=lambda f: (f[0], f[1], f[2].start))
        starts: list[int] = []
        chosen: list[Match] = []
        for _, _, m in found:
            i = bisect.bisect_right(starts, m.start)
            if i and chosen[i - 1].end > m.start:
                continue
            if i < len(chosen) and chosen[i].start < m.end:
                continue
            starts.insert(i, m.start)
            chosen.insert(i, m)
        return chosen

    def redact(self, value: T) -> tuple[T, RedactionReport]:
        """Return a redacted copy of ``value`` and what was redacted.

        Strings, dict values, list/tuple/set items, pydantic model fields (so every field
        of a LangChain message: content blocks, tool calls and their streamed chunks,
        ``additional_kwargs``, ``response_metadata``, a tool's artifact) and dataclass
        fields are redacted recursively, each container rebuilt as its own type; JSON
        inside strings (tool-call arguments) is scanned as text. Binary data (base64,
        ``data:`` URLs) and anything else is returned as is. Unchanged objects are returned
        as themselves, changed ones as copies: the input is never mutated. Redacted set
        items may become equal, so a set can shrink (the report still counts each).

        Each value is redacted on its own: a secret split across two streamed chunks is
        found once the chunks are merged (``chunk_a + chunk_b``), not in either chunk.
        """
        if isinstance(value, str) and type(value) is str:  # the common case: no walk
            if self.detectors is DEFAULT_DETECTORS and not _has_candidates(_scan_view(value)):
                return value, _NOTHING  # plain text with nothing to redact
            counts: Counter[str] = Counter()
            out: Any = self._replaced(value, counts)
        else:
            counts = Counter()
            out = self._walk(value, counts, set())
        return cast(T, out), RedactionReport.of(counts)

    # -- internals -------------------------------------------------------------------------

    def _text(self, text: str, counts: Counter[str]) -> str:
        if self.detectors is DEFAULT_DETECTORS and not _has_candidates(_scan_view(text)):
            return text  # nothing any default detector could match
        return self._replaced(text, counts)

    def _replaced(self, text: str, counts: Counter[str]) -> str:
        if _is_blob(text):
            return text
        matches = self.find(text)
        spans: list[tuple[int, int]] = []
        # Each pass replaces at least one original character, so len(text) + 1 passes end it.
        for _ in range(len(text) + 1):
            # Stop when only our own tokens match (a plug-in detector that finds "[EMAIL:...]"
            # would otherwise loop forever).
            if not matches or all(_inside(m, spans) for m in matches):
                break
            pieces: list[str] = []
            spans = []
            last = size = 0
            for m in matches:
                pieces.append(text[last : m.start])
                token = self._replacement(text[m.start : m.end], m.kind)
                size += m.start - last
                spans.append((size, size + len(token)))
                pieces.append(token)
                size += len(token)
                counts[m.kind] += 1
                last = m.end
            pieces.append(text[last:])
            text = "".join(pieces)
            matches = self._find_near(text, spans)
        return text

    def _find_near(self, text: str, spans: list[tuple[int, int]]) -> list[Match]:
        """Matches in the windows around ``spans`` (merged), or in all of ``text`` when one
        lies at a window's cut."""
        size = len(text)
        windows: list[list[int]] = []
        for start, end in spans:
            lo, hi = max(0, start - _REACH), min(size, end + _REACH)
            if windows and lo <= windows[-1][1]:
                windows[-1][1] = hi
            else:
                windows.append([lo, hi])
        found: list[Match] = []
        for lo, hi in windows:
            for m in self.find(text[lo:hi]):
                if (lo and m.start < _EDGE) or (hi < size and hi - lo - m.end < _EDGE):
                    return self.find(text)
                found.append(Match(m.start + lo, m.end + lo, m.kind))
        return found

    def _replacement(self, value: str, kind: str) -> str:
        if self.mode is RedactionMode.REDACT:
            return f"[REDACTED:{kind}]"
        if self.mode is RedactionMode.MASK:
            return "*" * len(value) if len(value) <= 4 else "*" * (len(value) - 4) + value[-4:]
        data = value.encode()
        digest = (
            hmac.new(self.hash_key, data, hashlib.sha256).hexdigest()
            if self.hash_key
            else hashlib.sha256(data).hexdigest()
        )
        return f"[{kind}:{digest[:12]}]"

    def _walk(self, value: Any, counts: Counter[str], active: set[int]) -> Any:
        if isinstance(value, str):
            # A StrEnum member is a name chosen by code, not data; keep its type.
            return value if isinstance(value, Enum) else self._text(value, counts)
        if value is None or isinstance(value, (int, float, bytes)):
            return value
        if type(value) in _BUILTIN_CONTAINERS and not value:
            return value  # most message fields: no tool calls, no additional_kwargs
        if id(value) in active:  # a cycle: its first visit handles it
            return value
        active.add(id(value))
        try:
            return self._walk_container(value, counts, active)
        finally:
            active.discard(id(value))

    def _walk_container(self, value: Any, counts: Counter[str], active: set[int]) -> Any:
        if isinstance(value, dict):
            changes = self._changes(value.items(), counts, active)
            if not changes:
                return value
            if type(value) is dict:
                return {**value, **changes}
            out = copy.copy(value)
            out.update(changes)
            return out
        if isinstance(value, (list, tuple, set, frozenset)):
            changes = self._changes(enumerate(value), counts, active)
            if not changes:
                return value
            items = list(value)
            for i, new in changes.items():
                items[i] = new
            return _rebuilt(value, items)
        if isinstance(value, BaseModel):
            # Every field, declared or extra: a LangChain message keeps secrets beyond its
            # content (tool_call_chunks, additional_kwargs["function_call"], artifact, ...).
            cls = type(value)
            declared = _MODEL_FIELDS.get(cls)
            if declared is None:
                if len(_MODEL_FIELDS) >= 1024:  # classes made on the fly: stay bounded
                    _MODEL_FIELDS.clear()
                declared = _MODEL_FIELDS[cls] = tuple(
                    # A message's id and type are set by LangChain and the provider, never
                    # from the prompt: identifiers, kept as they are without a scan.
                    n
                    for n in cls.model_fields
                    if not (issubclass(cls, BaseMessage) and n in ("id", "type"))
                )
            extra = value.model_extra
            names = (*declared, *extra) if extra else declared
            changes = self._changes(((n, getattr(value, n, None)) for n in names), counts, active)
            return value.model_copy(update=changes) if changes else value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = dataclasses.fields(value)
            changes = self._changes(
                ((f.name, getattr(value, f.name)) for f in fields), counts, active
            )
            if not changes:
                return value
            # copy + setattr rather than dataclasses.replace: no __post_init__ re-run (it
            # may reject "[REDACTED:EMAIL]") and init=False fields work; object.__setattr__
            # also works on frozen dataclasses.
            out = copy.copy(cast(Any, value))
            for k, v in changes.items():
                object.__setattr__(out, k, v)
            return out
        return value

    def _changes(
        self, pairs: Iterable[tuple[Any, Any]], counts: Counter[str], active: set[int]
    ) -> dict[Any, Any]:
        """The walked values of ``(key, value)`` pairs that differ from the originals."""
        changes = {}
        for key, old in pairs:
            if type(old) in _INERT:
                continue  # usage counts, flags: not worth a call
            if (new := self._walk(old, counts, active)) is not old:
                changes[key] = new
        return changes
