"""Shared fixtures: breaker state is process-wide by design, so each test starts clean."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from langgraph_fanout.guards.breaker import default_breakers


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    default_breakers.reset()
    yield
    default_breakers.reset()


class FakeSleep:
    """An async sleep that records the waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()
