"""Engine overhead against the floors it competes with, measured in one run; prints JSON.

Cases, each for a zero-latency async callable and for a minimal chat model that reports
``usage_metadata`` (10,000 calls at concurrency 100, distinct inputs):
  floor: ``asyncio.gather`` + ``Semaphore`` calling the agent (for the chat model: its own
      ``ainvoke`` cost, which nothing can go below).
  bare: the engine with no template, no budget, no cache (the default breaker and report).
  guarded: every guard on, each named in the JSON: a template with argument screening,
      output redaction, a budget with a known price and max output (so the tiktoken
      estimate, the reservation and the settlement run), the idempotency cache (in
      memory, every input a miss), the default breaker and recovery, the report.
  abatch: ``Runnable.abatch(max_concurrency=100)`` over the same agent, which guards
      nothing; send: a LangGraph ``Send`` fan-out (callable only).
  fixed_50ms: 200 calls of 50 ms at concurrency 50 (ideal 0.2 s), bare and guarded.
  stream: 1,000,000 inputs (``--stream-items``) streamed through the guarded engine in a
      fresh process that does nothing else: growth of its peak RSS (VmHWM, which a fresh
      exec starts anew).

Usage: python benchmarks/overhead.py [--quick] [--stream-items N]
Medians of interleaved repeated runs; ratios are against the floor measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from langgraph_fanout import (
    Dispatcher,
    DispatchResourceLimits,
    IdempotencyCache,
    Price,
    ScreeningPolicy,
    SubAgent,
)

PRICE = Price(input_per_mtok=0.15, output_per_mtok=0.60)
GUARDS_ON = [
    "argument screening (template with arguments)",
    "output redaction",
    "budget: tiktoken estimate, reservation, settlement (known price and max output)",
    "idempotency cache (in memory, every input a miss)",
    "breaker and recovery policy (defaults)",
    "report",
]
TEXT = "Summarise the receipt for order {n}: two coffees and a croissant, paid by card."


class TinyChat(BaseChatModel):
    """The least a chat model can be: an answer with ``usage_metadata``, no latency."""

    @property
    def _llm_type(self) -> str:
        return "tiny"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, **kw: Any) -> ChatResult:
        raise NotImplementedError

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        message = AIMessage(
            "done",
            usage_metadata={"input_tokens": 30, "output_tokens": 2, "total_tokens": 32},
            response_metadata={"model_name": "tiny"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


async def _noop(x: Any) -> Any:
    return x


def _call(agent: Any) -> Any:
    """The agent as one awaitable call of a prompt: the callable, or the model's ainvoke."""
    return agent.ainvoke if isinstance(agent, BaseChatModel) else agent


async def floor(n: int, conc: int, agent: Any) -> None:
    call = _call(agent)
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> Any:
        async with sem:
            return await call(TEXT.format(n=i))

    await asyncio.gather(*(one(i) for i in range(n)))


async def bare(n: int, conc: int, agent: Any) -> None:
    d = Dispatcher(agent, limits=DispatchResourceLimits(max_concurrent=conc))
    result = await d.run(None, [TEXT.format(n=i) for i in range(n)])
    assert result.report.succeeded == n


def _guarded_dispatcher(conc: int, agent: Any, without: frozenset[str] = frozenset()) -> Dispatcher:
    """Every guard on, less those named in ``without`` (``cache``, ``redaction``,
    ``budget``), for the per-guard costs of ``benchmarks/instructions.py``."""
    described = SubAgent.of(agent, name="bench", model="tiny", price=PRICE, max_output_tokens=64)
    budget = None if "budget" in without else 1e6
    return Dispatcher(
        described,
        limits=DispatchResourceLimits(max_concurrent=conc, max_total_cost_usd=budget),
        prices={"tiny": PRICE},
        cache=None if "cache" in without else IdempotencyCache(),
        # Flags injection markers in the arguments and redacts the outputs.
        screening=ScreeningPolicy(redact_outputs="redaction" not in without),
    )


async def guarded(n: int, conc: int, agent: Any, without: frozenset[str] = frozenset()) -> None:
    dispatcher = _guarded_dispatcher(conc, agent, without)
    result = await dispatcher.run(TEXT, [{"n": i} for i in range(n)])
    assert result.report.succeeded == n and result.report.cache_hits == 0


async def abatch(n: int, conc: int, agent: Any) -> None:
    runnable = agent if isinstance(agent, BaseChatModel) else RunnableLambda(agent)
    inputs = [TEXT.format(n=i) for i in range(n)]
    await runnable.abatch(inputs, config={"max_concurrency": conc})


class _S(TypedDict):
    items: list[int]
    out: Annotated[list[Any], operator.add]


async def send(n: int, conc: int, agent: Any) -> None:
    call = _call(agent)

    async def work(state: dict[str, Any]) -> dict[str, Any]:
        return {"out": [await call(TEXT.format(n=state["x"]))]}

    g = StateGraph(_S)
    g.add_node("work", work)
    g.add_conditional_edges(START, lambda s: [Send("work", {"x": i}) for i in s["items"]])
    g.add_edge("work", END)
    graph = g.compile()
    out = await graph.ainvoke({"items": list(range(n)), "out": []}, {"max_concurrency": conc})
    assert len(out["out"]) == n


