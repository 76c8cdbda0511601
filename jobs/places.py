"""Places in line for many requests at once: one scan of each queue, not one per request.

`jobs.queues.position` answers for one request in one Redis script, which walks every job ahead
of it. Asked for each of N waiting requests (the bot's progress loop, a page of the request
list), that is N walks of up to N jobs. Here each queue and its askers' active sets are read
once, in one transaction, and the records of every front right after in one MGET; each place
follows by the same rule: other users' live requests of the same stage ahead, the first FRONT of
them counted only if their record still waits at their job's epoch.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from arq.connections import ArqRedis

from jobs.keys import queue_of
from jobs.queues import FRONT, Waiting, read_waiting, waiting_stage
from jobs.records import RecordStore, Request

_JOB_ID = re.compile(r"^([^:]*):([^:]*):(\d+)$")


@dataclass
class _Line:
    """The jobs of one stage in one queue, in run order, as one scan saw them."""

    index: dict[str, int] = field(default_factory=dict)  # every job id -> its place in the queue
    order: list[str] = field(default_factory=list)  # request ids by their first job of the stage
    firsts: list[int] = field(default_factory=list)  # ... and that job's place (ascending)
    jobs: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # rid -> (place, epoch)

    @classmethod
    def of(cls, job_ids: Sequence[bytes | str], stage: str) -> _Line:
        """Index a queue's job ids (cron and malformed ids count only as places)."""
        line = cls()
        for place, raw in enumerate(job_ids):
            job = raw.decode() if isinstance(raw, bytes) else raw
            line.index[job] = place
            match = _JOB_ID.match(job)
            if match is None or match[1] != stage:
                continue
            rid = match[2]
            if rid not in line.jobs:
                line.jobs[rid] = []
                line.order.append(rid)
                line.firsts.append(place)
            line.jobs[rid].append((place, int(match[3])))
        return line

    def ahead(self, place: int, own: set[str]) -> tuple[list[tuple[str, int]], int]:
        """(the first FRONT others ahead of `place`, each with its epoch there; all others)."""
        count = bisect.bisect_left(self.firsts, place)
        mine = sum(1 for rid in own if rid in self.jobs and self.jobs[rid][0][0] < place)
        front: list[tuple[str, int]] = []
        for rid in itertools.islice(self.order, count):
            if len(front) == FRONT:
                break
            if rid not in own:
                # A request's epoch is that of its last job ahead of this place.
                front.append((rid, [e for p, e in self.jobs[rid] if p < place][-1]))
        return front, count - mine


async def positions(
    redis: ArqRedis, store: RecordStore, reqs: Sequence[Request]
) -> list[int | None]:
    """`jobs.queues.position` of each request, from one read of each queue they wait in."""
    out: list[int | None] = [None] * len(reqs)
    by_stage: dict[str, list[int]] = defaultdict(list)
    for i, req in enumerate(reqs):
        stage = waiting_stage(req)
        if stage is not None:
            by_stage[stage].append(i)
    for stage, indexes in by_stage.items():
        asked = [reqs[i] for i in indexes]
        for i, place in zip(indexes, await _stage_places(redis, store, stage, asked), strict=True):
            out[i] = place
    return out


async def _stage_places(
    redis: ArqRedis, store: RecordStore, stage: str, reqs: list[Request]
) -> list[int | None]:
    """Places of requests that all wait for `stage`: one snapshot of its queue and owners."""
    users = sorted({r.user for r in reqs})
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrange(queue_of(store.settings, stage), 0, -1)
        for user in users:
            pipe.smembers(store.user_active_key(user))
        job_ids, *owned = await pipe.execute()
    line = _Line.of(job_ids, stage)
    own = {
        u: {m.decode() if isinstance(m, bytes) else m for m in s}
        for u, s in zip(users, owned, strict=True)
    }
    fronts: list[tuple[list[tuple[str, int]], int] | None] = []
    for req in reqs:
        place = line.index.get(req.job_id(stage))
        fronts.append(None if place is None else line.ahead(place, own[req.user]))
    waiting = await _read_front(redis, store, fronts)
    return [
        None if f is None else _count(f[0], waiting, stage) + f[1] - len(f[0]) + 1 for f in fronts
    ]


async def _read_front(
    redis: ArqRedis,
    store: RecordStore,
    fronts: list[tuple[list[tuple[str, int]], int] | None],
) -> dict[str, Waiting | None]:
    """The waiting fields of every request in any of the fronts, in one read."""
    rids = sorted({rid for f in fronts if f is not None for rid, _ in f[0]})
    raws = await redis.mget([store.key(rid) for rid in rids]) if rids else []
    return {rid: read_waiting(raw) for rid, raw in zip(rids, raws, strict=True)}


def _count(front: list[tuple[str, int]], waiting: dict[str, Waiting | None], stage: str) -> int:
    """How many of a front still wait for `stage` at the epoch of their job ahead."""
    return sum(
        1
        for rid, epoch in front
        if (w := waiting.get(rid)) is not None and waiting_stage(w) == stage and w.epoch == epoch
    )
