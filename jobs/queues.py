"""Where a request waits: its ARQ queue, its honest place in line, and leaving the queue.

ARQ keeps a queue as a sorted set of job ids scored by when they may run, and a worker takes the
lowest score first, so the set's order is the run order. A place in line counts only other users'
live requests waiting for the same stage ahead of this one; whatever else sits in the set (old
cron entries, stale jobs of cancelled or retried requests, the user's own earlier requests) is
not someone to wait for.
"""

from __future__ import annotations

from arq.connections import ArqRedis

from jayavatar.settings import Settings
from jobs import keys
from jobs.keys import queue_of
from jobs.payloads import STAGE_FUNCTIONS
from jobs.records import RecordStore, Request

#: How many requests at the head of a queue have their records checked. Whatever is not a live
#: waiting request sits there: running jobs and stale ones (an older epoch of a retried
#: request) keep their place until a worker drops them, and workers take the lowest scores
#: first; cancelled jobs leave at once and finished ones are removed by ARQ.
FRONT = 32
FIRST_STAGE = {"render": "voice", "voice_enroll": "enroll_voice", "avatar_enroll": "enroll_avatar"}


def waiting_stage(req: Request) -> str | None:
    """Return the stage a request waits for, or None if it is final or running."""
    if req.final or req.running:
        return None
    return "lipsync" if req.state == "lipsync" else FIRST_STAGE[req.kind]


async def position(redis: ArqRedis, store: RecordStore, req: Request) -> int | None:
    """Return "#n in line": 1 + other users' waiting requests ahead in the same stage.

    Reads the job ids ahead, the user's own request ids and at most FRONT records: a request
    polled while thousands wait must not parse thousands of records.
    """
    stage = waiting_stage(req)
    if stage is None:
        return None
    queue = queue_of(store.settings, stage)
    rank = await redis.zrank(queue, req.job_id(stage))
    if not rank:
        return None if rank is None else 1
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrange(queue, 0, int(rank) - 1)
        pipe.smembers(store.user_active_key(req.user))
        ahead_raw, own_raw = await pipe.execute()
    ahead = _stage_jobs(ahead_raw, stage)
    own = {_text(r) for r in own_raw}
    others = [rid for rid in ahead if rid not in own]
    front = await store.get_many(others[:FRONT])
    waiting = [o for o in front if waiting_stage(o) == stage and o.epoch == ahead[o.id]]
    return len(waiting) + len(others[FRONT:]) + 1


def _stage_jobs(raw_ids: list[bytes | str], stage: str) -> dict[str, int]:
    """{request id: epoch} of the `stage` jobs among ARQ job ids (others: cron, old entries)."""
    found: dict[str, int] = {}
    for raw in raw_ids:
        name, _, rest = _text(raw).partition(":")
        rid, _, epoch = rest.partition(":")
        if name == stage and epoch.isdigit():
            found[rid] = int(epoch)
    return found


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def withdraw(redis: ArqRedis, settings: Settings, req: Request) -> bool:
    """Take a request's waiting job out of its queue at once; return whether one was removed.

    A job a worker already took is left alone: the stage sees the request final and stops.
    """
    removed = False
    for stage in STAGE_FUNCTIONS:
        job = req.job_id(stage)
        if await redis.exists(keys.arq_in_progress(job)):
            continue
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zrem(queue_of(settings, stage), job)
            pipe.delete(keys.arq_job(job), keys.arq_retry(job))
            gone, _deleted = await pipe.execute()
        removed = removed or bool(gone)
    return removed
