"""The render stages ARQ runs (voice, lip-sync) and the steps every stage shares.

Each stage loads the request record, claims it for its epoch, skips work whose output already
exists, runs the engine in the worker's `EngineHost`, publishes the output atomically and moves
the request on in one transaction. A stage for an old epoch, or a final request, does nothing.
The enrollment stages, built from the same steps, are in `jobs.enroll_stages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from engines.calls import EngineCall, FitToSize, Render, Synthesize
from jayavatar.errors import BadInput, EngineError, NotFound, TransientError, UserError, one_line
from jobs.completions import announce
from jobs.context import StageContext
from jobs.keys import queue_of
from jobs.payloads import STAGE_FUNCTIONS, StagePayload
from jobs.records import Request
from jobs.reports import queue_report, unfitted_key
from jobs.wakeup import enqueue
from storage.base import Storage
from storage.keys import avatar_prefix, render_key, speech_key, voice_prefix

log = logging.getLogger(__name__)
TICK_S = 1.0
# A tick this late means the whole process was frozen, not that the engine was slow.
FROZEN_GAP_S = 5.0
R = TypeVar("R")


class Abandon(Exception):
    """The request was cancelled or taken over by a newer epoch; stop without writing."""


async def voice_stage(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """Synthesize the request's speech, then hand it to the lip-sync queue."""
    sc: StageContext = ctx["stage"]
    req = await claim(sc, payload, ("queued", "voice"), "voice")
    if req is None:
        return await _maybe_forward(sc, payload)
    key = speech_key(req.id)
    if not sc.storage.exists(key):
        owner, name = req.voice.split("/", 1)
        voice_dir = _asset_dir(sc, voice_prefix(owner, name), "voice", req.voice)
        text, language = req.text, req.language
        out, _seconds = await run_engine(
            sc,
            req,
            lambda scratch: Synthesize(text, language, voice_dir, scratch / "speech.wav"),
            "speech.wav",
        )
        sc.storage.put_file(key, out)
        shutil.rmtree(out.parent, ignore_errors=True)
    started = req.started_at
    advance = _advance(req.epoch, "voice", "lipsync", started, sc.settings.voice_engine)
    req, moved = await sc.store.update(req.id, advance)
    if not moved:
        # Cancelled or failed while the engine ran: the speech just stored belongs to nobody.
        if req.final:
            cleanup(sc.storage, req)
        return "abandoned"
    await _enqueue(sc, req, "lipsync")
    return "voice done"


