"""Simulators for tests and offline demos: a fake chat model and scripted agents.

Nothing in this module calls a real model. ``SimulatedChatModel`` is a real LangChain
``BaseChatModel`` whose answers, latency, token usage and failures are simulated, so the
whole stack (callbacks, ``create_agent``, LangGraph, our guards) runs offline, fast and
reproducibly. ``scripted_agent`` is the smaller tool for engine tests that need no model.

Failure factories build exceptions that look like what a provider SDK raises
(``openai.RateLimitError`` with a real 429 response and ``retry-after`` header, ...), so
retry classification can be tested. ``openai`` is imported lazily and only by those
factories; without it they return ``SimulatedAPIError`` (or ``TimeoutError``), which carry
the same ``status_code`` and ``response.headers``.

Example:
    >>> model = SimulatedChatModel(choices=["yes", "no"], seed=7, latency_s=0.2)
    >>> model.invoke("Is the sky blue?").content in {"yes", "no"}
    True
"""

from langgraph_fanout.testing.calls import SAMPLE_INDEX_KEY
from langgraph_fanout.testing.failures import (
    FAILURE_KINDS,
    FailureSpec,
    ScriptExhaustedError,
    SimulatedAPIError,
    SimulatedResponse,
    bad_request_error,
    rate_limit_error,
    server_error,
    timeout_error,
)
from langgraph_fanout.testing.latency import (
    LatencyModel,
    heavy_tail_latency,
    lognormal_latency,
    uniform_latency,
)
from langgraph_fanout.testing.model import SimulatedChatModel
from langgraph_fanout.testing.scripted import ScriptedAgent, scripted_agent
from langgraph_fanout.testing.tokens import SIMULATED_MODEL_PRICES, count_simulated_tokens

__all__ = [
    "FAILURE_KINDS",
    "SAMPLE_INDEX_KEY",
    "SIMULATED_MODEL_PRICES",
    "FailureSpec",
    "LatencyModel",
    "ScriptExhaustedError",
    "ScriptedAgent",
    "SimulatedAPIError",
    "SimulatedChatModel",
    "SimulatedResponse",
    "bad_request_error",
    "count_simulated_tokens",
    "heavy_tail_latency",
    "lognormal_latency",
    "rate_limit_error",
    "scripted_agent",
    "server_error",
    "timeout_error",
    "uniform_latency",
]
