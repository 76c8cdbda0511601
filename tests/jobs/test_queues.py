"""Queue positions against the order a real worker runs jobs; cancelled requests leave at once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from arq.worker import func

from jobs import queues, reports
from jobs.client import JobClient
from jobs.records import Request
from jobs.wakeup import WakeWorker
from jobs.worker import redis_settings
from tests.support.fixtures import line_client

USERS = ("alice", "bob", "carol", "dave", "erin", "fay")


@pytest.fixture
async def client(redis_url: str, tmp_path: Path) -> AsyncIterator[JobClient]:
    """A client on an emptied Redis; six users, each with a voice and an avatar."""
    async with line_client(redis_url, tmp_path, USERS) as job_client:
        yield job_client


async def run_order(client: JobClient) -> list[str]:
    """Drain the voice queue with a real ARQ worker; return request ids in the order they ran."""
    ran: list[str] = []

    async def voice_stage(_ctx: dict[str, Any], payload: dict[str, Any]) -> None:
        ran.append(payload["request_id"])

    async def reconcile(_ctx: dict[str, Any]) -> None:  # an old cron entry left in the queue
        return None

    worker = WakeWorker(
        functions=[
            func(voice_stage, name="voice_stage"),  # type: ignore[arg-type]
            func(reconcile, name="cron:reconcile"),  # type: ignore[arg-type]
        ],
        queue_name=client.settings.voice_queue,
        redis_settings=redis_settings(client.settings),
        burst=True,
        max_jobs=1,
        handle_signals=False,
    )
    try:
        await worker.main()
    finally:
        await worker.close()
    return ran


def in_order(ran: list[str], live: list[Request]) -> list[Request]:
    """`live` in the order the worker ran them, which must be every one of them, once.

    Requests queued within the same millisecond share a score and run in id order, so the run
    order is what a place in line must match, not the order of submission.
    """
    assert sorted(ran) == sorted(r.id for r in live)
    by_id = {r.id: r for r in live}
    return [by_id[rid] for rid in ran]


async def test_positions_count_other_users_ahead_in_run_order(client: JobClient) -> None:
    queue = client.settings.voice_queue
    # Housekeeping around the work: a cron entry of an older release, and pending reports.
    await client.redis.zadd(queue, {"cron:reconcile-voice:1": 1})
    order = ["bob", "alice", "carol", "bob", "alice", "carol", "carol", "alice"]
    reqs: list[Request] = [await client.submit_render(u, f"line {i}") for i, u in enumerate(order)]
    await client.redis.zadd(reports.pending_key(client.settings), {reqs[0].id: 1.0})
    await client.cancel(reqs[2].id, "carol")  # cancelled: nobody waits for it
    positions = {r.id: await client.queue_position(r.id) for r in reqs}
    assert positions[reqs[2].id] is None

    ran = await run_order(client)

    live = in_order(ran, [r for r in reqs if r.id != reqs[2].id])
    for i, req in enumerate(live):
        others_before = [o for o in live[:i] if o.user != req.user]
        assert positions[req.id] == len(others_before) + 1, (req.user, i)
    assert positions[reqs[1].id] == 2  # alice behind one bob: "#2 in line", not "#3"


async def test_positions_stay_exact_deep_in_a_long_line(client: JobClient) -> None:
    """Past the records it reads (queues.FRONT), a place still counts only others' live requests."""
    order = ["bob", "carol"] * 30 + ["alice"] + ["carol", "bob"] * 30 + ["alice"]
    reqs: list[Request] = [await client.submit_render(u, f"line {i}") for i, u in enumerate(order)]
    assert len(reqs) > 3 * queues.FRONT
    gone = {reqs[i].id for i in (45, 70, 90)}  # deep in the line, beyond the front
    for rid in gone:
        await client.cancel(rid, next(r.user for r in reqs if r.id == rid))
    positions = {r.id: await client.queue_position(r.id) for r in reqs}
    live = in_order(await run_order(client), [r for r in reqs if r.id not in gone])
    for i, req in enumerate(live):
        assert positions[req.id] == sum(o.user != req.user for o in live[:i]) + 1, (req.user, i)
    # Last in line: everyone else ahead of her, her own first request not counted.
    assert positions[reqs[-1].id] == len(live) - 1


async def test_only_front_records_still_waiting_at_their_epoch_count(client: JobClient) -> None:
    """A running job, a stale epoch and an unreadable record ahead are nobody to wait for."""
    ahead = [await client.submit_render(u, "x") for u in ("bob", "carol", "dave", "erin", "fay")]
    mine = await client.submit_render("alice", "mine")
    assert await client.queue_position(mine.id) == 6
    running, stale, garbled, lipsync = ahead[:4]
    await client.store.update(running.id, lambda r: r.model_copy(update={"running": True}))
    # A retry moved this request on to epoch 2; its epoch-1 job still sits ahead in the queue.
    await client.store.update(stale.id, lambda r: r.model_copy(update={"epoch": 2}))
    await client.redis.set(client.store.key(garbled.id), b"{not json")
    # Past its voice stage it waits in the lip-sync queue, not in this one.
    await client.store.update(lipsync.id, lambda r: r.model_copy(update={"state": "lipsync"}))
    assert await client.queue_position(mine.id) == 2  # only fay's request is ahead


async def test_alone_in_line_is_first(client: JobClient) -> None:
    await client.redis.zadd(client.settings.voice_queue, {"cron:reconcile-voice:1": 1})
    first = await client.submit_render("alice", "one")
    second = await client.submit_render("alice", "two")
    assert await client.queue_position(first.id) == 1
    assert await client.queue_position(second.id) == 1  # her own first request is not "others"


async def test_cancelled_requests_leave_the_queue_at_once(client: JobClient) -> None:
    queue = client.settings.voice_queue
    doomed = [await client.submit_render(USERS[i % 3], f"n {i}") for i in range(1000)]
    assert await client.redis.zcard(queue) == 1000
    for req in doomed:
        await client.cancel(req.id, req.user)
    assert await client.redis.zcard(queue) == 0
    leftovers = [k async for k in client.redis.scan_iter(match="arq:job:*", count=1000)]
    assert leftovers == []

    fresh = await client.submit_render("bob", "after the mass cancel")
    assert await client.queue_position(fresh.id) == 1
    assert await run_order(client) == [fresh.id]  # the worker meets nothing before it
