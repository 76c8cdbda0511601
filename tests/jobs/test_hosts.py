"""Worker presence keys: one per worker process, busy or idle, gone when it stops or dies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from jayavatar.settings import Settings
from jobs.hosts import BEATS_TO_EXPIRE, Beacon, describe, list_workers


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client on an emptied Redis."""
    client = Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


def settings(tmp_path: Path, name: str) -> Settings:
    """Settings naming this worker's host."""
    return Settings(data_dir=tmp_path, worker_name=name, health_check_interval_s=1, device="cpu")


async def test_every_worker_process_is_listed_with_its_state(redis: Redis, tmp_path: Path) -> None:
    gpu, voice = (
        Beacon(settings(tmp_path, "gpu-b"), "lipsync"),
        Beacon(settings(tmp_path, "a"), "voice"),
    )
    await gpu.busy(redis, "lipsync:r1:1")
    await voice.idle(redis)
    found = await list_workers(redis, gpu.settings)
    assert [(w["host"], w["kind"], w["state"]) for w in found] == [
        ("a", "voice", "idle"),
        ("gpu-b", "lipsync", "busy"),
    ]
    assert found[1]["engine"] == "landmark" and found[1]["gpu"] == "none"
    assert describe(found[1]).startswith(
        "gpu-b · lipsync/landmark · GPU none · busy (lipsync:r1:1)"
    )
    await gpu.idle(redis)
    assert {w["state"] for w in await list_workers(redis, gpu.settings)} == {"idle"}


async def test_a_stopped_worker_removes_its_key_and_a_dead_one_expires(
    redis: Redis, tmp_path: Path
) -> None:
    beacon = Beacon(settings(tmp_path, "gone"), "lipsync")
    task = asyncio.create_task(beacon.run(redis))
    while not await redis.exists(beacon.key):
        await asyncio.sleep(0.05)
    # A process killed here never deletes its key: the TTL of a few beats removes it.
    assert 0 < await redis.ttl(beacon.key) <= beacon.interval * BEATS_TO_EXPIRE + 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await list_workers(redis, beacon.settings) == []
