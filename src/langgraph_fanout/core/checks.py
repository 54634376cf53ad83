"""The checks every constructor runs on its options, with one wording for every message.

A bad option raises ``ConfigurationError`` naming the option, what it must be and what it
got, before anything is called: a string where a number or a bool is expected, a bool
where a number is (``True`` is an ``int`` to Python, never to us), NaN, an infinity, a
value out of the option's domain or absurdly large (a cap on money or counts that no run
can reach is a typo, and arithmetic on it overflows later, far from the cause).
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

from langgraph_fanout.errors import ConfigurationError

MAX_USD = 1e12
"""The largest amount of money an option may name (a trillion dollars)."""

MAX_COUNT = 10**12
"""The largest count (tokens, calls, samples) an option may name."""

MAX_SECONDS = 1e9
"""The longest duration an option may name (about 31 years)."""

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlong = 30


def shown(value: object) -> str:
    """``value`` as a message shows it: its repr, shortened, and its type when the repr
    alone could be mistaken for another type (``'0.5'`` is a str)."""
    try:
        text = _repr.repr(value)
    except Exception:  # a repr that raises, an int past Python's 4300-digit limit
        return f"a {type(value).__name__} that cannot be shown"
    if isinstance(value, str | bytes) or not isinstance(value, Real | type(None)):
        return f"{text} ({type(value).__name__})"
    return text


def check_number(
    name: str,
    value: object,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    integer: bool = False,
    optional: bool = False,
    why: str = "",
) -> None:
    """Raise ``ConfigurationError`` unless ``value`` is a finite number in the bounds given.

    Args:
        name: the option as the user wrote it (``"DispatchResourceLimits.max_concurrent"``).
        value: what was passed.
        at_least / above / at_most / below: inclusive and exclusive bounds.
        integer: only an ``int`` is accepted.
        optional: ``None`` is accepted (the option is off).
        why: a few words on what the option means, appended to the message.

    Example:
        >>> check_number("max_concurrent", 0, at_least=1, integer=True)
        Traceback (most recent call last):
        ...
        langgraph_fanout.errors.ConfigurationError: max_concurrent must be an int >= 1, got 0
    """
    if value is None and optional:
        return
    # numbers.Integral/Real: numpy scalars and Decimal pass as they did before these checks.
    ok = not isinstance(value, bool) and isinstance(value, Integral if integer else Real)
    if ok:
        number: float = value  # type: ignore[assignment]
        try:
            ok = (
                (integer or math.isfinite(number))
                and (at_least is None or number >= at_least)
                and (above is None or number > above)
                and (at_most is None or number <= at_most)
                and (below is None or number < below)
            )
        except OverflowError:  # an int too large to compare with a float bound
            ok = False
    if not ok:
        raise ConfigurationError(
            f"{name} must be {_domain(integer, at_least, above, at_most, below)}"
            f"{' or None' if optional else ''}{f' ({why})' if why else ''}, got {shown(value)}"
        )


def _domain(
    integer: bool,
    at_least: float | None,
    above: float | None,
    at_most: float | None,
    below: float | None,
) -> str:
    parts = ["an int" if integer else "a finite number"]
    for bound, sign in ((at_least, ">="), (above, ">"), (at_most, "<="), (below, "<")):
        if bound is not None:
            parts.append(f"{sign} {_bound(bound)}")
    return " ".join(parts[:2]) + "".join(f" and {p}" for p in parts[2:])


def _bound(bound: float) -> str:
    """``1``, ``0.5``, ``1e12``: a bound as a person writes it."""
    if abs(bound) < 1e6:
        return f"{bound:g}"
    mantissa, exponent = f"{bound:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def check_samples(samples: object) -> None:
    """Raise ``ConfigurationError`` unless ``samples`` (calls per input) is an int >= 1."""
    check_number("samples", samples, at_least=1, at_most=10_000, integer=True)


def check_flag(name: str, value: object) -> None:
    """Raise ``ConfigurationError`` unless ``value`` is ``True`` or ``False`` (``"no"`` is
    a truthy string, ``0`` and ``None`` are not answers)."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {shown(value)}")


def check_type(name: str, value: object, kind: Any, *, optional: bool = False) -> None:
    """Raise ``ConfigurationError`` unless ``value`` is an instance of ``kind``."""
    if value is None and optional:
        return
    if not isinstance(value, kind):
        raise ConfigurationError(
            f"{name} must be {_kind_name(kind)}{' or None' if optional else ''}, got {shown(value)}"
        )


def check_text(name: str, value: object, *, optional: bool = False, empty: bool = False) -> None:
    """Raise ``ConfigurationError`` unless ``value`` is a str (non-empty unless ``empty``)."""
    check_type(name, value, str, optional=optional)
    if value == "" and not empty:
        raise ConfigurationError(f"{name} must not be empty")


def check_mapping(name: str, value: object, *, optional: bool = False) -> None:
    """Raise ``ConfigurationError`` unless ``value`` is a mapping with str keys."""
    check_type(name, value, Mapping, optional=optional)
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ConfigurationError(f"{name} keys must be str, got {shown(bad[0])}")


def _kind_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else getattr(kind, "__args__", None) or (kind,)
    names = [getattr(k, "__name__", str(k)) for k in kinds]
    return " or ".join(f"a {n}" if n[0] not in "AEIOUaeiou" else f"an {n}" for n in names)
