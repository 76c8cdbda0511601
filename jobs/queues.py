"""Where a request waits: its ARQ queue, its honest place in line, and leaving the queue.

ARQ keeps a queue as a sorted set of job ids scored by when they may run, and a worker takes the
lowest score first, so the set's order is the run order. A place in line counts only other users'
live requests waiting for the same stage ahead of this one; whatever else sits in the set (old
cron entries, stale jobs of cancelled or retried requests, the user's own earlier requests) is
not someone to wait for.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from pydantic import BaseModel, ValidationError

from jayavatar.settings import Settings
from jobs import keys
from jobs.keys import queue_of
from jobs.payloads import STAGE_FUNCTIONS
from jobs.records import FINAL, Kind, RecordStore, Request, State

#: How many requests at the head of a queue have their records checked. Whatever is not a live
#: waiting request sits there: running jobs and stale ones (an older epoch of a retried
#: request) keep their place until a worker drops them, and workers take the lowest scores
#: first; cancelled jobs leave at once and finished ones are removed by ARQ.
FRONT = 32
FIRST_STAGE = {"render": "voice", "voice_enroll": "enroll_voice", "avatar_enroll": "enroll_avatar"}


# Every answer parses up to FRONT records ahead; these fields alone parse in half the time.
class Waiting(BaseModel):
    """The fields of a request record that say what it waits for."""

    kind: Kind
    state: State = "queued"
    running: bool = False
    epoch: int = 1


def waiting_stage(req: Request | Waiting) -> str | None:
    """Return the stage a request waits for, or None if it is final or running."""
    if req.state in FINAL or req.running:
        return None
    return "lipsync" if req.state == "lipsync" else FIRST_STAGE[req.kind]


#: The place in line in one round trip, the job ids parsed where they are.
#: KEYS: queue, the user's active set. ARGV: job id, stage, FRONT, record key prefix.
#: Returns nil (not queued) or {others beyond the front, epochs of the front, their records}.
#: "Others" are the distinct request ids of `stage` jobs ahead that are not the user's own, in
#: queue order; the last job of a request gives its epoch; cron and malformed ids are skipped.
POSITION_LUA = """
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank then return nil end
local own = {}
for _, rid in ipairs(redis.call('SMEMBERS', KEYS[2])) do own[rid] = true end
local order, epochs = {}, {}
if rank > 0 then
  for _, job in ipairs(redis.call('ZRANGE', KEYS[1], 0, rank - 1)) do
    local name, rid, epoch = string.match(job, '^([^:]*):([^:]*):(%d+)$')
    if name == ARGV[2] and not own[rid] then
      if not epochs[rid] then order[#order + 1] = rid end
      epochs[rid] = epoch
    end
  end
end
local front, records = {}, {}
for i = 1, math.min(#order, tonumber(ARGV[3])) do
  front[i] = epochs[order[i]]
  records[i] = redis.call('GET', ARGV[4] .. order[i]) or ''
end
return {#order - #front, front, records}
"""


async def position(redis: ArqRedis, store: RecordStore, req: Request) -> int | None:
    """Return "#n in line": 1 + other users' waiting requests ahead in the same stage.

    Parses at most FRONT records: a request polled while thousands wait must not parse
    thousands of records (the ids ahead are filtered in Redis, in one round trip).
    """
    stage = waiting_stage(req)
    if stage is None:
        return None
    queue = queue_of(store.settings, stage)
    own = store.user_active_key(req.user)
    args = (req.job_id(stage), stage, str(FRONT), store.key(""))
    reply = await redis.eval(POSITION_LUA, 2, queue, own, *args)
    if reply is None:
        return None
    beyond, epochs, raws = reply
    waiting = 0
    for epoch, raw in zip(epochs, raws, strict=True):
        other = read_waiting(raw)
        if other is not None and waiting_stage(other) == stage and other.epoch == int(epoch):
            waiting += 1
    return waiting + int(beyond) + 1


def read_waiting(raw: bytes | None) -> Waiting | None:
    """The waiting fields of a record; None for a missing or unreadable one (nobody waits)."""
    try:
        return Waiting.model_validate_json(raw) if raw else None
    except ValidationError:
        return None


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
