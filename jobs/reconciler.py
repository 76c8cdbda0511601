"""The reconciler: finds requests that no worker is moving and puts them back on a queue.

Two cases: a claimed stage whose worker is gone (its liveness key expired, `jobs.liveness`) or
whose heartbeat stopped for `stuck_after_s` (its worker is frozen or wedged), which gets
a new epoch and so a fresh job id (ARQ's own re-run only comes after its in-progress key expires,
and aborted ids must never be reused); and an unclaimed stage whose ARQ job is gone, which is
enqueued again under its deterministic id.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from jayavatar.errors import EngineError, NotFound
from jobs import keys
from jobs.context import StageContext
from jobs.keys import LIPSYNC_STAGES
from jobs.liveness import is_alive
from jobs.payloads import STAGE_FUNCTIONS
from jobs.records import Request
from jobs.stages import _enqueue, fail

log = logging.getLogger(__name__)

#: Which stage (and queue) moves a request on from each non-final state.
STAGE_OF = {
    ("render", "queued"): "voice",
    ("render", "voice"): "voice",
    ("render", "lipsync"): "lipsync",
    ("voice_enroll", "queued"): "enroll_voice",
    ("voice_enroll", "enroll"): "enroll_voice",
    ("avatar_enroll", "queued"): "enroll_avatar",
    ("avatar_enroll", "enroll"): "enroll_avatar",
}
GRACE_S = 10.0


async def reconcile(ctx: dict[str, Any], drop_dead: bool = True) -> int:
    """Re-enqueue stuck or lost requests of this worker's queue; return how many."""
    sc: StageContext = ctx["stage"]
    mine_lipsync = ctx["queue_kind"] == "lipsync"
    fixed = 0
    for rid in await sc.store.active_ids():
        try:
            req = await sc.store.get(rid)
        except NotFound:
            await sc.redis.srem(sc.store.active_key, rid)
            continue
        stage = STAGE_OF.get((req.kind, req.state))
        if stage is None or (stage in LIPSYNC_STAGES) != mine_lipsync:
            continue
        if await _unstick(sc, req, stage):
            fixed += 1
    if drop_dead:
        queue = keys.worker_queue(sc.settings, mine_lipsync)
        await drop_dead_jobs(sc, queue)
    return fixed


async def drop_dead_jobs(sc: StageContext, queue: str) -> int:
    """Remove stuck jobs whose request is final, gone, or moved on to a newer epoch.

    A worker killed after its stage finished but before ARQ recorded the result leaves the job
    queued under an in-progress key for the whole function timeout (about 15 min for lip-sync).
    Nothing waits on it, but it reads as work (queue length, health check) and its keys linger.
    """
    dropped = 0
    for raw in await sc.redis.zrange(queue, 0, -1):
        job = raw.decode() if isinstance(raw, bytes) else str(raw)
        stage, _, rest = job.partition(":")
        rid, _, epoch = rest.partition(":")
        if stage not in STAGE_FUNCTIONS or not epoch.isdigit():
            continue  # not one of ours (e.g. a cron job)
        if not await sc.redis.exists(keys.arq_in_progress(job)):
            continue  # a worker will pick it up and skip it in a moment
        try:
            req: Request | None = await sc.store.get(rid)
        except NotFound:
            req = None
        if req is not None and not req.final and req.epoch == int(epoch):
            continue
        await sc.redis.zrem(queue, job)
        await sc.redis.delete(keys.arq_job(job), keys.arq_in_progress(job), keys.arq_retry(job))
        dropped += 1
    if dropped:
        log.warning("dropped %s stuck jobs of finished requests from %s", dropped, queue)
    return dropped


async def _unstick(sc: StageContext, req: Request, stage: str) -> bool:
    now = time.time()
    if req.running:
        stalled = now - req.heartbeat_at >= sc.settings.stuck_after_s
        if not stalled and not await _worker_gone(sc, req):
            return False
        return await _new_epoch(sc, req, stage, now)
    if now - req.updated_at < GRACE_S or await _job_alive(sc, req.job_id(stage)):
        return False
    log.warning("request %s lost its %s job; enqueueing it again", req.id, stage)
    await _enqueue(sc, req, stage, at=req.created_at)
    return True


async def _new_epoch(sc: StageContext, req: Request, stage: str, now: float) -> bool:
    if req.epoch >= sc.settings.max_tries:
        await fail(sc, req, EngineError(f"gave up after {req.epoch} attempts; workers kept dying"))
        return True

    def bump(r: Request) -> Request | None:
        # The same claim as seen above (not a new one by a live worker since).
        if r.epoch != req.epoch or not r.running or r.worker != req.worker:
            return None
        if r.heartbeat_at > req.heartbeat_at and now - r.heartbeat_at < sc.settings.stuck_after_s:
            return None
        return r.changed(epoch=r.epoch + 1, running=False, phase="requeued")

    new, changed = await sc.store.update(req.id, bump)
    if changed:
        log.warning(
            "request %s stopped in %s (worker %s); retrying as epoch %s",
            req.id,
            stage,
            req.worker or "unknown",
            new.epoch,
        )
        # Back at its old place in line, not behind everything queued since it started.
        await _enqueue(sc, new, stage, at=new.created_at)
    return changed


async def _worker_gone(sc: StageContext, req: Request) -> bool:
    """Tell whether the worker that claimed the request stopped pulsing."""
    if not req.worker:
        return False  # claimed before workers named themselves: the stall timer decides
    return not await is_alive(sc.redis, sc.settings, req.worker)


async def _job_alive(sc: StageContext, job_id: str) -> bool:
    found = (keys.arq_job(job_id), keys.arq_in_progress(job_id), keys.arq_retry(job_id))
    return bool(await sc.redis.exists(*found))
