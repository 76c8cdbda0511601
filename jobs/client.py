"""The one front door to the pipeline: the CLI, the Discord bot and the HTTP API all call this.

Every check (text, names, consent, allow/deny, pause, quotas) happens here, before anything is
stored or queued, so a refused request leaves no trace.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jayavatar.errors import BadInput, Forbidden, NotFound, TransientError
from jayavatar.settings import Settings
from jobs import keys
from jobs.accounts import Accounts, AssetKind, Standing
from jobs.completions import CompletionReader, announce
from jobs.gate import admit
from jobs.keys import queue_of
from jobs.payloads import STAGE_FUNCTIONS, StagePayload
from jobs.places import positions
from jobs.queues import FIRST_STAGE, position, withdraw
from jobs.records import Kind, RecordStore, Request, new_request_id
from jobs.stages import cleanup
from jobs.validate import check_language, clean_text
from jobs.wakeup import queue_job
from jobs.worker import redis_settings
from storage import build_storage
from storage.base import Storage
from storage.keys import render_key, upload_key, validate_name, validate_user


class JobClient:
    """Submits, inspects, cancels and waits for requests."""

    def __init__(self, settings: Settings, redis: ArqRedis, storage: Storage) -> None:
        self.settings = settings
        self.redis = redis
        self.storage = storage
        self.store = RecordStore(redis, settings)
        self.accounts = Accounts(redis, settings, storage)

    @classmethod
    async def connect(cls, settings: Settings) -> JobClient:
        """Connect to Redis; `TransientError` with a one-line message if it cannot be reached."""
        try:
            redis = await create_pool(
                redis_settings(settings, conn_retries=0, command_retries=3), retry=0
            )
        except (RedisError, OSError, ValueError) as exc:
            raise TransientError(f"cannot reach Redis at {_safe_url(settings.redis_url)}") from exc
        return cls(settings, redis, build_storage(settings))

    async def close(self) -> None:
        """Close the Redis connection."""
        await self.redis.aclose()

    # Submitting ---------------------------------------------------------------------------

    async def submit_render(
        self,
        user: str,
        text: str,
        voice: str | None = None,
        avatar: str | None = None,
        language: str | None = None,
        origin: dict[str, str] | None = None,
        max_bytes: int = 0,
    ) -> Request:
        """Check and queue a render; raise a `UserError` before queueing anything that is wrong."""
        async with _redis_errors(self.settings):
            user = validate_user(user)
            text = clean_text(text, self.settings)
            standing = await self._may_render(user)
            profile = standing.profile
            voice_asset = await self._pick("voice", user, voice or profile.voice)
            avatar_asset = await self._pick("avatar", user, avatar or profile.avatar)
            lang = check_language(language or profile.language or "en", self.settings)
            self._check_active(standing.active, standing.concurrent)
            await self.accounts.take_daily(user, standing.daily)
            req = self._new(
                "render",
                user,
                origin,
                text=text,
                language=lang,
                voice=voice_asset.ref,
                avatar=avatar_asset.ref,
                max_bytes=max(0, max_bytes),
            )
            try:
                return await self._start(req)
            except BaseException:
                # Nothing was queued, so the render must not count against today's quota.
                await self.accounts.give_back_daily(user)
                raise

    async def submit_voice_enroll(
        self,
        user: str,
        name: str,
        upload: Path,
        replace: bool = False,
        origin: dict[str, str] | None = None,
        label: str | None = None,
    ) -> Request:
        """Store a voice sample and queue its enrollment (`label`: the user's file name)."""
        return await self._submit_enroll("voice", user, name, upload, replace, origin, label)

    async def submit_avatar_enroll(
        self,
        user: str,
        name: str,
        upload: Path,
        replace: bool = False,
        origin: dict[str, str] | None = None,
        label: str | None = None,
    ) -> Request:
        """Store avatar media and queue its preparation (`label`: the user's file name)."""
        return await self._submit_enroll("avatar", user, name, upload, replace, origin, label)

    async def _submit_enroll(
        self,
        kind: AssetKind,
        user: str,
        name: str,
        upload: Path,
        replace: bool,
        origin: dict[str, str] | None,
        label: str | None,
    ) -> Request:
        async with _redis_errors(self.settings):
            user, name = validate_user(user), validate_name(name)
            found = admit(kind, self.settings, upload, label or upload.name)
            if not replace and await self.accounts.get_asset(kind, user, name) is not None:
                raise BadInput(
                    f"you already have a {kind} named {name!r}; "
                    "enroll again with replace to overwrite it"
                )
            await self._check_concurrency(user)
            req = self._new(f"{kind}_enroll", user, origin, name=name, replace=replace)  # type: ignore[arg-type]
            key = upload_key(req.id, found.ext)
            self.storage.put_file(key, upload)
            try:
                return await self._start(req.model_copy(update={"upload_key": key}))
            except BaseException:
                self.storage.delete_prefix(f"uploads/{req.id}")
                raise

    async def _may_render(self, user: str) -> Standing:
        standing = await self.accounts.standing(user)
        if not standing.allowed:
            raise Forbidden("you are not allowed to render; ask an admin")
        if standing.paused and not standing.admin:
            raise Forbidden("rendering is paused by an admin; try again later")
        return standing

    async def _check_concurrency(self, user: str) -> None:
        _daily, concurrent = await self.accounts.quota(user)
        self._check_active(await self.store.active_count(user), concurrent)

    @staticmethod
    def _check_active(active: int, concurrent: int) -> None:
        if active >= concurrent:
            raise Forbidden(
                f"you already have {active} requests in progress (limit {concurrent}); "
                "wait for one to finish"
            )

    async def _pick(self, kind: AssetKind, user: str, ref: str) -> Any:
        if not ref:
            owned = await self.accounts.usable(kind, user)
            if len(owned) != 1:
                raise BadInput(f"no {kind} given and no default {kind} set; enroll one or name one")
            return owned[0]
        return await self.accounts.resolve(kind, user, ref)

    def _new(self, kind: Kind, user: str, origin: dict[str, str] | None, **fields: Any) -> Request:
        now = time.time()
        return Request(
            id=new_request_id(),
            kind=kind,
            user=user,
            origin=dict(origin or {}),
            created_at=now,
            updated_at=now,
            **fields,
        )

    async def _start(self, req: Request) -> Request:
        stage = FIRST_STAGE[req.kind]
        payload = StagePayload(request_id=req.id, epoch=req.epoch).model_dump()
        fn, job, queue = STAGE_FUNCTIONS[stage], req.job_id(stage), queue_of(self.settings, stage)
        # The record and its first job commit together, in one round trip.
        await self.store.create(req, lambda p: queue_job(p, self.redis, fn, payload, job, queue))
        return req

    # Reading ------------------------------------------------------------------------------

    async def get(self, rid: str, user: str | None = None) -> Request:
        """Return a request; `NotFound` also for other users' requests (unless admin)."""
        async with _redis_errors(self.settings):
            req = await self.store.get(rid)
            if user is not None and req.user != user and not await self.accounts.is_admin(user):
                raise NotFound(f"no such request: {rid}")
            return req

    async def list_requests(
        self,
        user: str | None = None,
        states: set[str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Request]:
        """Return requests newest first, optionally for one user and some states."""
        async with _redis_errors(self.settings):
            out: list[Request] = []
            cursor = offset
            while len(out) < limit:
                ids = await self.store.user_ids(user, cursor, 200)
                if not ids:
                    break
                cursor += len(ids)
                out.extend(
                    r for r in await self.store.get_many(ids) if not states or r.state in states
                )
            return out[:limit]

    async def queue_position(self, rid: str) -> int | None:
        """Return "#n in line" (1 = next; only other users' requests of the same stage count),
        or None if the request is not waiting."""
        return await self.position_of(await self.get(rid))

    async def position_of(self, req: Request) -> int | None:
        """`queue_position` of a record already in hand (one read fewer)."""
        async with _redis_errors(self.settings):
            return await position(self.redis, self.store, req)

    async def positions_of(self, reqs: Sequence[Request]) -> list[int | None]:
        """`position_of` of many records: one read of each queue, not one walk per record."""
        async with _redis_errors(self.settings):
            return await positions(self.redis, self.store, reqs)

    def output_path(self, req: Request) -> Path:
        """Return the local file of a finished render."""
        if req.state != "done" or not req.output_key:
            raise NotFound(f"request {req.id} has no finished render")
        return self.storage.local_path(req.output_key)

    async def watch(
        self, rid: str, user: str | None = None, interval_s: float = 0.5
    ) -> AsyncIterator[Request]:
        """Yield the record each time it changes, until it is final."""
        seen = -1.0
        while True:
            req = await self.get(rid, user)
            if req.updated_at != seen:
                seen = req.updated_at
                yield req
            if req.final:
                return
            await asyncio.sleep(interval_s)

    async def wait(self, rid: str, timeout_s: float) -> Request:
        """Wait until a request is final, reading the completion stream with a consumer group."""
        stream = CompletionReader(self.redis, self.settings, f"wait-{uuid.uuid4().hex}", "cli")
        async with _redis_errors(self.settings):
            await stream.join(start="$")
            try:
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    req = await self.get(rid)
                    if req.final:
                        return req
                    # Any completion wakes the waiter, which then reads its own request's record.
                    entries = await stream.new(count=100, block_ms=1000)
                    await stream.ack(*(entry.id for entry in entries))
                raise TransientError(
                    f"request {rid} is still {(await self.get(rid)).state} after {timeout_s:.0f} s"
                )
            finally:
                await stream.leave()

    # Changing -----------------------------------------------------------------------------

    async def cancel(self, rid: str, user: str) -> Request:
        """Cancel a queued or running request (its worker stops within about a second)."""
        req = await self.get(rid, user)
        if req.final:
            raise BadInput(f"request {rid} is already {req.state}")

        def apply(r: Request) -> Request | None:
            if r.final:
                return None
            return r.changed(
                state="cancelled",
                running=False,
                phase="cancelled",
                error=f"cancelled by {user}",
                finished_at=time.time(),
            )

        async with _redis_errors(self.settings):
            new, changed = await self.store.update(
                rid, apply, lambda p, _o, n: announce(p, self.settings, n)
            )
        if not changed:
            raise BadInput(f"request {rid} is already {new.state}")
        async with _redis_errors(self.settings):
            # Out of the queue now: a cancelled job must cost no worker a look.
            await withdraw(self.redis, self.settings, new)
        cleanup(self.storage, new)
        return new

    async def retry(self, rid: str, user: str) -> Request:
        """Submit a new request with the same parameters as a finished one."""
        old = await self.get(rid, user)
        if not old.final:
            raise BadInput(f"request {rid} is still {old.state}; cancel it first or wait")
        if old.kind != "render":
            raise BadInput("only renders can be retried; upload the file again to enroll")
        new = await self.submit_render(
            old.user, old.text, old.voice, old.avatar, old.language, old.origin, old.max_bytes
        )
        await self.store.update(new.id, lambda r: r.changed(retry_of=old.id))
        return await self.store.get(new.id)

    async def purge_user(self, user: str) -> dict[str, int]:
        """Cancel and delete everything of a user: requests, files, assets and settings."""
        user = validate_user(user)
        counts = await self.accounts.purge_user(user)
        purged: list[Request] = []
        while ids := await self.store.user_ids(user, 0, 500):
            for req in await self.store.get_many(ids):
                if not req.final:
                    await self.store.update(
                        req.id, lambda r: r.changed(state="cancelled", running=False)
                    )
                cleanup(self.storage, req)
                if req.output_key:
                    self.storage.delete(req.output_key)
                await self.store.delete(req)
                purged.append(req)
                counts["records"] += 1
            await self.redis.zrem(self.store.user_key(user), *ids)
        counts["files"] += self.storage.delete_prefix(f"renders/{user}")
        await self.redis.delete(self.store.user_key(user), self.store.user_active_key(user))
        await self._forget(purged)
        return counts

    async def _forget(self, purged: list[Request]) -> None:
        """Drop what other parts keep per request: queued jobs and their results, delivery
        marks, the bot's notes. They are keyed by request id, so a purge must find them."""
        if not purged:
            return
        doomed: list[str] = []
        for req in purged:
            for stage in STAGE_FUNCTIONS:
                for epoch in range(1, req.epoch + 1):
                    job = f"{stage}:{req.id}:{epoch}"
                    for queue in keys.queues(self.settings):
                        await self.redis.zrem(queue, job)
                    doomed += [keys.arq_job(job), keys.arq_result(job), keys.arq_retry(job)]
        rids = {req.id for req in purged}
        async for raw in self.redis.scan_iter(match=keys.everything(self.settings), count=1000):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            if key.rsplit(":", 1)[-1] in rids:
                doomed.append(key)
        await self.redis.delete(*doomed)


@asynccontextmanager
async def _redis_errors(settings: Settings) -> AsyncIterator[None]:
    """Turn Redis outages into `TransientError` with a one-line message."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError) as exc:
        raise TransientError(f"cannot reach Redis at {_safe_url(settings.redis_url)}") from exc


def _safe_url(url: str) -> str:
    # Never print a password that may sit in the URL.
    if "@" in url:
        scheme, rest = url.split("://", 1) if "://" in url else ("redis", url)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


__all__ = ["JobClient", "render_key"]
