"""The wav2lip render with decoding and encoding in their own processes (CPU, random weights)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from engines.lipsync.wav2lip import Wav2LipEngine, decode_job
from engines.lipsync.wav2lip_pipeline import RenderPlan, render_stream
from engines.lipsync.wav2lip_procs import DecodeJob, FrameProcesses, MediaWorkers
from engines.media import video as media
from jayavatar.errors import EngineError
from jayavatar.settings import Settings
from tests.engines.lipsync.test_wav2lip import (
    SPEECH_S,
    save_random_checkpoint,
    write_clip,
    write_speech,
)

pytestmark = pytest.mark.env("lipsync")

SLOTS = 40  # smaller than the clip, so slots are reused within a render


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Scratch directory with random weights, the test clip and speech."""
    root = tmp_path_factory.mktemp("wav2lip_procs")
    save_random_checkpoint(root / "models")
    write_clip(root / "face.mp4")
    write_speech(root / "speech.wav", SPEECH_S)
    return root


@pytest.fixture(scope="module")
def settings(work: Path) -> Settings:
    """CPU settings pointing at the random weights."""
    return Settings(models_dir=work / "models", data_dir=work / "data", device="cpu")


@pytest.fixture(scope="module")
def avatar(settings: Settings, work: Path) -> Path:
    """The prepared avatar of the test clip."""
    out = work / "avatar"
    Wav2LipEngine(settings).prepare(work / "face.mp4", out)
    return out


def decode(path: Path) -> list[NDArray[np.uint8]]:
    """Every frame of an MP4 as I420 arrays."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]


def job_for(plan: RenderPlan, clip: Path | None = None) -> DecodeJob:
    """The decoder's share of a plan."""
    return decode_job(plan, clip)


def writer_options(plan: RenderPlan, out: Path, **extra: Any) -> dict[str, Any]:
    """Encoder options as the engine passes them."""
    width, height = plan.size
    return {"path": out, "width": width, "height": height, "fps": round(plan.fps), **extra}


def gone(pid: int) -> bool:
    """Whether the process has exited (a zombie waiting for an orphan reaper counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_until(check: Any, seconds: float = 15.0) -> bool:
    """Poll `check()` until it holds or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


def test_split_render_writes_the_same_video_as_the_in_process_render(
    settings: Settings, avatar: Path, work: Path
) -> None:
    outs = {}
    for split, encoders in ((False, 1), (True, 2)):
        engine = Wav2LipEngine(settings, batch=8, workers=2, split=split, encoders=encoders)
        outs[split] = work / f"split-{split}.mp4"
        stats = engine.render(avatar, work / "speech.wav", outs[split], lambda f, _: None, {})
        assert stats["split"] is split
        assert {"decode", "generate", "composite", "encode"} <= set(stats["stage_seconds"])
        # Every phase of the render was marked, in the order a render goes through them.
        phases = stats["phases_s"]
        order = ["loaded", "planned", "opened", "decoded", "generated", "composited"]
        order += ["composited_all", "flushing", "muxed", "done"]
        assert [phases[p] for p in order] == sorted(phases[p] for p in order)
        assert phases["done"] <= stats["seconds"]
        engine.close()
    inline, split_frames = decode(outs[False]), decode(outs[True])
    assert len(inline) == len(split_frames) == 65
    for i, (a, b) in enumerate(zip(inline, split_frames, strict=True)):
        # Same frames, same encoder settings, cut into runs differently: coding noise only.
        mse = np.mean((a.astype(np.float64) - b) ** 2)
        psnr = 10 * np.log10(255**2 / max(mse, 1e-9))
        assert psnr > 40, f"frame {i}: the two renders differ (PSNR {psnr:.1f} dB)"
    # Two encoders took a 50-frame run each: one stream, decode times rising, an IDR
    # frame at each run's start.
    with av.open(str(outs[True])) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        keys = {round(float(p.pts * p.time_base) * 25) for p in packets if p.is_keyframe}
        dts = [p.dts for p in packets]
    assert dts == sorted(dts) and len(set(dts)) == len(dts) == 65
    assert {0, 50} <= keys
    audio = media.load_audio(outs[True], 16000)
    assert abs(len(audio) / 16000 - 65 / 25) < 0.05
    assert not list(work.glob("*.tmp.mp4"))


def test_a_failing_generator_stops_both_processes_and_frees_everything(
    settings: Settings, avatar: Path, work: Path
) -> None:
    engine = Wav2LipEngine(settings, batch=8, workers=2)
    plan, _, _ = engine.plan(avatar, work / "speech.wav")
    calls = []

    def failing(crops: NDArray[np.uint8], windows: torch.Tensor) -> NDArray[np.uint8]:
        calls.append(len(crops))
        if len(calls) == 3:
            raise RuntimeError("generator exploded")
        return crops

    out = work / "failing.tmp.mp4"
    workers = MediaWorkers(2)
    workers.start()
    pids = workers.pids
    procs = FrameProcesses(job_for(plan), writer_options(plan, out), SLOTS, workers)
    with procs, pytest.raises(EngineError, match="generator exploded"):
        render_stream(plan, failing, procs, lambda n: None)
    assert len(calls) == 3
    assert all(gone(pid) for pid in pids)  # killed and reaped at once
    assert not out.exists()
    # The next render starts fresh children and reuses the ring.
    ring = Path("/dev/shm") / procs.ring.name
    again = work / "after-failure.mp4"
    with FrameProcesses(job_for(plan), writer_options(plan, again), SLOTS, workers) as procs:
        render_stream(plan, lambda crops, w: crops, procs, lambda n: None)
    assert len(decode(again)) == plan.n_out
    assert set(workers.pids).isdisjoint(pids)
    assert ring.exists()
    workers.close()
    assert not ring.exists()


