"""The completion stream's one reader: plain followers, and groups that survive restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from jayavatar.settings import Settings
from jobs import keys
from jobs.completions import CompletionReader


@pytest.fixture
async def redis(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[Redis, Settings]]:
    """A connection to an emptied Redis, with settings naming it."""
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, key_prefix="c")
    conn = Redis.from_url(redis_url)
    await conn.flushall()
    yield conn, settings
    await conn.aclose()


async def announce(conn: Redis, settings: Settings, rid: str, state: str = "done") -> None:
    """Add one entry as a worker's transaction would."""
    await conn.xadd(keys.completions(settings), {"rid": rid, "state": state})


async def test_a_plain_reader_follows_from_its_first_read(redis: tuple[Redis, Settings]) -> None:
    conn, settings = redis
    await announce(conn, settings, "before")
    reader = CompletionReader(conn, settings)
    assert await reader.new(count=10, block_ms=50) == []  # what came before it is not news
    await announce(conn, settings, "r1")
    await announce(conn, settings, "r2", "failed")
    got = await reader.new(count=10, block_ms=50)
    assert [(c.rid, c.state) for c in got] == [("r1", "done"), ("r2", "failed")]
    assert await reader.new(count=10, block_ms=50) == []


async def test_a_group_reader_gets_back_what_it_did_not_acknowledge(
    redis: tuple[Redis, Settings],
) -> None:
    conn, settings = redis
    first = CompletionReader(conn, settings, "g", "bot")
    await first.join()
    await announce(conn, settings, "r1")
    await announce(conn, settings, "r2")
    got = await first.new(count=10, block_ms=50)
    await first.ack(got[0].id)
    # A restarted consumer of the same name sees its unacknowledged entry first.
    again = CompletionReader(conn, settings, "g", "bot")
    assert [c.rid for c in await again.pending()] == ["r2"]
    assert await again.new(count=10, block_ms=50) == []
    # Another consumer takes over entries left idle long enough.
    other = CompletionReader(conn, settings, "g", "other")
    assert [c.rid for c in await other.claim_idle(idle_ms=0)] == ["r2"]
    await other.ack("0-0")  # an unknown id is harmless
    await other.leave()
    assert await conn.xinfo_groups(keys.completions(settings)) == []
