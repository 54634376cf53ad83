"""What ``langgraph-fanout run`` reads: items from JSONL, CSV or stdin, and ``--model`` specs.

Every problem with them is a ``UsageError`` whose one-line message says what to fix; the
command prints it and exits with code 2.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from langgraph_fanout.core.prompts import PromptTemplate
from langgraph_fanout.engine.agents import SubAgent
from langgraph_fanout.errors import FanoutError
from langgraph_fanout.guards.pricing import Price
from langgraph_fanout.testing import FAILURE_KINDS, SimulatedChatModel

SIMULATED_KEYS = ("model", "seed", "latency", "fail", "fail_kind", "choices", "max_tokens")
"""The ``key=value`` options of ``--model simulated:...``."""


class UsageError(Exception):
    """A problem with the command line or its inputs; the message says what to fix."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Items:
    """Items read from a file, with where each came from (for error messages)."""

    rows: list[dict[str, Any]]
    where: list[str]
    source: str


def read_items(path: str, fmt: str | None = None) -> Items:
    """Read items: a JSON object per line (``.jsonl``/``.ndjson``) or CSV with a header.

    Raises:
        UsageError: the file cannot be read, its format is unknown, or an item is malformed.
    """
    source = "stdin" if path == "-" else path
    if fmt is None:
        suffix = Path(path).suffix.lower()
        fmt = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}.get(suffix)
        if path == "-":
            fmt = "jsonl"
        if fmt is None:
            raise UsageError(
                f"cannot tell the format of {path} from its extension: pass --format jsonl "
                "or --format csv"
            )
    try:
        if path == "-":
            if sys.stdin.isatty():
                raise UsageError("no --input given and stdin is a terminal: pass --input PATH")
            text = sys.stdin.read()
        else:
            text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read --input {path}: {exc.strerror or exc}") from None
    items = _parse_csv(text, source) if fmt == "csv" else _parse_jsonl(text, source)
    if not items.rows:
        raise UsageError(f"{source} has no items")
    return items


def _parse_jsonl(text: str, source: str) -> Items:
    rows: list[dict[str, Any]] = []
    where: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"line {number} of {source} is not JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise UsageError(
                f"line {number} of {source} is a JSON {type(value).__name__}, not an object "
                'with the template\'s fields (e.g. {"text": "..."})'
            )
        rows.append(value)
        where.append(f"line {number} of {source}")
    return Items(rows, where, source)


def _parse_csv(text: str, source: str) -> Items:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise UsageError(f"{source} has no CSV header row naming the fields")
    rows: list[dict[str, Any]] = []
    where: list[str] = []
    try:
        for row in reader:
            if None in row:
                raise UsageError(
                    f"line {reader.line_num} of {source} has more values than the header"
                )
            rows.append(dict(row))
            where.append(f"line {reader.line_num} of {source}")
    except csv.Error as exc:
        raise UsageError(f"line {reader.line_num} of {source} is not valid CSV: {exc}") from None
    return Items(rows, where, source)


def check_template(template: str, items: Items) -> PromptTemplate:
    """Parse the template and check that every item has its fields.

    Raises:
        UsageError: the template is invalid or does not match the items.
    """
    try:
        parsed = PromptTemplate.parse(template)
    except FanoutError as exc:
        raise UsageError(f"--template: {exc}") from None
    needed = parsed.names
    if not needed and len(items.rows) > 1:
        fields = ", ".join(sorted(items.rows[0])) or "none"
        raise UsageError(
            "--template has no {field}: every item would send the same prompt; "
            f"use the item fields ({fields}), e.g. {{{sorted(items.rows[0])[0]}}}"
            if items.rows[0]
            else "--template has no {field} and the items have no fields"
        )
    bad = [(i, needed - row.keys()) for i, row in enumerate(items.rows) if needed - row.keys()]
    if bad:
        i, missing = bad[0]
        names = ", ".join("{" + m + "}" for m in sorted(missing))
        has = ", ".join(sorted(items.rows[i])) or "no fields"
        raise UsageError(
            f"--template needs {names} but {items.where[i]} has {has} "
            f"({len(bad)} of {len(items.rows)} items lack a field): fix the template or the input"
        )
    return parsed


