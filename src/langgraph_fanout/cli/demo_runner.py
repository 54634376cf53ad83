"""The deep dive's stage: its inputs, the simulated judgement, and the run's shared state.

The sections in ``demo_sections`` dispatch over these inputs (receipts, documents, labels)
to simulated models (priced by the engine's price table); ``Runner`` prints their lines and
keeps every model and report so the totals at the end are counted, not typed in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler

from langgraph_fanout.core.report import DispatchReport
from langgraph_fanout.engine.dispatch import DispatchResult
from langgraph_fanout.guards.breaker import BreakerRegistry
from langgraph_fanout.testing import SimulatedChatModel

Out = Callable[[str], None]

RECEIPTS = [
    "Lunch at Luigi's trattoria, 2 pasta, 1 water",
    "Train ticket Paris to Lyon, 2nd class",
    "Printer paper, 5 reams, and toner",
    "Taxi from airport to hotel",
    "Team dinner, sushi bar",
    "Stapler, pens and sticky notes",
    "Flight LH 1234 Munich to Berlin",
    "Coffee and croissant, station cafe",
    "Hotel night, Ibis Lyon centre",
    "Desk lamp and monitor stand",
]
_RECEIPT_WORDS = {
    "food": ("lunch", "dinner", "coffee", "sushi"),
    "travel": ("train", "taxi", "flight", "hotel"),
}
DOCUMENTS = {
    "doc-01": "Shipping times: orders leave the warehouse within two days.",
    "doc-02": "Refund policy: damaged items are refunded in full within 30 days.",
    "doc-03": "Our office is closed on public holidays.",
    "doc-04": "Items damaged in transit: report them within 48 hours with photos.",
    "doc-05": "Gift cards cannot be exchanged for cash.",
    "doc-06": "Refund requests are handled by the support team.",
    "doc-07": "Careers: we are hiring engineers.",
    "doc-08": "The policy for returns of unopened items is 14 days.",
    "doc-09": "Warranty: electronics have a two-year warranty.",
    "doc-10": "Press kit and logos are available on request.",
}
QUERY = "refund policy for damaged items"
LABELS = ("electronics", "office", "kitchen")


# --------------------------------------------------------------------------- helpers


def receipt_label(prompt: str, _rng: Any) -> str:
    text = prompt.lower()
    found = [label for label, words in _RECEIPT_WORDS.items() if any(w in text for w in words)]
    return found[0] if found else "office"


def relevance(prompt: str, _rng: Any) -> str:
    # Stands in for a model's judgement: query words found in the document.
    query_line, doc_line = prompt.lower().split("\n")[:2]
    query = set(query_line.removeprefix("query: ").split()) - {"for"}
    doc_id, _, text = doc_line.removeprefix("document ").partition(": ")
    words = {w.strip(".,:") for w in text.split()}
    return json.dumps({"doc": doc_id, "score": min(10, 3 * len(query & words))})


class StartTimes(BaseCallbackHandler):
    """Records when each chat model call starts."""

    run_inline = True  # called in the event loop when the call starts, not in a thread

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.starts.append(time.perf_counter())


def waves(starts: Sequence[float], gap_s: float) -> list[int]:
    """Batch sizes: a batch starts with a call more than ``gap_s`` after the batch's first."""
    sizes: list[int] = []
    first = -float("inf")
    for t in sorted(starts):
        if t - first > gap_s:
            sizes.append(0)
            first = t
        sizes[-1] += 1
    return sizes


class Runner:
    """Shared state of one deep-dive run: output, latency, and the reports it produced."""

    def __init__(self, out: Out, latency_s: float) -> None:
        self.out = out
        self.latency = latency_s
        self.reports: list[DispatchReport] = []
        self.models: list[SimulatedChatModel] = []
        # The demo's own breakers: its dead "primary" must not trip the process-wide ones.
        self.breakers = BreakerRegistry()

    def model(self, **kwargs: Any) -> SimulatedChatModel:
        """A simulated model whose calls count towards the run's total."""
        model = SimulatedChatModel(**kwargs)
        self.models.append(model)
        return model

    def keep(self, result: DispatchResult) -> DispatchResult:
        self.reports.append(result.report)
        return result

    def title(self, text: str) -> None:
        self.out("")
        self.out(text)
        self.out("=" * len(text))

    def heading(self, text: str) -> None:
        self.out("")
        self.out(text)

    def line(self, text: str) -> None:
        self.out(f"    {text}")
