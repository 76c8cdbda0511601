"""Server-sent events: framing, change detection, the final event, a vanished record."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from api.events import progress_stream, sse_frame
from jayavatar.errors import NotFound


def snapshots(*views: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    """Return a snapshot function that replays `views`, repeating the last one."""
    queue = list(views)

    async def snapshot() -> dict[str, Any]:
        if isinstance(queue[0], Exception):
            raise queue[0]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return snapshot


def parse(frames: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Return (event, data) for each frame that carries data."""
    out = []
    for frame in frames:
        fields = dict(line.split(": ", 1) for line in frame.strip().splitlines() if ": " in line)
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def test_a_frame_is_event_id_and_one_data_line() -> None:
    frame = sse_frame("progress", {"b": 1, "a": "x\ny"}, "7")
    assert frame == 'event: progress\nid: 7\ndata: {"a":"x\\ny","b":1}\n\n'


async def test_changes_are_sent_once_and_the_final_state_ends_the_stream() -> None:
    q = {"state": "queued", "progress": 0.0}
    v1 = {"state": "voice", "progress": 0.5}
    done = {"state": "done", "progress": 1.0}
    stream = progress_stream(snapshots(q, q, v1, v1, v1, done), interval_s=0)
    frames = [f async for f in stream]
    assert frames[0].startswith("retry: ")
    assert parse(frames) == [("progress", q), ("progress", v1), ("progress", done), ("done", done)]


async def test_failed_and_cancelled_end_with_their_own_event() -> None:
    for state in ("failed", "cancelled"):
        final = {"state": state, "error": "why"}
        events = parse([f async for f in progress_stream(snapshots(final), interval_s=0)])
        assert [e for e, _ in events] == ["progress", state]


async def test_a_record_that_vanishes_ends_with_an_error_event() -> None:
    q = {"state": "queued"}
    stream = progress_stream(snapshots(q, NotFound("no such request: x")), interval_s=0)  # type: ignore[arg-type]
    events = parse([f async for f in stream])
    assert events == [("progress", q), ("error", {"detail": "no such request: x"})]


async def test_idle_streams_send_keep_alive_comments() -> None:
    q = {"state": "queued"}
    stream = progress_stream(snapshots(q), interval_s=0.001, heartbeat_s=0.002)
    seen = []
    async for frame in stream:
        seen.append(frame)
        if frame.startswith(":"):
            break
    assert seen[-1] == ": keep-alive\n\n"
    assert len(parse(seen)) == 1
