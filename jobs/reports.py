"""Quality reports as after-delivery work: queued durably, computed in idle time, exactly once.

A finished render is added to a pending set in the same transaction that marks it done. A
lip-sync worker with nothing to render claims the oldest pending render, measures it in a
low-priority child process (not the engine's), and then, in one transaction, attaches the report
and leaves the pending set. A render that arrives meanwhile stops the report at once (it is
claimed again later), and a claim whose worker died is taken over, so a crash mid-report only
delays the report.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from redis.asyncio.client import Pipeline

from engines.calls import Evaluate
from jayavatar.errors import EngineError, NotFound, TransientError, UserError, one_line
from jayavatar.settings import Settings
from jobs import keys
from jobs.enginehost import EngineHost
from jobs.liveness import is_alive
from jobs.records import Request
from storage.keys import avatar_prefix, quality_plot_key, voice_prefix

if TYPE_CHECKING:
    from jobs.context import StageContext

log = logging.getLogger(__name__)


def pending_key(settings: Settings) -> str:
    """Return the key of renders waiting for their report, scored by when they finished."""
    return keys.quality_pending(settings)


def claim_key(settings: Settings, rid: str) -> str:
    """Return the key naming the worker that measures a render now."""
    return keys.quality_claim(settings, rid)


def unfitted_key(rid: str) -> str:
    """Return where a render is kept unfitted for its report when it was re-encoded to fit."""
    return f"work/quality/{rid}.mp4"


def queue_report(pipe: Pipeline, settings: Settings, req: Request) -> None:
    """Add a finished render to the pending reports, inside the transaction that finishes it."""
    if settings.quality_report and req.kind == "render" and req.state == "done":
        pipe.zadd(pending_key(settings), {req.id: req.finished_at or time.time()})


async def claim_next(sc: StageContext) -> str | None:
    """Claim the oldest pending render no live worker is measuring; None if there is none."""
    for raw in await sc.redis.zrange(pending_key(sc.settings), 0, 20):
        rid = raw.decode() if isinstance(raw, bytes) else str(raw)
        key = claim_key(sc.settings, rid)
        if await sc.redis.set(key, sc.worker_id, nx=True, ex=24 * 3600):
            return rid
        owner = await sc.redis.get(key)
        if owner is not None and not await is_alive(sc.redis, sc.settings, owner.decode()):
            log.warning("the report of %s was interrupted; measuring it again", rid)
            await sc.redis.delete(key)
    return None


async def release(sc: StageContext, rid: str) -> None:
    """Give a claimed render back (its report was stopped for a render)."""
    await sc.redis.delete(claim_key(sc.settings, rid))


async def measure(sc: StageContext, tools: EngineHost, rid: str) -> bool:
    """Measure a claimed render and attach its report; return whether this call attached it."""
    try:
        req = await sc.store.get(rid)
    except NotFound:
        req = None
    if req is None or req.state != "done" or req.quality or not req.output_key:
        await _settle(sc, rid, None)
        return False
    report = await _evaluate(sc, tools, req)
    body = json.dumps(report).encode()
    sc.storage.put_bytes(f"renders/{req.user}/{req.id}.quality.json", body)
    return await _settle(sc, rid, report)


async def _evaluate(sc: StageContext, tools: EngineHost, req: Request) -> dict[str, object]:
    v_owner, v_name = req.voice.split("/", 1)
    a_owner, a_name = req.avatar.split("/", 1)
    unfitted = unfitted_key(req.id)
    # Measured on the render before any size-fitting re-encode, which reads as changed background.
    mp4: Path = sc.storage.local_path(unfitted if sc.storage.exists(unfitted) else req.output_key)
    # The picture is drawn beside the report, from the same measurements.
    picture = sc.storage.scratch_dir() / "quality.png"
    call = Evaluate(
        mp4,
        sc.storage.local_path(avatar_prefix(a_owner, a_name)),
        sc.storage.local_path(voice_prefix(v_owner, v_name)),
        req.text,
        req.language,
        picture,
    )
    try:
        report: dict[str, object] = await tools.call(call, None, None)
    except (UserError, EngineError, TransientError) as exc:
        log.warning("no quality report for %s: %s", req.id, exc)
        report = {"summary": f"not measured: {one_line(exc)}", "flags": []}
    if picture.is_file():
        sc.storage.put_file(quality_plot_key(req.user, req.id), picture)
    shutil.rmtree(picture.parent, ignore_errors=True)
    return report


async def _settle(sc: StageContext, rid: str, report: dict[str, object] | None) -> bool:
    """Attach the report (if any) and drop the render from the pending set, atomically."""
    settings = sc.settings

    def attach(r: Request) -> Request | None:
        if report is None or r.state != "done" or r.quality:
            return None
        return r.changed(quality=report)

    def done(pipe: Pipeline, _old: Request, _new: Request) -> None:
        pipe.zrem(pending_key(settings), rid)
        pipe.delete(claim_key(settings, rid))

    changed = False
    with contextlib.suppress(NotFound):
        _req, changed = await sc.store.update(rid, attach, done)
    if not changed:
        async with sc.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(pending_key(settings), rid)
            pipe.delete(claim_key(settings, rid))
            await pipe.execute()
    sc.storage.delete(unfitted_key(rid))
    return changed
