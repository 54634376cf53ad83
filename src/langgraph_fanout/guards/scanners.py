"""Extra injection detectors (a classifier model, a vendor API) that screening runs beside
the built-in markers: the :class:`InjectionScanner` protocol and an adapter for LLM Guard.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol, runtime_checkable

from langgraph_fanout.errors import ConfigurationError
from langgraph_fanout.guards.injection import InjectionFinding, InjectionSeverity, severity_of


@runtime_checkable
class InjectionScanner(Protocol):
    """An extra injection detector (a classifier model, a vendor API) whose findings join
    the built-in markers' in the same :class:`ScreeningFlag`.

    ``scan`` returns the findings for one text (empty when none); it may be a plain or an
    ``async`` method. An async scanner needs the async screening (:func:`ascreen_arguments`,
    :meth:`ScreeningPolicy.ascreen_input`). Its exceptions propagate to the caller.

    Example:
        >>> class Shouting:
        ...     def scan(self, text: str) -> tuple[InjectionFinding, ...]:
        ...         if not text.isupper():
        ...             return ()
        ...         low = InjectionSeverity.LOW
        ...         return (InjectionFinding(marker="shouting", severity=low, source="shout"),)
        >>> screen_arguments({"q": "HELLO"}, scanners=(Shouting(),))[0].markers
        ('shouting',)
    """

    def scan(
        self, text: str
    ) -> Iterable[InjectionFinding] | Awaitable[Iterable[InjectionFinding]]: ...


class LLMGuardScanner:
    """LLM Guard's ``PromptInjection`` classifier as an :class:`InjectionScanner`.

    llm-guard is an optional dependency (``pip install llm-guard``), imported only when an
    instance is built; its model (a DeBERTa classifier) loads then too. Each ``scan`` runs
    the model on the calling thread, so expect milliseconds per argument, not microseconds.

    Args:
        threshold: LLM Guard's injection-score threshold, 0 to 1.
        match_type: how LLM Guard splits the text: ``"full"``, ``"sentence"``, ``"chunks"``...
        severity: the severity of its findings (HIGH: REJECT refuses them).
        use_onnx: run the ONNX build of the model.

    Raises:
        ConfigurationError: llm-guard is not installed, or an argument is invalid.

    Example:
        >>> policy = ScreeningPolicy(scanners=(LLMGuardScanner(),))  # doctest: +SKIP
    """

    name = "llm_guard"

    def __init__(
        self,
        *,
        threshold: float = 0.9,
        match_type: str = "full",
        severity: InjectionSeverity = InjectionSeverity.HIGH,
        use_onnx: bool = False,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ConfigurationError(f"threshold must be a number, got {threshold!r}")
        if not 0 <= threshold <= 1:
            raise ConfigurationError(f"threshold must be between 0 and 1, got {threshold!r}")
        self.threshold = float(threshold)
        self.severity = severity_of(severity)
        try:
            scanners = importlib.import_module("llm_guard.input_scanners")
        except ImportError as exc:
            raise ConfigurationError(
                "LLMGuardScanner needs the optional dependency llm-guard; install it with "
                f"`pip install llm-guard` (importing llm_guard.input_scanners failed: {exc})"
            ) from exc
        self._scanner = scanners.PromptInjection(
            threshold=self.threshold, match_type=match_type, use_onnx=use_onnx
        )

    def scan(self, text: str) -> tuple[InjectionFinding, ...]:
        _, valid, risk_score = self._scanner.scan(text)
        if valid:
            return ()
        finding = InjectionFinding(
            marker="llm_guard_prompt_injection",
            severity=self.severity,
            source=self.name,
            score=float(risk_score),
        )
        return (finding,)

    def __repr__(self) -> str:
        return f"LLMGuardScanner(threshold={self.threshold:g}, severity={self.severity})"


def is_async_scanner(scanner: InjectionScanner) -> bool:
    return inspect.iscoroutinefunction(scanner.scan)


def scanned_findings(scanner: InjectionScanner, found: Any) -> tuple[InjectionFinding, ...]:
    """A scanner's answer as findings; anything else is the scanner's bug, named here."""
    if inspect.isawaitable(found):
        if inspect.iscoroutine(found):
            found.close()  # never awaited: close it so no "never awaited" warning follows
        raise ConfigurationError(
            f"scanner {scanner!r} returned an awaitable from a plain scan(): declare it "
            "`async def scan` so screening awaits it"
        )
    try:
        findings = tuple(found)
    except TypeError:
        findings = (found,)
    for finding in findings:
        if not isinstance(finding, InjectionFinding):
            raise ConfigurationError(
                f"scanner {scanner!r} returned {finding!r}; scan() must return "
                "InjectionFinding values"
            )
    return findings


def scanners_of(value: Any) -> tuple[InjectionScanner, ...]:
    if isinstance(value, InjectionScanner):
        raise ConfigurationError("scanners takes a tuple of scanners: scanners=(scanner,)")
    try:
        scanners = tuple(value)
    except TypeError:
        raise ConfigurationError(f"scanners must be a tuple of scanners, got {value!r}") from None
    for scanner in scanners:
        if not isinstance(scanner, InjectionScanner):
            raise ConfigurationError(
                f"scanners must have a scan(text) method (InjectionScanner), got {scanner!r}"
            )
    return scanners