# --------------------------------------------------------------------------- models


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """The agent a run dispatches to, its prices and, for a simulated model, its latency."""

    agent: SubAgent
    prices: dict[str, Price]
    latency_s: float | None = None


def resolve_model(
    spec: str, *, max_tokens: int | None, price: Price | None, planning: bool
) -> ModelChoice:
    """Turn ``--model`` into an agent.

    Args:
        spec: ``simulated``, ``simulated:key=value,...`` or ``provider:model``.
        max_tokens: output cap per call (``--max-tokens``).
        price: a price override for the model (``--price``).
        planning: only plan: a provider model is described, not built (no key needed).

    Raises:
        UsageError: the spec is malformed or the model cannot be built.
    """
    name, _, options = spec.partition(":")
    if name.strip().lower() == "simulated":
        model = _simulated(options, max_tokens)
        prices: dict[str, Price] = {}  # the simulated models are in the price table
        if price is not None:
            prices[model.model_name] = price
        return ModelChoice(SubAgent.of(model), prices, model.latency_s)
    provider, model_id = (name, options) if options else (None, name)
    if not model_id:
        raise UsageError(f"--model {spec!r} names no model: use e.g. openai:gpt-4o-mini")
    prices = {model_id: price} if price is not None else {}
    if planning:
        described = SubAgent.of(
            _planning_only,
            name=spec,
            model=model_id,
            provider=provider,
            max_output_tokens=max_tokens,
        )
        return ModelChoice(described, prices)
    return ModelChoice(SubAgent.of(_init_chat_model(spec, max_tokens), provider=provider), prices)


def _planning_only(prompt: Any) -> NoReturn:  # pragma: no cover - never called by a plan
    raise RuntimeError("this agent only describes a model for --dry-run")


def _simulated(options: str, max_tokens: int | None) -> SimulatedChatModel:
    kwargs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in options.split(","))):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in SIMULATED_KEYS:
            raise UsageError(
                f"--model simulated option {part!r} is not key=value with a key in "
                f"{', '.join(SIMULATED_KEYS)}"
            )
        kwargs[key] = value.strip()
    args: dict[str, Any] = {
        "model_name": kwargs.get("model", "simulated-small"),
        "seed": _option(kwargs, "seed", int, 0),
        "latency_s": _option(kwargs, "latency", float, 0.0),
        "failure_rate": _option(kwargs, "fail", float, 0.0),
    }
    if "max_tokens" in kwargs:
        args["max_tokens"] = _option(kwargs, "max_tokens", int, 0)
    elif max_tokens is not None:
        args["max_tokens"] = max_tokens
    if "choices" in kwargs:
        args["choices"] = [c for c in kwargs["choices"].split("|") if c]
        if not args["choices"]:
            raise UsageError("--model simulated choices=... needs answers separated by |")
    kind = kwargs.get("fail_kind", "server_error")
    if kind not in FAILURE_KINDS:
        raise UsageError(f"--model simulated fail_kind must be one of {', '.join(FAILURE_KINDS)}")
    if not (0 <= args["failure_rate"] <= 1 and args["latency_s"] >= 0):
        raise UsageError("--model simulated needs latency >= 0 and 0 <= fail <= 1")
    if args.get("max_tokens", 1) < 1:
        raise UsageError("--model simulated max_tokens must be >= 1")
    return SimulatedChatModel(failure_kind=kind, **args)


def _option(options: Mapping[str, str], key: str, kind: type[Any], default: Any) -> Any:
    if key not in options:
        return default
    try:
        return kind(options[key])
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise UsageError(f"--model simulated {key} must be {what}, got {options[key]!r}") from None


def _init_chat_model(spec: str, max_tokens: int | None) -> Any:
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        raise UsageError(
            f"--model {spec} needs the langchain package and the provider's package: "
            "pip install langchain langchain-openai (or langchain-anthropic, ...)"
        ) from None
    extra: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
    try:
        # The dispatch's ErrorRecoveryPolicy owns retries; the SDK's own would double them.
        return init_chat_model(spec, max_retries=0, **extra)
    except ImportError as exc:
        raise UsageError(f"--model {spec}: {exc}") from None
    except Exception as exc:  # unknown provider, missing API key: the SDK says which
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot create --model {spec}: {first}") from None
