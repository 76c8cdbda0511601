"""The pipeline through real Redis and real worker processes on the offline engines."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.assets import demo_inputs, face_clip
from tests.support.stack import Stack

pytestmark = pytest.mark.timeout(300)
LONG_TEXT = " ".join(["This sentence keeps the workers busy for a while."] * 6)


async def enroll(client: Any, kind: str, name: str, path: Path) -> Any:
    """Enroll an asset as the CLI user and wait for it."""
    submit = client.submit_voice_enroll if kind == "voice" else client.submit_avatar_enroll
    req = await submit("local", name, path)
    done = await client.wait(req.id, 180)
    assert done.state == "done", done.error
    return done


@pytest.fixture
async def assets(client: Any) -> None:
    """Enroll the demo voice and a short face clip avatar once per module."""
    voice, _photo = demo_inputs()
    if await client.accounts.get_asset("voice", "local", "demo") is None:
        await enroll(client, "voice", "demo", voice)
    if await client.accounts.get_asset("avatar", "local", "face") is None:
        await enroll(client, "avatar", "face", face_clip())


async def completions_for(client: Any, rid: str) -> list[str]:
    """Return the states announced on the completion stream for one request."""
    entries = await client.redis.xrange(f"{client.settings.key_prefix}:completions")
    return [f[b"state"].decode() for _mid, f in entries if f[b"rid"].decode() == rid]


async def wait_for(client: Any, rid: str, test: Any, timeout_s: float = 120) -> Any:
    """Poll a request until `test(record)` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        req = await client.get(rid)
        if test(req):
            return req
        await asyncio.sleep(0.1)
    raise AssertionError(f"request {rid} never got there; last state {req.state}")


async def test_render_end_to_end(client: Any, assets: None) -> None:
    req = await client.submit_render("local", "Hello there, this is a test.", "demo", "face")
    done = await client.wait(req.id, 180)
    assert done.state == "done", done.error
    out = client.output_path(done)
    head = out.read_bytes()[:64]
    assert b"ftyp" in head and out.stat().st_size > 10_000
    assert {"synthesize_s", "render_s", "voice_stage_s", "lipsync_stage_s"} <= set(done.timings)
    assert await completions_for(client, req.id) == ["done"]
    # The speech was an intermediate: nothing of it stays behind.
    assert not client.storage.exists(f"work/{req.id}")


async def test_worker_killed_mid_job_completes_once(
    stack: Stack, client: Any, assets: None
) -> None:
    req = await client.submit_render("local", LONG_TEXT, "demo", "face")
    await wait_for(client, req.id, lambda r: r.state == "lipsync" and r.running and r.progress > 0)
    stack.workers["lipsync"].kill(signal.SIGKILL)
    stack.start_worker("lipsync")
    done = await client.wait(req.id, 240)
    assert done.state == "done", done.error
    assert done.epoch == 2  # the reconciler retried it under a fresh job id
    assert await completions_for(client, req.id) == ["done"]
    assert client.storage.exists(done.output_key)


async def test_cancel_queued_request(stack: Stack, client: Any, assets: None) -> None:
    stack.workers["voice"].kill(signal.SIGKILL)
    try:
        req = await client.submit_render("local", "Nobody will hear this.", "demo", "face")
        cancelled = await client.cancel(req.id, "local")
        assert cancelled.state == "cancelled"
    finally:
        stack.start_worker("voice")
    await asyncio.sleep(2)  # the worker picks the stale job up and must leave it alone
    after = await client.get(req.id)
    assert after.state == "cancelled" and not after.output_key
    assert await completions_for(client, req.id) == ["cancelled"]
    assert not client.storage.exists(f"work/{req.id}")


async def test_cancel_running_request_stops_the_engine(
    stack: Stack, client: Any, assets: None
) -> None:
    req = await client.submit_render("local", LONG_TEXT, "demo", "face")
    await wait_for(client, req.id, lambda r: r.state == "lipsync" and r.running and r.progress > 0)
    await client.cancel(req.id, "local")
    log = stack.workers["lipsync"]
    deadline = time.monotonic() + 20
    while "abandoned" not in log.log() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert "abandoned" in log.log()
    assert await completions_for(client, req.id) == ["cancelled"]
    assert not client.storage.exists(f"renders/local/{req.id}.mp4")
    # The worker is still healthy and renders the next request.
    nxt = await client.submit_render("local", "Still here.", "demo", "face")
    assert (await client.wait(nxt.id, 180)).state == "done"


async def test_workers_survive_a_redis_restart(stack: Stack, assets: None) -> None:
    from jobs.client import JobClient

    stack.redis.kill(signal.SIGKILL)
    await asyncio.sleep(3)  # the workers' polls fail meanwhile and must keep retrying
    stack.redis.start()
    for kind, worker in stack.workers.items():
        assert worker.proc is not None and worker.proc.poll() is None, f"{kind} worker died"
    fresh = await JobClient.connect(stack.settings())  # type: ignore[arg-type]
    try:
        # The AOF kept the enrolled assets; a new request goes through both workers.
        req = await fresh.submit_render("local", "Back again after the outage.", "demo", "face")
        done = await fresh.wait(req.id, 180)
        assert done.state == "done", done.error
    finally:
        await fresh.close()
