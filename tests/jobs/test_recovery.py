"""A worker killed mid-job: its request is taken up again from liveness, ahead of the backlog.

The stall timer is set to an hour here, so only the liveness path can recover the request while
the test waits; 30 requests queued behind it must not delay that (housekeeping is not queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jayavatar.errors import BadInput
from tests.jobs.test_pipeline import LONG_TEXT, assets, completions_for, wait_for
from tests.support.fixtures import client
from tests.support.stack import Stack, running_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
__all__ = ["assets", "client"]
BACKLOG = 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Voice and lip-sync workers whose stall timer never fires during the test."""
    with running_stack(
        tmp_path_factory.mktemp("recovery"),
        {"JAYAVATAR_STUCK_AFTER_S": "3600", "JAYAVATAR_MAX_CONCURRENT": "64"},
    ) as stack:
        yield stack


async def test_killed_voice_worker_is_replaced_ahead_of_a_backlog(
    stack: Stack, client: Any, assets: None
) -> None:
    req = await client.submit_render("local", LONG_TEXT, "demo", "face")
    await wait_for(client, req.id, lambda r: r.state == "voice" and r.running)
    backlog = [
        await client.submit_render(
            "local", f"Queued number {i}, waiting for its turn.", "demo", "face"
        )
        for i in range(BACKLOG)
    ]
    stack.workers["voice"].kill(signal.SIGKILL)
    stack.start_worker("voice")

    moved = await wait_for(client, req.id, lambda r: r.state in ("lipsync", "done"), 300)
    assert moved.epoch == 2  # retried under a fresh job id, from liveness (no stall timer)
    behind = [await client.get(b.id) for b in backlog]
    # Liveness takes a few seconds to lapse, so the fresh worker may run a few short jobs first,
    # but the request does not wait for the backlog to drain.
    waiting = [b for b in behind if b.state in ("queued", "voice")]
    assert len(waiting) >= BACKLOG // 2, [b.state for b in behind]

    for b in backlog:
        with contextlib.suppress(BadInput):  # some may have finished meanwhile
            await client.cancel(b.id, "local")
    done = await client.wait(req.id, 300)
    assert done.state == "done", done.error
    assert await completions_for(client, req.id) == ["done"]
    log = stack.workers["voice"].log()
    assert "Traceback" not in log


def children(pid: int) -> list[int]:
    """Return the pids whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


async def test_engine_child_of_a_killed_worker_exits_quietly(
    stack: Stack, client: Any, assets: None
) -> None:
    req = await client.submit_render("local", LONG_TEXT, "demo", "face")
    await wait_for(client, req.id, lambda r: r.state == "lipsync" and r.running and r.progress > 0)
    worker = stack.workers["lipsync"]
    assert worker.proc is not None
    engine = children(worker.proc.pid)
    assert engine, "the lip-sync worker has no engine child"
    os.kill(worker.proc.pid, signal.SIGKILL)  # the worker alone, as the OOM killer would
    worker.proc.wait(30)
    for _ in range(300):  # the orphans notice within a second or two
        if not any(Path(f"/proc/{pid}").exists() for pid in engine):
            break
        await asyncio.sleep(0.1)
    alive = [pid for pid in engine if Path(f"/proc/{pid}").exists()]
    stack.start_worker("lipsync")
    assert alive == [], f"engine children still running: {alive}"
    done = await client.wait(req.id, 300)
    assert done.state == "done" and done.epoch == 2, done.error
    assert "Traceback" not in worker.log()
