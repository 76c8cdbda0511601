"""Stage timeouts count the time a worker runs, not the time it spent frozen."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace

import pytest

from jobs import stages


async def test_a_slow_call_times_out() -> None:
    with pytest.raises(TimeoutError):
        await stages._bounded(asyncio.sleep(30), 1.0)


async def test_a_quick_call_returns_its_result() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert await stages._bounded(answer(), 1.0) == 42


async def test_frozen_time_does_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # The clock jumps 100 s between two ticks, as after SIGSTOP/SIGCONT; the call then finishes.
    jumps = itertools.chain([0.0, 100.0], itertools.count(100.1, 0.1))
    monkeypatch.setattr(stages, "time", SimpleNamespace(monotonic=lambda: next(jumps)))
    monkeypatch.setattr(stages, "TICK_S", 0.01)
    ticks = 0

    async def slow_then_done() -> str:
        nonlocal ticks
        while ticks < 3:
            ticks += 1
            await asyncio.sleep(0.02)
        return "done"

    assert await stages._bounded(slow_then_done(), 5.0) == "done"


async def test_a_failing_call_raises_its_error() -> None:
    async def broken() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await stages._bounded(broken(), 5.0)
