"""The completion stream: every request that reaches a final state is announced exactly once.

Workers `XADD` inside the same transaction that makes a request final (see `RecordStore.update`).
`CompletionReader` is the one way to read it. Fronts that deliver read with a consumer group:
their own pending entries first (so a restarted consumer sees what it had not acknowledged), then
new ones, and they claim entries idle in dead consumers. Followers that only need what comes next
(the API's metrics) read without a group, from the moment they start.
`mark_delivered` records a delivery with `SET NX`, so a replay never posts twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from jayavatar.settings import Settings
from jobs import keys
from jobs.records import Request

STREAM_MAXLEN = 100_000


def stream_key(settings: Settings) -> str:
    """Return the key of the completion stream."""
    return keys.completions(settings)


def announce(pipe: Pipeline, settings: Settings, req: Request) -> None:
    """Queue the announcement of a final request on a transaction pipeline."""
    fields: dict[Any, Any] = {"rid": req.id, "state": req.state}
    pipe.xadd(stream_key(settings), fields, maxlen=STREAM_MAXLEN, approximate=True)


async def ensure_group(redis: Redis, settings: Settings, group: str, start: str = "0") -> None:
    """Create a consumer group (and the stream) if missing."""
    try:
        await redis.xgroup_create(stream_key(settings), group, id=start, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclass(frozen=True)
class Completion:
    """One entry of the stream: a request that became final (its state at that moment)."""

    id: str
    rid: str
    state: str


class CompletionReader:
    """Reads the completion stream: in a consumer group when `group` is given, else plainly.

    A plain reader starts at the stream's end when it first reads and then follows every entry;
    a group reader sees what its group has not yet been given (`new`), its own unacknowledged
    entries (`pending`) and entries idle in other consumers (`claim_idle`), and acknowledges them.
    """

    def __init__(
        self, redis: Redis, settings: Settings, group: str | None = None, consumer: str = ""
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.key = stream_key(settings)
        self.group = group
        self.consumer = consumer
        self.last = "$"

    async def join(self, start: str = "0") -> None:
        """Create the consumer group (and the stream) if missing; `start` "$": only new entries."""
        assert self.group is not None
        await ensure_group(self.redis, self.settings, self.group, start)

    async def new(self, count: int, block_ms: int) -> list[Completion]:
        """Return entries not read before, waiting up to `block_ms` for the first one."""
        if self.group is None:
            if self.last == "$":
                # Pin the end now: reading "$" again later would skip what came in between.
                newest = await self.redis.xrevrange(self.key, count=1)
                self.last = _text(newest[0][0]) if newest else "0-0"
            reply = await self.redis.xread({self.key: self.last}, count=count, block=block_ms)
            for _stream, messages in reply or []:
                if messages:
                    self.last = _text(messages[-1][0])
            return _completions(reply)
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, {self.key: ">"}, count=count, block=block_ms
        )
        return _completions(reply)

    async def pending(self, after: str = "0", count: int = 100) -> list[Completion]:
        """Return this consumer's unacknowledged entries after the id `after`."""
        assert self.group is not None
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, {self.key: after}, count=count
        )
        return _completions(reply)

    async def claim_idle(self, idle_ms: int, count: int = 100) -> list[Completion]:
        """Take over entries other consumers left unacknowledged for `idle_ms`."""
        assert self.group is not None
        claimed = await self.redis.xautoclaim(
            self.key, self.group, self.consumer, idle_ms, "0-0", count=count
        )
        return [_completion(mid, fields) for mid, fields in claimed[1] if fields]

    async def ack(self, *ids: str) -> None:
        """Acknowledge entries once they have been handled."""
        assert self.group is not None
        if ids:
            await self.redis.xack(self.key, self.group, *ids)

    async def leave(self) -> None:
        """Destroy the consumer group (for short-lived groups, such as a waiter's)."""
        assert self.group is not None
        await self.redis.xgroup_destroy(self.key, self.group)


async def mark_delivered(redis: Redis, settings: Settings, rid: str, how: str) -> bool:
    """Record that a request's result was delivered; False if it already was."""
    key = keys.delivered(settings, rid)
    return bool(await redis.set(key, how, nx=True, ex=settings.keep_result_s))


async def delivered_how(redis: Redis, settings: Settings, rid: str) -> str | None:
    """Return how a request was delivered, or None if it was not."""
    raw = await redis.get(keys.delivered(settings, rid))
    return raw.decode() if isinstance(raw, bytes) else raw


def _completions(reply: Any) -> list[Completion]:
    # Entries trimmed or deleted since they were delivered come back without fields: skip them.
    return [
        _completion(mid, fields)
        for _stream, messages in reply or []
        for mid, fields in messages
        if fields
    ]


def _completion(mid: object, fields: dict[Any, Any]) -> Completion:
    def field(name: str) -> str:
        return _text(fields.get(name.encode(), fields.get(name, "")))

    return Completion(_text(mid), field("rid"), field("state"))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