async def lipsync_stage(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """Render the lip-synced MP4 and announce the finished request."""
    sc: StageContext = ctx["stage"]
    req = await claim(sc, payload, ("lipsync",), "lipsync")
    if req is None:
        return "skipped"
    out_key = render_key(req.user, req.id)
    stats: dict[str, Any] = {}
    rendered: Path | None = None
    if not sc.storage.exists(out_key):
        owner, name = req.avatar.split("/", 1)
        avatar_dir = _asset_dir(sc, avatar_prefix(owner, name), "avatar", req.avatar)
        speech = sc.storage.local_path(speech_key(req.id))
        if not speech.is_file():
            raise TransientError("the speech of this request is missing; redoing the voice stage")
        meta = provenance(req)
        rendered, stats = await run_engine(
            sc,
            req,
            lambda scratch: Render(
                avatar_dir, speech, scratch / "render.mp4", meta, req.text, req.language
            ),
            "render.mp4",
        )
        out = rendered
        if req.max_bytes and out.stat().st_size > req.max_bytes:
            out, stats["fit"] = await _fit(sc, out, req.max_bytes)
            if sc.settings.quality_report and out != rendered:
                # The report measures the render before the re-encode, which reads as changed
                # background; it runs later (`jobs.reports`), so keep that render until then.
                sc.storage.put_file(unfitted_key(req.id), rendered)
        sc.storage.put_file(out_key, out)
    # The speech is not needed once the render exists; drop it before announcing the result.
    sc.storage.delete_prefix(f"work/{req.id}")
    stats["lipsync_engine"] = sc.settings.lipsync_engine
    await finish(sc, req, "lipsync", output_key=out_key, result=stats)
    if rendered is not None:
        shutil.rmtree(rendered.parent, ignore_errors=True)
    return "render done"


async def _fit(sc: StageContext, out: Path, max_bytes: int) -> tuple[Path, dict[str, Any]]:
    """Re-encode a render under `max_bytes`; if it cannot fit watchably, keep the original.

    The request still succeeds: the front says the file is over its limit and keeps it
    available (e.g. in /jobs or the API) instead of losing the render.
    """
    fitted = out.with_name("fitted.mp4")
    try:
        report = await sc.host.call(FitToSize(out, fitted, max_bytes), None, None)
    except BadInput as exc:
        return out, {"error": str(exc), "bytes": out.stat().st_size}
    return fitted, report


def provenance(req: Request) -> dict[str, str]:
    """Return the MP4 metadata tags that mark a render as AI-generated and say who asked."""
    note = f"AI-generated with JayAvatar; requested by {req.user}; request {req.id}"
    return {"comment": note, "description": note, "title": "JayAvatar render"}


# Claiming, running, finishing ------------------------------------------------------------------


async def claim(
    sc: StageContext, payload: dict[str, Any], states: tuple[str, ...], running_state: str
) -> Request | None:
    """Claim the request for this payload's epoch; None if it is not in `states` any more."""
    p = StagePayload.model_validate(payload)
    now = time.time()

    def take(r: Request) -> Request | None:
        if r.final or r.epoch != p.epoch or r.state not in states:
            return None
        waited = {f"{running_state}_wait_s": round(now - r.updated_at, 3)} if not r.running else {}
        return r.changed(
            state=running_state,
            running=True,
            worker=sc.worker_id,
            heartbeat_at=now,
            started_at=r.started_at or now,
            progress=0.0,
            phase="starting",
            timings={**r.timings, **waited},
        )

    try:
        req, changed = await sc.store.update(p.request_id, take)
    except NotFound:
        return None
    return req if changed else None


async def _maybe_forward(sc: StageContext, payload: dict[str, Any]) -> str:
    # A re-run of the voice stage after it moved the request on must still make sure the
    # lip-sync job exists (the crash may have hit between the two); the job id dedupes it.
    p = StagePayload.model_validate(payload)
    try:
        req = await sc.store.get(p.request_id)
    except NotFound:
        return "skipped"
    if req.state == "lipsync" and req.epoch == p.epoch and not req.running:
        await _enqueue(sc, req, "lipsync")
        return "forwarded"
    return "skipped"


async def _enqueue(sc: StageContext, req: Request, stage: str, at: float | None = None) -> None:
    queue = queue_of(sc.settings, stage)
    payload = StagePayload(request_id=req.id, epoch=req.epoch).model_dump()
    await enqueue(sc.redis, STAGE_FUNCTIONS[stage], payload, req.job_id(stage), queue, at)


async def run_engine(
    sc: StageContext, req: Request, make: Callable[[Path], EngineCall[Any, R]], name: str
) -> tuple[Path, R]:
    """Run the call `make` builds for a scratch folder, with heartbeat, cancel checks, a timeout.

    Returns the scratch folder's `name` (the call's output) and the call's result.
    """
    scratch = sc.storage.scratch_dir()
    call = make(scratch)
    started = time.monotonic()
    try:
        result: R = await _bounded(
            sc.host.call(call, _progress(sc, req), _check(sc, req)), sc.timeout_s
        )
    except TimeoutError:
        shutil.rmtree(scratch, ignore_errors=True)
        raise EngineError(f"the {call.step} step took longer than {sc.timeout_s} s") from None
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    await sc.store.update(req.id, _timing(req.epoch, f"{call.step}_s", time.monotonic() - started))
    return scratch / name, result


async def _bounded(call: Awaitable[Any], limit_s: float) -> Any:
    """Await `call`, raising `TimeoutError` once the worker has *run* for `limit_s` seconds.

    A frozen worker (SIGSTOP, a suspended VM) wakes up with its wall-clock deadline long past;
    `asyncio.wait_for` would then fail a job that was never slow. A tick that comes back far
    later than asked is counted as one tick, so frozen time does not count against the engine.
    """
    task = asyncio.ensure_future(call)
    spent, last = 0.0, time.monotonic()
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=TICK_S)
            now = time.monotonic()
            gap, last = now - last, now
            spent += gap if gap < FROZEN_GAP_S else TICK_S
            if spent >= limit_s and not task.done():
                raise TimeoutError
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _progress(sc: StageContext, req: Request):  # type: ignore[no-untyped-def]
    async def report(fraction: float, phase: str) -> None:
        def apply(r: Request) -> Request | None:
            if r.final or r.epoch != req.epoch:
                return None
            return r.changed(progress=round(fraction, 3), phase=phase, heartbeat_at=time.time())

        await sc.store.update(req.id, apply)

    return report


