"""Stages: timeouts count the time a worker runs; a cancel mid-engine leaves no file behind."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engines.calls import EngineCall, Enroll, Render, Synthesize
from jayavatar.settings import Settings
from jobs import enroll_stages, stages
from jobs.client import JobClient
from jobs.context import StageContext
from storage.keys import speech_key
from tests.support.assets import wav


async def test_a_slow_call_times_out() -> None:
    with pytest.raises(TimeoutError):
        await stages._bounded(asyncio.sleep(30), 1.0)


async def test_a_quick_call_returns_its_result() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert await stages._bounded(answer(), 1.0) == 42


async def test_frozen_time_does_not_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # The clock jumps 100 s between two ticks, as after SIGSTOP/SIGCONT; the call then finishes.
    jumps = itertools.chain([0.0, 100.0], itertools.count(100.1, 0.1))
    monkeypatch.setattr(stages, "time", SimpleNamespace(monotonic=lambda: next(jumps)))
    monkeypatch.setattr(stages, "TICK_S", 0.01)
    ticks = 0

    async def slow_then_done() -> str:
        nonlocal ticks
        while ticks < 3:
            ticks += 1
            await asyncio.sleep(0.02)
        return "done"

    assert await stages._bounded(slow_then_done(), 5.0) == "done"


async def test_a_failing_call_raises_its_error() -> None:
    async def broken() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await stages._bounded(broken(), 5.0)


# A cancel that lands while the engine runs -------------------------------------------------


class CancellingHost:
    """An engine host whose call writes its output, but the user cancels before it returns."""

    def __init__(self, client: JobClient) -> None:
        self.client = client
        self.rid = ""

    async def call(self, call: EngineCall[Any, Any], *_hooks: Any) -> Any:
        if isinstance(call, Enroll):  # a voice
            call.out_dir.mkdir(parents=True)
            (call.out_dir / "voice.json").write_text("{}")
            await self.client.cancel(self.rid, "alice")
            return {"seconds": 6.0}
        if not isinstance(call, (Synthesize, Render)):
            return {"summary": "measured", "flags": []}  # e.g. the quality report
        out = call.out_wav if isinstance(call, Synthesize) else call.out_mp4
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"output")
        await self.client.cancel(self.rid, "alice")
        return 1.0 if isinstance(call, Synthesize) else {}


@pytest.fixture
async def staged(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[JobClient, Any]]:
    """A client with Alice's voice and avatar, and a stage context whose host cancels."""
    settings = Settings(
        redis_url=redis_url, data_dir=tmp_path, key_prefix="stages", quality_report=True
    )
    client = await JobClient.connect(settings)
    await client.redis.flushdb()
    for kind in ("voice", "avatar"):
        client.storage.put_bytes(f"{kind}s/alice/me/meta.json", b"{}")
        await client.accounts.register(kind, "alice", "me", {})
    host: Any = CancellingHost(client)
    context = StageContext(
        settings,
        client.redis,
        client.store,
        client.storage,
        client.accounts,
        host,
        30,
    )
    yield client, context
    await client.close()


async def test_speech_of_a_request_cancelled_mid_synthesis_is_dropped(
    staged: tuple[JobClient, Any],
) -> None:
    client, context = staged
    req = await client.submit_render("alice", "Hello.", "me", "me")
    context.host.rid = req.id
    payload = {"request_id": req.id, "epoch": req.epoch}
    assert await stages.voice_stage({"stage": context}, payload) == "abandoned"
    assert (await client.get(req.id)).state == "cancelled"
    assert client.storage.list("work") == []


async def test_render_of_a_request_cancelled_mid_render_is_dropped(
    staged: tuple[JobClient, Any],
) -> None:
    client, context = staged
    req = await client.submit_render("alice", "Hello.", "me", "me")
    await client.store.update(req.id, lambda r: r.changed(state="lipsync"))
    client.storage.put_bytes(speech_key(req.id), b"speech")
    context.host.rid = req.id
    await stages.lipsync_stage({"stage": context}, {"request_id": req.id, "epoch": req.epoch})
    assert (await client.get(req.id)).state == "cancelled"
    assert client.storage.list("renders") == [] and client.storage.list("work") == []


async def test_a_voice_cancelled_mid_enrollment_is_not_enrolled(
    staged: tuple[JobClient, Any], tmp_path: Path
) -> None:
    client, context = staged
    sample = tmp_path / "s.wav"
    wav(sample, 3.0)
    req = await client.submit_voice_enroll("alice", "late", sample)
    context.host.rid = req.id
    payload = {"request_id": req.id, "epoch": req.epoch}
    assert await enroll_stages.enroll_voice_stage({"stage": context}, payload) == "abandoned"
    assert (await client.get(req.id)).state == "cancelled"
    assert await client.accounts.get_asset("voice", "alice", "late") is None
    assert client.storage.list("voices/alice/late") == [] and client.storage.list("uploads") == []
