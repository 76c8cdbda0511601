"""The completion stream: every request that reaches a final state is announced exactly once.

Workers `XADD` inside the same transaction that makes a request final (see `RecordStore.update`).
Fronts read with a consumer group: their own pending entries first (so a restarted consumer sees
what it had not acknowledged), then new ones, and they claim entries idle in dead consumers.
`mark_delivered` records a delivery with `SET NX`, so a replay never posts twice.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from jayavatar.errors import NotFound
from jayavatar.settings import Settings
from jobs import keys
from jobs.records import RecordStore, Request

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


async def read_completions(
    redis: Redis,
    settings: Settings,
    group: str,
    consumer: str,
    block_ms: int = 5000,
    count: int = 10,
    claim_idle_ms: int = 60_000,
) -> list[tuple[str, Request]]:
    """Return (message id, request) pairs for this consumer: pending, claimed, then new."""
    await ensure_group(redis, settings, group)
    key = stream_key(settings)
    entries = _entries(await redis.xreadgroup(group, consumer, {key: "0"}, count=count))
    if not entries:
        claimed = await redis.xautoclaim(key, group, consumer, claim_idle_ms, "0-0", count=count)
        entries = [(mid, f) for mid, f in claimed[1] if f]
    if not entries:
        entries = _entries(
            await redis.xreadgroup(group, consumer, {key: ">"}, count=count, block=block_ms)
        )
    return await _resolve(redis, settings, group, entries)


async def ack(redis: Redis, settings: Settings, group: str, msg_id: str) -> None:
    """Acknowledge a completion message once it has been handled."""
    await redis.xack(stream_key(settings), group, msg_id)


async def mark_delivered(redis: Redis, settings: Settings, rid: str, how: str) -> bool:
    """Record that a request's result was delivered; False if it already was."""
    key = keys.delivered(settings, rid)
    return bool(await redis.set(key, how, nx=True, ex=settings.keep_result_s))


async def delivered_how(redis: Redis, settings: Settings, rid: str) -> str | None:
    """Return how a request was delivered, or None if it was not."""
    raw = await redis.get(keys.delivered(settings, rid))
    return raw.decode() if isinstance(raw, bytes) else raw


def _entries(reply: object) -> list[tuple[object, dict[object, object]]]:
    if not reply:
        return []
    out: list[tuple[object, dict[object, object]]] = []
    for _stream, messages in reply:  # type: ignore[attr-defined]
        out.extend((mid, fields) for mid, fields in messages if fields)
    return out


async def _resolve(
    redis: Redis, settings: Settings, group: str, entries: list[tuple[object, dict[object, object]]]
) -> list[tuple[str, Request]]:
    store = RecordStore(redis, settings)
    out: list[tuple[str, Request]] = []
    for mid, fields in entries:
        msg_id = _text(mid)
        rid = _text(fields.get(b"rid", fields.get("rid", "")))
        try:
            out.append((msg_id, await store.get(rid)))
        except NotFound:
            await ack(redis, settings, group, msg_id)  # the request was purged: nothing to deliver
    return out


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