def _interleaved(cases: dict[str, Any], n: int, conc: int, agent: Any, repeat: int) -> Any:
    """Median wall and CPU seconds of each case, the cases interleaved in every round so
    that a noisy neighbour slows them all alike."""
    wall: dict[str, list[float]] = {k: [] for k in cases}
    cpu: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            t0, c0 = time.perf_counter(), time.process_time()
            asyncio.run(fn(n, conc, agent))
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = {k: statistics.median(v) / n * 1e6 for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) / n * 1e6 for k, v in cpu.items()}
    return med, med_cpu


def zero_latency(n: int, repeat: int) -> dict[str, Any]:
    conc = 100
    out: dict[str, Any] = {"calls": n, "concurrency": conc, "guards_on": GUARDS_ON}
    for label, agent, cases in (
        (
            "callable",
            _noop,
            {"floor": floor, "bare": bare, "guarded": guarded, "abatch": abatch, "send": send},
        ),
        (
            "chat_model",
            TinyChat(),
            {"floor": floor, "bare": bare, "guarded": guarded, "abatch": abatch},
        ),
    ):
        asyncio.run(guarded(200, conc, agent))  # warm up: tiktoken's encoding, imports
        wall, cpu = _interleaved(cases, n, conc, agent, repeat)
        entry: dict[str, Any] = {
            "per_call_us": {k: round(v, 1) for k, v in wall.items()},
            "cpu_per_call_us": {k: round(v, 1) for k, v in cpu.items()},
            "bare_vs_floor_cpu": round(cpu["bare"] / cpu["floor"], 2),
            "guarded_vs_floor_cpu": round(cpu["guarded"] / cpu["floor"], 2),
            "abatch_vs_guarded": round(wall["abatch"] / wall["guarded"], 2),
        }
        if "send" in wall:
            entry["send_vs_guarded"] = round(wall["send"] / wall["guarded"], 2)
        out[label] = entry
    out["targets"] = {
        "callable.bare_vs_floor_cpu<=": 2.0,
        "callable.cpu_per_call_us.guarded<=": 60,
        "chat_model.guarded_vs_floor_cpu<=": 1.5,
        "callable.abatch_vs_guarded>=": 2.0,
        "callable.send_vs_guarded>=": 3.0,
        "chat_model.abatch_vs_guarded>=": 1.0,
    }
    return out


async def _sleep50(x: Any) -> Any:
    await asyncio.sleep(0.05)
    return x


def fixed_50ms(repeat: int) -> dict[str, Any]:
    n, conc, ideal = 200, 50, 0.2
    cases = {"floor": floor, "bare": bare, "guarded": guarded}
    wall, _ = _interleaved(cases, n, conc, _sleep50, repeat)
    seconds = {k: v * n / 1e6 for k, v in wall.items()}
    return {
        "calls": n,
        "concurrency": conc,
        "ideal_s": ideal,
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "vs_ideal": {k: round(v / ideal, 3) for k, v in seconds.items()},
        "target_guarded_vs_ideal<=": 1.05,
    }


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM) in MB: a fresh exec starts it anew, unlike
    ``ru_maxrss``, which a child inherits from its parent."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


_STREAM_CHILD = r"""
import asyncio, json, sys
sys.path.insert(0, sys.argv[2])
from contextlib import aclosing
from overhead import TEXT, _guarded_dispatcher, _noop, peak_rss_mb as hwm_mb

async def main(n):
    d = _guarded_dispatcher(100, _noop)
    async with aclosing(d.stream(TEXT, ({"n": i} for i in range(1000)))) as s:
        async for r in s:
            pass  # warm up, then measure from here
    before = hwm_mb()
    count = 0
    async with aclosing(d.stream(TEXT, ({"n": i} for i in range(n)))) as s:
        async for r in s:
            count += r.ok
    print(json.dumps({"items": n, "ok": count, "peak_rss_growth_mb": round(hwm_mb() - before, 1)}))

asyncio.run(main(int(sys.argv[1])))
"""


def stream(n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    here = str(Path(__file__).resolve().parent)
    out = subprocess.run(
        [sys.executable, "-c", _STREAM_CHILD, str(n), here],
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, Any] = json.loads(out.stdout)
    data["wall_s"] = round(time.perf_counter() - t0, 1)
    data["guards_on"] = GUARDS_ON
    data["target_peak_rss_growth_mb<"] = 100
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument(
        "--stream-items",
        type=int,
        default=None,
        help="inputs of the streamed case (default 1,000,000; the memory goal is set at 10M)",
    )
    args = parser.parse_args()
    n, repeat, big = (2_000, 3, 50_000) if args.quick else (10_000, 5, 1_000_000)
    if args.stream_items is not None:
        big = args.stream_items
    report = {
        "zero_latency": zero_latency(n, repeat),
        "fixed_50ms": fixed_50ms(repeat),
        "stream": stream(big),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
