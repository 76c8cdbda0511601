"""The reconciler drops jobs stuck under an in-progress key once their request no longer needs them.

A worker killed between finishing a stage and ARQ's bookkeeping leaves its job queued and
"in progress" for the whole function timeout; the chaos run found one lingering for 15 minutes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobs.client import JobClient
from jobs.context import StageContext
from jobs.reconciler import reconcile
from tests.support.fixtures import alice_client


@pytest.fixture
async def client(redis_url: str, tmp_path: Path) -> AsyncIterator[JobClient]:
    """A client on an emptied Redis with Alice's voice and avatar."""
    async with alice_client(redis_url, tmp_path, "rec") as job_client:
        yield job_client


def context(client: JobClient) -> dict[str, Any]:
    """The worker context the reconciler cron receives (no engine needed)."""
    no_engine: Any = None
    sc = StageContext(
        client.settings, client.redis, client.store, client.storage, client.accounts, no_engine, 30
    )
    return {"stage": sc, "queue_kind": "voice"}


async def stuck(client: JobClient, job: str) -> None:
    """Mark a queued job in progress, as a worker that took it and then died would."""
    await client.redis.zadd(client.settings.voice_queue, {job: 0})
    await client.redis.set(f"arq:in-progress:{job}", b"1", px=900_000)


async def test_stuck_jobs_of_finished_requests_are_dropped(client: JobClient) -> None:
    finished = await client.submit_render("alice", "done already", "me", "me")
    await client.store.update(finished.id, lambda r: r.changed(state="done"))
    superseded = await client.submit_render("alice", "retried", "me", "me")
    await client.store.update(superseded.id, lambda r: r.changed(epoch=2))
    live = await client.submit_render("alice", "running", "me", "me")
    dead_jobs = [finished.job_id("voice"), superseded.job_id("voice")]
    for job in [*dead_jobs, live.job_id("voice"), "cron:reconcile-voice:1"]:
        await stuck(client, job)

    await reconcile(context(client))

    queued = {j.decode() for j in await client.redis.zrange(client.settings.voice_queue, 0, -1)}
    assert queued.isdisjoint(dead_jobs)
    assert {live.job_id("voice"), "cron:reconcile-voice:1"} <= queued
    for job in dead_jobs:
        assert not await client.redis.exists(f"arq:in-progress:{job}", f"arq:job:{job}")
    assert await client.redis.exists(f"arq:in-progress:{live.job_id('voice')}")