def test_an_unreadable_clip_fails_with_the_decoders_reason(
    settings: Settings, avatar: Path, work: Path
) -> None:
    engine = Wav2LipEngine(settings, batch=8, workers=2)
    plan, _, _ = engine.plan(avatar, work / "speech.wav")
    bad = work / "not-a-video.mp4"
    bad.write_bytes(b"this is not an mp4" * 100)
    out = work / "unreadable.tmp.mp4"
    workers = MediaWorkers(2)
    procs = FrameProcesses(job_for(plan, bad), writer_options(plan, out), SLOTS, workers)
    pids = workers.pids
    with procs, pytest.raises(EngineError, match=r"wav2lip decoder failed: .*not a video"):
        render_stream(plan, engine.load(), procs, lambda n: None)
    assert all(gone(pid) for pid in pids)
    assert not out.exists()
    workers.close()


def test_an_encoder_that_cannot_open_fails_with_its_reason(
    settings: Settings, avatar: Path, work: Path
) -> None:
    engine = Wav2LipEngine(settings, batch=8, workers=2)
    plan, _, _ = engine.plan(avatar, work / "speech.wav")
    out = work / "bad-encoder.tmp.mp4"
    options = writer_options(plan, out, preset="no-such-preset")
    workers = MediaWorkers(2)
    procs = FrameProcesses(job_for(plan), options, SLOTS, workers)
    pids = workers.pids
    with (
        procs,
        pytest.raises(EngineError, match=r"wav2lip muxer failed: .*(preset|encoder)"),
    ):
        render_stream(plan, engine.load(), procs, lambda n: None)
    assert all(gone(pid) for pid in pids)
    assert not out.exists()
    workers.close()


KILLED_RENDER = """
import json, sys, time
from pathlib import Path
from engines.lipsync.wav2lip import Wav2LipEngine, decode_job
from engines.lipsync.wav2lip_pipeline import render_stream
from engines.lipsync.wav2lip_procs import FrameProcesses, MediaWorkers
from jayavatar.settings import Settings
from tests.engines.lipsync.test_wav2lip_procs import SLOTS, job_for, writer_options

work = Path(sys.argv[1])
settings = Settings(models_dir=work / "models", data_dir=work / "data", device="cpu")
engine = Wav2LipEngine(settings, batch=8, workers=2)
plan, _, _ = engine.plan(work / "avatar", work / "speech.wav")

def slow(crops, windows):
    time.sleep(0.5)
    return crops

workers = MediaWorkers(2)
out = work / "killed.tmp.mp4"
with FrameProcesses(job_for(plan), writer_options(plan, out), SLOTS, workers) as p:
    print(json.dumps({"pids": workers.pids, "ring": p.ring.name}), flush=True)
    render_stream(plan, slow, p, lambda n: None)
"""


def test_killing_the_render_process_ends_its_children_and_frees_the_ring(
    settings: Settings, avatar: Path, work: Path
) -> None:
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RENDER, str(work)],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    started = json.loads(proc.stdout.readline())
    time.sleep(1.0)  # mid-render: the slow generator takes 0.5 s a batch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert all(wait_until(lambda p=pid: gone(p)) for pid in started["pids"])
    ring = Path("/dev/shm") / started["ring"]
    assert wait_until(lambda: not ring.exists())
    assert wait_until(lambda: not (work / "killed.tmp.mp4").exists())


def test_an_encoder_killed_mid_render_fails_the_render_with_a_clear_error(
    settings: Settings, avatar: Path, work: Path
) -> None:
    engine = Wav2LipEngine(settings, batch=8, workers=2)
    plan, _, _ = engine.plan(avatar, work / "speech.wav")
    workers = MediaWorkers(2)
    out = work / "encoder-killed.tmp.mp4"
    procs = FrameProcesses(job_for(plan), writer_options(plan, out), SLOTS, workers)
    encoder = workers.pids[1]  # decoder, encoder 0, encoder 1, muxer

    def slow(crops: NDArray[np.uint8], windows: torch.Tensor) -> NDArray[np.uint8]:
        if procs.encoded == 0 and not gone(encoder):
            os.kill(encoder, signal.SIGKILL)
        time.sleep(0.2)
        return crops

    with procs, pytest.raises(EngineError, match="wav2lip encoder process died"):
        render_stream(plan, slow, procs, lambda n: None)
    assert not out.exists()
    assert workers.pids == []  # all replaced on the next render
    workers.close()
