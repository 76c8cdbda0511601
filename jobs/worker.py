"""The two ARQ workers: `voice` (speech, voice enrollment), `lipsync` (render, avatar enrollment).

Each runs in its own Python environment with one engine, built once in a child process. Each
worker runs one job at a time (the engine is the bottleneck), wakes the moment a job is queued
(`jobs.wakeup`), keeps its housekeeping (liveness, reconciler, quality reports) beside the job
slot rather than in the queue (`jobs.housekeeping`), and survives Redis restarts by retrying its
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from arq import Retry
from arq.connections import RedisSettings
from arq.worker import Worker, func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jayavatar.errors import EngineError, Misconfigured, NotFound, TransientError, UserError
from jayavatar.settings import Settings
from jobs import enroll_stages, stages
from jobs.accounts import Accounts
from jobs.context import StageContext
from jobs.enginehost import EngineHost
from jobs.hosts import Beacon
from jobs.housekeeping import Housekeeper
from jobs.keys import worker_queue
from jobs.liveness import new_worker_id, pulse
from jobs.payloads import StagePayload
from jobs.records import RecordStore
from jobs.wakeup import WakeWorker
from storage import build_storage

log = logging.getLogger(__name__)

QueueKind = Literal["voice", "lipsync"]
Stage = Callable[[dict[str, Any], dict[str, Any]], Awaitable[str]]


def redis_settings(
    settings: Settings, conn_retries: int = 5, command_retries: int = 30
) -> RedisSettings:
    """Return ARQ Redis settings that retry through Redis restarts.

    Workers wait out a restart (about a minute of retries); fronts pass few retries so a user
    hears "cannot reach Redis" in a second or two instead.
    """
    try:
        base = RedisSettings.from_dsn(settings.redis_url)
    except (RuntimeError, ValueError):
        # The URL may hold a password: name the setting, not its value.
        raise Misconfigured(
            "JAYAVATAR_REDIS_URL is not a Redis URL; use redis://host:port/db"
        ) from None
    base.conn_retries = conn_retries
    base.retry_on_timeout = True
    base.retry_on_error = [
        RedisConnectionError,
        RedisTimeoutError,
        ConnectionError,
        TimeoutError,
        OSError,
    ]
    from redis.asyncio.retry import Retry as RedisRetry
    from redis.backoff import ExponentialBackoff

    base.retry = RedisRetry(ExponentialBackoff(cap=2.0, base=0.1), retries=command_retries)
    return base


def build_worker(settings: Settings, kind: QueueKind, burst: bool = False) -> Worker:
    """Build the ARQ worker for one queue."""
    timeout = settings.voice_timeout_s if kind == "voice" else settings.lipsync_timeout_s
    timeout = max(timeout, settings.enroll_timeout_s)
    if kind == "voice":
        jobs = [
            ("voice_stage", stages.voice_stage),
            ("enroll_voice_stage", enroll_stages.enroll_voice_stage),
        ]
    else:
        jobs = [
            ("lipsync_stage", stages.lipsync_stage),
            ("enroll_avatar_stage", enroll_stages.enroll_avatar_stage),
        ]
    queue = worker_queue(settings, kind == "lipsync")
    # ARQ's own timeout is a backstop: the stage enforces `timeout` itself and fails the request.
    functions = [func(_guarded(stage), name=name, timeout=timeout + 30) for name, stage in jobs]  # type: ignore[arg-type]
    return WakeWorker(
        functions=functions,
        queue_name=queue,
        redis_settings=redis_settings(settings),
        on_startup=_startup(settings, kind, timeout),
        on_shutdown=_shutdown,
        on_job_start=_job_start,
        on_job_end=_job_end,
        burst=burst,
        max_jobs=1,
        keep_result=settings.keep_result_s,
        max_tries=settings.max_tries + 2,
        health_check_interval=settings.health_check_interval_s,
        job_completion_wait=0,
        retry_jobs=True,
    )


def _startup(settings: Settings, kind: QueueKind, timeout: int):  # type: ignore[no-untyped-def]
    async def startup(ctx: dict[str, Any]) -> None:
        storage = build_storage(settings)
        swept = storage.sweep_orphans()  # type: ignore[attr-defined]
        if swept:
            log.info("removed %s temp items left by dead processes", swept)
        host = EngineHost(settings, kind)
        redis = ctx["redis"]
        beacon = Beacon(settings, kind)
        ctx["beacon"] = beacon
        ctx["beacon_task"] = asyncio.create_task(beacon.run(redis), name="beacon")
        ctx["queue_kind"] = kind
        ctx["stage"] = sc = StageContext(
            settings=settings,
            redis=redis,
            store=RecordStore(redis, settings),
            storage=storage,
            accounts=Accounts(redis, settings, storage),
            host=host,
            timeout_s=timeout,
            worker_id=new_worker_id(),
        )
        await pulse(redis, settings, sc.worker_id)
        # Before the engine loads (seconds): a dead predecessor's job is queued again meanwhile.
        ctx["housekeeper"] = keeper = Housekeeper(ctx)
        keeper.start()
        await host.start()
        log.info("worker %s ready", sc.worker_id)

    return startup


async def _shutdown(ctx: dict[str, Any]) -> None:
    keeper = ctx.get("housekeeper")
    if keeper is not None:
        await keeper.stop()
    stage = ctx.get("stage")
    if stage is not None:
        stage.host.kill()
    task = ctx.get("beacon_task")
    if task is not None:  # its last act removes this worker's presence key
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _is_stage(ctx: dict[str, Any]) -> bool:
    # The reconciler cron (job ids `reconcile-<kind>:<time>`) runs every few seconds; only
    # stages make a worker busy.
    return "beacon" in ctx and not str(ctx.get("job_id", "")).startswith("reconcile-")


async def _job_start(ctx: dict[str, Any]) -> None:
    if _is_stage(ctx):
        await ctx["beacon"].busy(ctx["redis"], str(ctx["job_id"]))


async def _job_end(ctx: dict[str, Any]) -> None:
    if _is_stage(ctx):
        await ctx["beacon"].idle(ctx["redis"])


def _guarded(stage: Stage) -> Stage:
    """Map errors to request states: user and engine errors fail, passing faults retry."""

    async def run(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
        sc: StageContext = ctx["stage"]
        try:
            return await stage(ctx, payload)
        except stages.Abandon as exc:
            log.info("abandoned: %s", exc)
            return "abandoned"
        except (UserError, EngineError) as exc:
            log.warning("request failed: %s", exc, exc_info=isinstance(exc, EngineError))
            await _fail(sc, payload, exc)
            return "failed"
        except (TransientError, RedisConnectionError, RedisTimeoutError, OSError) as exc:
            tries = int(ctx.get("job_try", 1))
            if tries >= sc.settings.max_tries:
                await _fail(sc, payload, TransientError(f"gave up after {tries} tries: {exc}"))
                return "failed"
            log.warning("retrying after a passing fault (try %s): %s", tries, exc)
            await _release(sc, payload)
            raise Retry(defer=min(2 * tries, 10)) from exc

    run.__name__ = stage.__name__
    run.__qualname__ = stage.__qualname__
    return run


async def _fail(sc: StageContext, payload: dict[str, Any], exc: BaseException) -> None:
    p = StagePayload.model_validate(payload)
    try:
        req = await sc.store.get(p.request_id)
    except NotFound:
        return
    await stages.fail(sc, req.model_copy(update={"epoch": p.epoch}), exc)


async def _release(sc: StageContext, payload: dict[str, Any]) -> None:
    # Unclaim so the retried job (same epoch) can claim the request again.
    p = StagePayload.model_validate(payload)
    with contextlib.suppress(NotFound, RedisConnectionError, OSError):
        await sc.store.update(
            p.request_id,
            lambda r: (
                r.changed(running=False, phase="retrying")
                if r.epoch == p.epoch and not r.final
                else None
            ),
        )
