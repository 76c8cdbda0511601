"""Server-sent events: a request's progress, read from the same Redis record the bot polls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from jayavatar.errors import JayAvatarError, one_line

# A browser reconnects after this many milliseconds if the stream drops.
RETRY_MS = 2000


def sse_frame(event: str, data: dict[str, Any], event_id: str | None = None) -> str:
    """Format one SSE message; the JSON payload is one line, so one `data:` field suffices."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), sort_keys=True))
    return "\n".join(lines) + "\n\n"


async def progress_stream(
    snapshot: Callable[[], Awaitable[dict[str, Any]]],
    interval_s: float = 0.5,
    heartbeat_s: float = 15.0,
) -> AsyncIterator[str]:
    """Yield a `progress` event whenever the snapshot changes, then one final-state event.

    `snapshot` returns the public view of the request (state, progress, phase, queue position).
    The stream ends after the final event (`done`, `failed` or `cancelled`), or after an `error`
    event if the record cannot be read any more; the server stops
    the generator when the client goes away. Comments keep idle proxies from closing it.
    """
    yield f"retry: {RETRY_MS}\n\n"
    last: dict[str, Any] | None = None
    quiet_s = 0.0
    seq = 0
    while True:
        try:
            view = await snapshot()
        except JayAvatarError as exc:
            # The record vanished (purged) or Redis is down: say so and end the stream.
            yield sse_frame("error", {"detail": one_line(exc)})
            return
        if view != last:
            seq += 1
            last = view
            quiet_s = 0.0
            yield sse_frame("progress", view, str(seq))
        if view["state"] in ("done", "failed", "cancelled"):
            yield sse_frame(view["state"], view, str(seq + 1))
            return
        await asyncio.sleep(interval_s)
        quiet_s += interval_s
        if quiet_s >= heartbeat_s:
            quiet_s = 0.0
            yield ": keep-alive\n\n"
