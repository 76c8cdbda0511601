"""Durable request records in Redis, changed only by optimistic transactions.

A request is one JSON document at `<prefix>:req:<id>`. Every change goes through
`RecordStore.update`,
a WATCH/MULTI transaction, so two processes never lose each other's writes, and a state change can
be committed together with its side effects (queue index, completion stream entry).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from jayavatar.errors import NotFound
from jayavatar.settings import Settings
from jobs import keys
from storage.keys import validate_request_id

Kind = Literal["render", "voice_enroll", "avatar_enroll"]
State = Literal["queued", "voice", "lipsync", "enroll", "done", "failed", "cancelled"]
FINAL: frozenset[str] = frozenset({"done", "failed", "cancelled"})

Mutator = Callable[["Request"], "Request | None"]
SideEffects = Callable[[Pipeline, "Request", "Request"], Awaitable[None] | None]


class Request(BaseModel):
    """One user request and everything known about its progress."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: Kind
    state: State = "queued"
    user: str
    text: str = ""
    language: str = "en"
    voice: str = ""
    avatar: str = ""
    name: str = ""
    replace: bool = False
    upload_key: str = ""
    origin: dict[str, str] = Field(default_factory=dict)
    max_bytes: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    heartbeat_at: float = 0.0
    running: bool = False
    # The worker (`jobs.liveness`) that claimed the running stage.
    worker: str = ""
    epoch: int = 1
    progress: float = 0.0
    phase: str = ""
    error: str = ""
    # The failure was a refusal of the user's input (a `UserError`), not a fault of ours.
    refused: bool = False
    output_key: str = ""
    retry_of: str = ""
    timings: dict[str, float] = Field(default_factory=dict)
    quality: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] = Field(default_factory=dict)

    @property
    def final(self) -> bool:
        """Tell whether the request has reached a state it never leaves."""
        return self.state in FINAL

    def job_id(self, stage: str) -> str:
        """Return the ARQ job id of a stage for the current epoch (never reused across epochs)."""
        return f"{stage}:{self.id}:{self.epoch}"

    def changed(self, **fields: Any) -> Request:
        """Return a copy with `fields` changed and `updated_at` set to now."""
        return self.model_copy(update={**fields, "updated_at": time.time()})


def new_request_id() -> str:
    """Return a fresh, unguessable request id."""
    return uuid.uuid4().hex


class RecordStore:
    """Reads and writes request records and their indexes."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings

    def key(self, rid: str) -> str:
        """Return the Redis key of a request record."""
        return keys.request(self.settings, rid)

    @property
    def active_key(self) -> str:
        """Return the key of the set of requests not yet final."""
        return keys.active(self.settings)

    def user_key(self, user: str) -> str:
        """Return the key of a user's requests, scored by creation time."""
        return keys.user_requests(self.settings, user)

    def user_active_key(self, user: str) -> str:
        """Return the key of a user's requests not yet final."""
        return keys.user_active(self.settings, user)

    async def active_count(self, user: str) -> int:
        """Return how many of a user's requests are not yet final."""
        return int(await self.redis.scard(self.user_active_key(user)))

    @property
    def all_key(self) -> str:
        """Return the key of all requests, scored by creation time."""
        return keys.all_requests(self.settings)

    async def create(
        self, req: Request, side_effects: Callable[[Pipeline], None] | None = None
    ) -> None:
        """Store a new request and index it; `side_effects` queues more commands in its MULTI."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.key(req.id), req.model_dump_json(), nx=True)
            pipe.sadd(self.active_key, req.id)
            pipe.sadd(self.user_active_key(req.user), req.id)
            pipe.zadd(self.user_key(req.user), {req.id: req.created_at})
            pipe.zadd(self.all_key, {req.id: req.created_at})
            if side_effects is not None:
                side_effects(pipe)
            await pipe.execute()

    async def get(self, rid: str) -> Request:
        """Return a request; `NotFound` if unknown or malformed."""
        try:
            validate_request_id(rid)
        except Exception as exc:
            raise NotFound(f"no such request: {rid[:40]}") from exc
        raw = await self.redis.get(self.key(rid))
        if raw is None:
            raise NotFound(f"no such request: {rid}")
        return Request.model_validate_json(raw)

    async def get_many(self, rids: list[str]) -> list[Request]:
        """Return the records that exist among `rids`, in order."""
        if not rids:
            return []
        raws = await self.redis.mget([self.key(r) for r in rids])
        return [Request.model_validate_json(r) for r in raws if r is not None]

    async def update(
        self, rid: str, mutate: Mutator, side_effects: SideEffects | None = None
    ) -> tuple[Request, bool]:
        """Apply `mutate` atomically; return (record, whether it changed).

        `mutate` returns the new record or None to leave it alone. `side_effects` queues more
        commands in the same MULTI, so they happen if and only if the change commits.
        """
        key = self.key(rid)
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        raise NotFound(f"no such request: {rid}")
                    old = Request.model_validate_json(raw)
                    new = mutate(old)
                    if new is None:
                        await pipe.unwatch()
                        return old, False
                    pipe.multi()
                    pipe.set(key, new.model_dump_json())
                    if new.final:
                        pipe.srem(self.active_key, rid)
                        pipe.srem(self.user_active_key(new.user), rid)
                    if side_effects is not None:
                        pending = side_effects(pipe, old, new)
                        if pending is not None:
                            await pending
                    await pipe.execute()
                    return new, True
                except WatchError:
                    continue

    async def delete(self, req: Request) -> None:
        """Remove a record and its index entries."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.key(req.id))
            pipe.srem(self.active_key, req.id)
            pipe.srem(self.user_active_key(req.user), req.id)
            pipe.zrem(self.user_key(req.user), req.id)
            pipe.zrem(self.all_key, req.id)
            await pipe.execute()

    async def active_ids(self) -> list[str]:
        """Return ids of all requests not yet final."""
        members = await self.redis.smembers(self.active_key)
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def user_ids(self, user: str | None, offset: int, limit: int) -> list[str]:
        """Return request ids newest first, for one user or all."""
        key = self.all_key if user is None else self.user_key(user)
        found = await self.redis.zrevrange(key, offset, offset + limit - 1)
        return [m.decode() if isinstance(m, bytes) else m for m in found]
