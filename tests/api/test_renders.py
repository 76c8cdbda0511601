"""The API against real Redis and real workers: enroll, render, follow events, download, manage.

Every call goes over HTTP to uvicorn serving `create_app`; the workers run the offline engines
in their own environments (tests.support.stack).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.keys import ApiKeys
from jayavatar.settings import Settings
from jobs.client import JobClient
from tests.api.live import headers, live_server, wait_for_metric, wait_until_final
from tests.api.mp4 import box_types, decode
from tests.support.assets import demo_inputs
from tests.support.fixtures import stack
from tests.support.stack import Stack

__all__ = ["stack"]
TEXT = "Hello from the API."


def make_keys(settings: Settings) -> dict[str, str]:
    """Create the test users' keys in the stack's Redis."""

    async def go() -> dict[str, str]:
        client = await JobClient.connect(settings)
        try:
            keys = ApiKeys(client.redis, settings, client.accounts)
            return {
                "alice": (await keys.create("alice"))[0],
                "bob": (await keys.create("bob"))[0],
                "root": (await keys.create("root", admin=True))[0],
            }
        finally:
            await client.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def site(stack: Stack) -> Iterator[tuple[str, dict[str, str]]]:
    """The API served on the stack, with keys for alice, bob and an admin."""
    settings: Settings = stack.settings()  # type: ignore[assignment]
    tokens = make_keys(settings)
    with live_server(settings) as base:
        yield base, tokens


@pytest.fixture(scope="module")
def enrolled(site: tuple[str, dict[str, str]]) -> tuple[str, dict[str, str]]:
    """Alice's voice `me` and avatar `face`, enrolled through the API."""
    base, tokens = site
    voice, avatar = demo_inputs()
    for kind, path in (("voices", voice), ("avatars", avatar)):
        r = httpx.put(
            f"{base}/v1/{kind}/{'me' if kind == 'voices' else 'face'}",
            params={"filename": path.name},
            headers=headers(tokens["alice"]),
            content=path.read_bytes(),
            timeout=30,
        )
        assert r.status_code == 202, r.text
        done = wait_until_final(base, tokens["alice"], r.json()["id"])
        assert done["state"] == "done", done
    return site


def events(
    base: str, token: str, rid: str, on_first: Callable[[], None] = lambda: None
) -> list[tuple[str, dict[str, Any]]]:
    """Read a request's SSE stream to its end; return (event, data) pairs.

    `on_first` runs once the first event has arrived (the test holds the worker until then).
    """
    out: list[tuple[str, dict[str, Any]]] = []
    url = f"{base}/v1/requests/{rid}/events"
    with httpx.stream("GET", url, headers=headers(token), timeout=300) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[6:])))
                if len(out) == 1:
                    on_first()
    return out