def _check(sc: StageContext, req: Request):  # type: ignore[no-untyped-def]
    async def check() -> None:
        def beat(r: Request) -> Request | None:
            if r.final or r.epoch != req.epoch:
                return None
            return r.changed(heartbeat_at=time.time())

        current, changed = await sc.store.update(req.id, beat)
        if not changed:
            raise Abandon(f"request {req.id} is {current.state} (epoch {current.epoch})")

    return check


def _timing(epoch: int, name: str, seconds: float):  # type: ignore[no-untyped-def]
    def apply(r: Request) -> Request | None:
        if r.epoch != epoch:
            return None
        return r.changed(timings={**r.timings, name: round(seconds, 3)})

    return apply


def _advance(epoch: int, from_state: str, to_state: str, started: float, engine: str):  # type: ignore[no-untyped-def]
    def apply(r: Request) -> Request | None:
        if r.epoch != epoch or r.state != from_state:
            return None
        spent = {f"{from_state}_stage_s": round(time.time() - started, 3)}
        return r.changed(
            state=to_state,
            running=False,
            progress=0.0,
            phase="queued",
            started_at=0.0,
            timings={**r.timings, **spent},
            result={**r.result, "voice_engine": engine},
        )

    return apply


async def finish(sc: StageContext, req: Request, from_state: str, **fields: Any) -> bool:
    """Mark the request done and announce it; return whether this call did (not a replay)."""
    now = time.time()

    def apply(r: Request) -> Request | None:
        if r.epoch != req.epoch or r.state != from_state:
            return None
        spent = {f"{from_state}_stage_s": round(now - (r.started_at or now), 3)}
        if "result" in fields:  # keep what earlier stages noted (e.g. the voice engine)
            fields["result"] = {**r.result, **fields["result"]}
        return r.changed(
            state="done",
            running=False,
            progress=1.0,
            phase="done",
            finished_at=now,
            timings={**r.timings, **spent},
            **fields,
        )

    def effects(pipe: Any, _old: Request, new: Request) -> Any:
        queue_report(pipe, sc.settings, new)
        return announce(pipe, sc.settings, new)

    done, changed = await sc.store.update(req.id, apply, effects)
    if changed:
        cleanup(sc.storage, done)
        await sc.accounts.count(
            f"{done.kind}_done", done.timings if done.kind == "render" else None
        )
    elif done.final and done.state != "done":
        # Cancelled or failed while the engine ran: drop the output nobody will ever fetch.
        cleanup(sc.storage, done)
        if fields.get("output_key"):
            sc.storage.delete(fields["output_key"])
    return changed


async def fail(sc: StageContext, req: Request, exc: BaseException) -> None:
    """Mark a request failed with a one-line reason and announce it."""
    message = one_line(exc)

    def apply(r: Request) -> Request | None:
        if r.final or r.epoch != req.epoch:
            return None
        return r.changed(
            state="failed",
            running=False,
            error=message,
            refused=isinstance(exc, UserError),
            finished_at=time.time(),
        )

    done, changed = await sc.store.update(
        req.id, apply, lambda pipe, _o, new: announce(pipe, sc.settings, new)
    )
    if changed:
        cleanup(sc.storage, done)
        await sc.accounts.count(f"{done.kind}_failed")


def cleanup(storage: Storage, req: Request) -> None:
    """Remove a final request's intermediate files (speech, uploads)."""
    storage.delete_prefix(f"work/{req.id}")
    storage.delete_prefix(f"uploads/{req.id}")
    if req.state != "done" and req.output_key:
        storage.delete(req.output_key)


def _asset_dir(sc: StageContext, prefix: str, kind: str, ref: str) -> Path:
    path = sc.storage.local_path(prefix)
    if not path.is_dir():
        raise NotFound(f"the {kind} {ref!r} was removed")
    return path
