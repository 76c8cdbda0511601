"""Places in line for many requests at once agree with the one-request answer, case by case."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobs import queues
from jobs.client import JobClient
from jobs.records import Request
from tests.support.fixtures import line_client

USERS = ("alice", "bob", "carol", "dave")


@pytest.fixture
async def client(redis_url: str, tmp_path: Path) -> AsyncIterator[JobClient]:
    """A client on an emptied Redis; four users, each with a voice and an avatar."""
    async with line_client(redis_url, tmp_path, USERS) as job_client:
        yield job_client


async def one_by_one(client: JobClient, reqs: list[Request]) -> list[int | None]:
    """Each request's place asked alone, from its current record."""
    return [await client.queue_position(r.id) for r in reqs]


async def current(client: JobClient, reqs: list[Request]) -> list[Request]:
    """The requests' records as they are now."""
    return [await client.get(r.id) for r in reqs]


async def test_a_long_line_with_every_kind_of_entry(client: JobClient) -> None:
    # Users take turns, so each one's own requests are spread through the line, past the front.
    users = [USERS[i % 3] if i % 7 else "dave" for i in range(3 * queues.FRONT)]
    reqs = [await client.submit_render(u, f"line {i}") for i, u in enumerate(users)]
    voice_queue = client.settings.voice_queue
    await client.redis.zadd(voice_queue, {"cron:reconcile-voice:1": 0, "not a job id": 5})
    await client.cancel(reqs[3].id, reqs[3].user)
    await client.store.update(reqs[5].id, lambda r: r.model_copy(update={"running": True}))
    # A retried request: its epoch-1 job stays ahead while the record is at epoch 2.
    await client.store.update(reqs[8].id, lambda r: r.model_copy(update={"epoch": 2}))
    await client.redis.set(client.store.key(reqs[11].id), b"{not json")
    # Two requests past their voice stage wait in the lip-sync queue, in the other order.
    for i, score in ((14, 2.0), (20, 1.0)):
        await client.store.update(reqs[i].id, lambda r: r.model_copy(update={"state": "lipsync"}))
        await client.redis.zadd(client.settings.lipsync_queue, {reqs[i].job_id("lipsync"): score})
    asked = [r for i, r in enumerate(reqs) if i != 11]
    now = await current(client, asked)
    alone = await one_by_one(client, now)
    assert await client.positions_of(now) == alone
    assert alone[asked.index(reqs[3])] is None  # cancelled
    assert alone[asked.index(reqs[5])] is None  # running
    assert alone[asked.index(reqs[20])] == 1 and alone[asked.index(reqs[14])] == 2
    assert max(p for p in alone if p is not None) > queues.FRONT  # the line goes past the front


async def test_requests_not_in_line_have_no_place(client: JobClient) -> None:
    req = await client.submit_render("alice", "hello")
    gone = await client.cancel(req.id, "alice")
    assert await client.positions_of([gone]) == [None]
    # Waiting by its record, but its job is not in the queue (e.g. not enqueued yet).
    await client.redis.zrem(client.settings.voice_queue, req.job_id("voice"))
    lost = gone.model_copy(update={"state": "queued"})
    assert await client.positions_of([lost]) == [None]
    assert await client.positions_of([]) == []
