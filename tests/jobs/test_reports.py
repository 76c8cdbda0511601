"""Quality reports after delivery: queued at the finish, taken over after a crash, attached once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engines.calls import EngineCall, Evaluate
from jobs import reports, stages
from jobs.client import JobClient
from jobs.context import StageContext
from jobs.liveness import pulse
from jobs.records import Request
from tests.support.fixtures import alice_client


class Measurer:
    """Stands in for the report process: counts calls, returns a fixed report."""

    def __init__(self) -> None:
        self.calls: list[Path] = []

    async def call(self, call: EngineCall[Any, Any], *_hooks: Any) -> Any:
        assert isinstance(call, Evaluate)
        self.calls.append(call.mp4)
        return {"summary": "measured", "flags": []}


@pytest.fixture
async def client(redis_url: str, tmp_path: Path) -> AsyncIterator[JobClient]:
    """A client on an emptied Redis with Alice's voice and avatar."""
    async with alice_client(redis_url, tmp_path, "rep") as job_client:
        yield job_client


def worker(client: JobClient, worker_id: str) -> StageContext:
    """The stage context of one lip-sync worker (its engine is never called here)."""
    no_engine: Any = None
    return StageContext(
        client.settings,
        client.redis,
        client.store,
        client.storage,
        client.accounts,
        no_engine,
        30,
        worker_id,
    )


async def rendered(client: JobClient, sc: StageContext) -> Request:
    """A render finished through the stages' own `finish`."""
    req = await client.submit_render("alice", "Hello.", "me", "me")
    req, _ = await client.store.update(req.id, lambda r: r.changed(state="lipsync"))
    out = f"renders/alice/{req.id}.mp4"
    client.storage.put_bytes(out, b"mp4")
    assert await stages.finish(sc, req, "lipsync", output_key=out, result={})
    return await client.get(req.id)


async def test_a_report_interrupted_by_a_crash_is_computed_later_once(client: JobClient) -> None:
    first, second = worker(client, "w1"), worker(client, "w2")
    await pulse(client.redis, client.settings, "w1")
    await pulse(client.redis, client.settings, "w2")
    req = await rendered(client, first)
    assert await client.redis.zrange(reports.pending_key(client.settings), 0, -1) == [
        req.id.encode()
    ]

    assert await reports.claim_next(first) == req.id
    assert await reports.claim_next(second) is None  # a live worker measures it
    # The first worker dies mid-report: its liveness key lapses.
    await client.redis.delete("rep:worker:w1:alive")
    assert await reports.claim_next(second) is None  # the dead claim is cleared ...
    assert await reports.claim_next(second) == req.id  # ... and taken over

    tools: Any = Measurer()
    assert await reports.measure(second, tools, req.id)
    assert not await reports.measure(second, tools, req.id)  # a replay changes nothing
    assert len(tools.calls) == 1
    assert (await client.get(req.id)).quality == {"summary": "measured", "flags": []}
    assert await client.redis.zcard(reports.pending_key(client.settings)) == 0
    assert await reports.claim_next(second) is None
    assert client.storage.exists(f"renders/alice/{req.id}.quality.json")


async def test_reports_are_off_when_disabled(client: JobClient, tmp_path: Path) -> None:
    settings = client.settings.model_copy(update={"quality_report": False})
    sc = worker(client, "w1")
    sc.settings = settings
    await rendered(client, sc)
    assert await client.redis.zcard(reports.pending_key(settings)) == 0