def test_render_progress_events_then_a_valid_mp4(
    enrolled: tuple[str, dict[str, str]], stack: Stack, tmp_path: Path
) -> None:
    base, tokens = enrolled
    alice = headers(tokens["alice"])
    # Freeze the voice worker so the stream's first event is surely the waiting request.
    voice_worker = stack.workers["voice"]
    voice_worker.kill(signal.SIGSTOP)
    resumed = False

    def resume() -> None:
        nonlocal resumed
        if not resumed:
            voice_worker.kill(signal.SIGCONT)
            resumed = True

    try:
        r = httpx.post(f"{base}/v1/renders", headers=alice, json={"text": TEXT}, timeout=30)
        assert r.status_code == 202, r.text
        created = r.json()
        rid = created["id"]
        assert r.headers["location"] == f"/v1/requests/{rid}"
        assert (created["voice"], created["avatar"], created["state"]) == (
            "alice/me",
            "alice/face",
            "queued",
        )
        seen = events(base, tokens["alice"], rid, on_first=resume)
    finally:
        resume()

    names = [e for e, _ in seen]
    assert names[-1] == "done" and names[:-1] == ["progress"] * (len(names) - 1)
    first = seen[0][1]
    assert (first["state"], first["progress"]) == ("queued", 0.0)
    assert first["queue_position"] >= 1
    # Events are snapshots of the record (a stage shorter than the poll may not show), and
    # states only move forward through the pipeline.
    states = [d["state"] for _, d in seen]
    order = ["queued", "voice", "lipsync", "done"]
    assert [order.index(s) for s in states] == sorted(order.index(s) for s in states)
    final = seen[-1][1]
    assert final["video_url"] == f"/v1/requests/{rid}/video"
    assert final["progress"] == 1.0

    got = httpx.get(f"{base}/v1/requests/{rid}", headers=alice).json()
    assert {"voice_stage_s", "lipsync_stage_s"} <= set(got["timings"])
    assert got["queue_position"] is None

    video = httpx.get(f"{base}{final['video_url']}", headers=alice, timeout=60)
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert video.headers["accept-ranges"] == "bytes"
    data = video.content
    assert {b"ftyp", b"moov", b"mdat", b"avc1", b"mp4a"} <= box_types(data)
    path = tmp_path / "render.mp4"
    path.write_bytes(data)
    info = decode(path)
    assert info["vcodec"] == "h264" and info["acodec"] == "aac"
    assert info["frames"] >= 10 and info["samples"] > 0 and info["duration"] > 0.5

    # Range requests: what a browser sends to seek.
    size = len(data)
    part = httpx.get(f"{base}{final['video_url']}", headers={**alice, "Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{size}"
    assert part.content == data[100:1100]
    tail = httpx.get(f"{base}{final['video_url']}", headers={**alice, "Range": "bytes=-50"})
    assert (tail.status_code, tail.content) == (206, data[-50:])
    beyond = httpx.get(f"{base}{final['video_url']}", headers={**alice, "Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"

    # Metrics saw the render finish: its stage durations and its engines.
    text = wait_for_metric(
        base, 'jayavatar_renders_total{lipsync_engine="landmark",voice_engine="piper"}'
    )
    assert 'jayavatar_stage_seconds_count{kind="render",stage="lipsync_stage_s"} 1.0' in text
    assert 'jayavatar_requests_finished_total{kind="render",state="done"} 1.0' in text

    # The other user and the unauthenticated get nothing.
    assert (
        httpx.get(f"{base}{final['video_url']}", headers=headers(tokens["bob"])).status_code == 404
    )
    assert httpx.get(f"{base}{final['video_url']}").status_code == 401


@contextmanager
def frozen(stack: Stack, kind: str) -> Iterator[None]:
    """Hold a worker with SIGSTOP, so requests stay queued until the block ends."""
    stack.workers[kind].kill(signal.SIGSTOP)
    try:
        yield
    finally:
        stack.workers[kind].kill(signal.SIGCONT)


def test_cancel_and_retry(enrolled: tuple[str, dict[str, str]], stack: Stack) -> None:
    with frozen(stack, "voice"):
        cancel_and_retry(enrolled)


def cancel_and_retry(enrolled: tuple[str, dict[str, str]]) -> None:
    """Cancel a queued render, retry it, and let an admin cancel the retry."""
    base, tokens = enrolled
    alice = headers(tokens["alice"])
    rid = httpx.post(f"{base}/v1/renders", headers=alice, json={"text": TEXT}).json()["id"]
    r = httpx.post(f"{base}/v1/requests/{rid}/cancel", headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    again = httpx.post(f"{base}/v1/requests/{rid}/cancel", headers=alice)
    assert again.status_code == 422 and "already cancelled" in again.json()["detail"]
    no_video = httpx.get(f"{base}/v1/requests/{rid}/video", headers=alice)
    assert no_video.status_code == 409

    retried = httpx.post(f"{base}/v1/requests/{rid}/retry", headers=alice)
    assert retried.status_code == 202, retried.text
    new = retried.json()
    assert new["retry_of"] == rid and new["text"] == TEXT and new["id"] != rid
    # An admin may cancel anyone's request; bob may not even see it.
    assert (
        httpx.post(
            f"{base}/v1/requests/{new['id']}/cancel", headers=headers(tokens["bob"])
        ).status_code
        == 404
    )
    r = httpx.post(f"{base}/v1/requests/{new['id']}/cancel", headers=headers(tokens["root"]))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert r.json()["error"] == "cancelled by root"
    wait_for_metric(base, 'jayavatar_failures_total{kind="render",reason="cancelled"} 2.0')


def test_listing_pages_and_filters(enrolled: tuple[str, dict[str, str]], stack: Stack) -> None:
    base, tokens = enrolled
    alice = headers(tokens["alice"])
    with frozen(stack, "voice"):
        made = [
            httpx.post(f"{base}/v1/renders", headers=alice, json={"text": TEXT}).json()["id"]
            for _ in range(2)
        ]
        httpx.post(f"{base}/v1/requests/{made[0]}/cancel", headers=alice)
        listing(base, tokens, made)
        httpx.post(f"{base}/v1/requests/{made[1]}/cancel", headers=alice)


def listing(base: str, tokens: dict[str, str], made: list[str]) -> None:
    """Check paging and filters, with `made` = [cancelled render, queued render], newest last."""
    alice = headers(tokens["alice"])
    everything = httpx.get(f"{base}/v1/requests", headers=alice, params={"limit": 200}).json()
    ids = [r["id"] for r in everything["items"]]
    # Newest first, the two enrolments of the fixture at the end.
    assert ids[:2] == made[::-1] and len(set(ids)) == len(ids) >= 4
    created = [r["created_at"] for r in everything["items"]]
    assert created == sorted(created, reverse=True)
    assert {r["kind"] for r in everything["items"][-2:]} == {"voice_enroll", "avatar_enroll"}

    page = httpx.get(f"{base}/v1/requests", headers=alice, params={"limit": 2, "offset": 1}).json()
    assert [r["id"] for r in page["items"]] == ids[1:3]
    renders = httpx.get(f"{base}/v1/requests", headers=alice, params={"kind": "render"}).json()
    assert {r["kind"] for r in renders["items"]} == {"render"}
    assert set(made) <= {r["id"] for r in renders["items"]}
    queued = httpx.get(f"{base}/v1/requests", headers=alice, params={"state": "queued"}).json()
    assert [r["id"] for r in queued["items"]] == [made[1]]
    # Cancelled jobs stay in ARQ's queue until a worker skips them, so they count as ahead.
    assert queued["items"][0]["queue_position"] >= 1
    stopped = httpx.get(
        f"{base}/v1/requests", headers=alice, params=[("state", "cancelled"), ("state", "failed")]
    ).json()
    assert made[0] in {r["id"] for r in stopped["items"]}
    assert {r["state"] for r in stopped["items"]} <= {"cancelled", "failed"}

    admin_view = httpx.get(
        f"{base}/v1/admin/requests", headers=headers(tokens["root"]), params={"user": "alice"}
    ).json()
    assert [r["id"] for r in admin_view["items"]][:3] == ids[:3]
    bobs = httpx.get(f"{base}/v1/requests", headers=headers(tokens["bob"])).json()["items"]
    assert all(r["user"] == "bob" for r in bobs)


def test_sharing_follows_the_owners_consent(enrolled: tuple[str, dict[str, str]]) -> None:
    base, tokens = enrolled
    alice, bob = headers(tokens["alice"]), headers(tokens["bob"])
    body = {"text": TEXT, "voice": "alice/me", "avatar": "alice/face"}
    refused = httpx.post(f"{base}/v1/renders", headers=bob, json=body)
    assert refused.status_code == 404
    assert refused.json()["detail"] == "unknown voice 'alice/me', or not shared with you"
    guessed = httpx.post(f"{base}/v1/renders", headers=bob, json={**body, "voice": "alice/none"})
    assert (guessed.status_code, guessed.json()["detail"]) == (
        404,
        "unknown voice 'alice/none', or not shared with you",
    )
    assert httpx.get(f"{base}/v1/avatars/alice/face/poster.jpg", headers=bob).status_code == 404

    assert httpx.put(f"{base}/v1/avatars/face/shares/bob", headers=alice).status_code == 204
    listed = httpx.get(f"{base}/v1/avatars", headers=bob).json()
    assert [(a["ref"], a["shared_with"]) for a in listed] == [("alice/face", ["bob"])]
    poster = httpx.get(f"{base}/v1/avatars/alice/face/poster.jpg", headers=bob)
    assert poster.status_code == 200 and poster.content[:3] == b"\xff\xd8\xff"
    still = httpx.post(f"{base}/v1/renders", headers=bob, json=body)
    assert still.status_code == 404 and "voice" in still.json()["detail"]

    assert httpx.delete(f"{base}/v1/avatars/face/shares/bob", headers=alice).status_code == 204
    assert httpx.get(f"{base}/v1/avatars", headers=bob).json() == []


def test_delete_removes_an_asset(enrolled: tuple[str, dict[str, str]]) -> None:
    base, tokens = enrolled
    bob = headers(tokens["bob"])
    voice, _ = demo_inputs()
    r = httpx.put(f"{base}/v1/voices/tmp?filename=v.wav", headers=bob, content=voice.read_bytes())
    assert wait_until_final(base, tokens["bob"], r.json()["id"])["state"] == "done"
    assert [v["ref"] for v in httpx.get(f"{base}/v1/voices", headers=bob).json()] == ["bob/tmp"]
    assert httpx.delete(f"{base}/v1/voices/tmp", headers=bob).status_code == 204
    assert httpx.get(f"{base}/v1/voices", headers=bob).json() == []
    assert httpx.delete(f"{base}/v1/voices/tmp", headers=bob).status_code == 404


def test_ready_and_metrics_with_live_workers(enrolled: tuple[str, dict[str, str]]) -> None:
    base, _ = enrolled
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["ready"] is True
    queues = ready.json()["queues"]
    text = httpx.get(f"{base}/metrics").text
    for queue in queues:
        assert f'jayavatar_queue_worker_alive{{queue="{queue}"}} 1.0' in text
        assert f'jayavatar_queue_depth{{queue="{queue}"}}' in text


def test_admin_pause_refuses_new_renders(enrolled: tuple[str, dict[str, str]]) -> None:
    base, tokens = enrolled
    root, alice = headers(tokens["root"]), headers(tokens["alice"])
    assert httpx.post(f"{base}/v1/admin/pause", headers=root).status_code == 204
    try:
        r = httpx.post(f"{base}/v1/renders", headers=alice, json={"text": TEXT})
        assert r.status_code == 403 and "paused" in r.json()["detail"]
        assert httpx.get(f"{base}/v1/admin/stats", headers=root).json()["paused"] is True
    finally:
        assert httpx.post(f"{base}/v1/admin/resume", headers=root).status_code == 204
