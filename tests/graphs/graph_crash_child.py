"""Child process of the crash/resume test in ``test_graphs.py``.

A 50-item fan-out graph on a SQLite checkpointer; every paid call appends its item to a
calls file, so the parent can count paid calls across processes.

Usage:
    python graph_crash_child.py DB CALLS THREAD first STALL_AFTER
        start the run; calls after the STALL_AFTER-th never return (a hung provider), so
        the run stops making progress with STALL_AFTER items finished and saved, and the
        parent kills it with SIGKILL.
    python graph_crash_child.py DB CALLS THREAD resume
        resume the thread and print a JSON summary of the output.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from langgraph_fanout import DispatchResourceLimits, SubAgent
from langgraph_fanout.graphs.fan import as_dispatch_result, create_fan_out_graph
from langgraph_fanout.guards.pricing import Price
from langgraph_fanout.testing import SimulatedChatModel

ITEMS = 50
CHANNEL = "finished"  # the fan-out graph's internal channel of finished items
PRICES = {"simulated-small": Price(input_per_mtok=1.0, output_per_mtok=2.0)}
COST_PER_CALL = (100 * 1.0 + 10 * 2.0) / 1e6  # usage_override=(100, 10) at PRICES


def _paid(calls_path: str, item: int) -> None:
    """Append the item to the calls file: one line per paid call, readable by the parent."""
    with open(calls_path, "a", encoding="utf-8") as calls:
        calls.write(f"{item}\n")


def build(calls_path: str, stall_after: int | None) -> Any:
    model = SimulatedChatModel(usage_override=(100, 10), max_tokens=100)
    started = 0

    async def worker(item: int, config: RunnableConfig) -> int:
        nonlocal started
        started += 1
        if stall_after is not None and started > stall_after:
            await asyncio.Event().wait()  # hung: only SIGKILL ends this process
        await model.ainvoke(f"item {item}", config)
        _paid(calls_path, item)
        return item * 2

    agent = SubAgent.of(worker, name="worker", model="simulated-small", max_output_tokens=100)
    return create_fan_out_graph(
        agent,
        limits=DispatchResourceLimits(max_concurrent=5, max_total_cost_usd=1.0),
        prices=PRICES,
    )


async def main(db: str, calls_path: str, thread: str, mode: str, stall: int | None) -> None:
    config: RunnableConfig = {"configurable": {"thread_id": thread}}
    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        graph = build(calls_path, stall if mode == "first" else None).compile(checkpointer=saver)
        if mode == "first":
            await graph.ainvoke({"items": list(range(ITEMS))}, config, durability="sync")
            raise SystemExit("the first run was expected to hang until killed")
        out = await graph.ainvoke(None, config, durability="sync")
    result = as_dispatch_result(out)
    print(
        json.dumps(
            {
                "ok": sum(r.ok for r in result),
                "indices": [r.index for r in result],
                "outputs": result.outputs,
                "total_spent_usd": result.report.total_spent_usd,
                "spent_usd": result.report.spent_usd,
                "calls_started": result.report.calls_started,
            }
        )
    )


if __name__ == "__main__":
    db_path, calls_file, thread_id, run_mode = sys.argv[1:5]
    stall_at = int(sys.argv[5]) if len(sys.argv) > 5 else None
    asyncio.run(main(db_path, calls_file, thread_id, run_mode, stall_at))
