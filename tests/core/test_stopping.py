"""Stop conditions and the run's gates, as pure functions of the progress."""

from __future__ import annotations

import pytest

from langgraph_fanout import (
    ConfigurationError,
    DispatchProgress,
    Status,
    SubAgentResult,
    stop_after_failures,
    stop_after_successes,
)
from langgraph_fanout.core.stopping import (
    stop_on_any_failure,
    stop_on_failure_rate,
    stop_when_unreachable,
)
from langgraph_fanout.errors import AgentError


@pytest.mark.parametrize("k", [0, -1, True, 1.5, "2"])
def test_a_count_below_one_is_a_configuration_error(k: object) -> None:
    with pytest.raises(ConfigurationError, match="stop_after_successes k must be an int >= 1"):
        stop_after_successes(k)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="stop_after_failures k must be an int >= 1"):
        stop_after_failures(k)  # type: ignore[arg-type]


def _progress(ok: int, failed: int, total: int | None = 10) -> DispatchProgress:
    last = SubAgentResult.from_error(
        index=ok + failed - 1,
        agent="a",
        error=AgentError(agent="a", cause_type="ValueError", detail="bad"),
    )
    if failed == 0:
        last = SubAgentResult(index=ok - 1, agent="a", status=Status.OK, output="x")
    return DispatchProgress(total=total, succeeded=ok, failed=failed, finished=[], last=last)


def test_the_gates_read_only_the_progress() -> None:
    assert stop_on_any_failure()(_progress(3, 0)) is None
    assert stop_on_any_failure()(_progress(3, 1)) == "input 3 failed (agent_error)"
    rate = stop_on_failure_rate(0.5, min_sample=4, cancel_in_flight=False)
    assert rate(_progress(0, 3)) is None  # too few finished to judge
    assert rate(_progress(1, 3)) == "failure rate 75% > max_failure_rate=50%"
    assert rate(_progress(2, 2)) is None and not rate.cancels_in_flight
    need = stop_when_unreachable(8)
    assert need(_progress(5, 2)) is None  # 5 + 3 remaining can still make 8
    assert need(_progress(5, 3)) == "min_success_count=8 can no longer be reached"
    assert need(_progress(5, 3, total=None)) is None  # unknown total: never unreachable
