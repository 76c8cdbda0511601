"""The wav2lip engine end to end on CPU: a real face clip, random weights in the official format.

Checks the prepared crops, the MP4 (size, length, audio), the untouched-outside-the-mask
property before encoding, no-face pass-through, A/V sync and memory that does not grow with
the length of the audio.
"""

from __future__ import annotations

import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from numpy.typing import NDArray

from engines.lipsync import wav2lip_io
from engines.lipsync.avatar_prep import photo_motion
from engines.lipsync.demo_assets import astronaut_portrait
from engines.lipsync.facetrack import FaceTrack
from engines.lipsync.wav2lip import PADS, Wav2LipEngine, split_encoders, usable_cores
from engines.lipsync.wav2lip_blend import blend_mask
from engines.lipsync.wav2lip_gpu_blend import TorchCompositor
from engines.lipsync.wav2lip_model import Wav2Lip
from engines.lipsync.wav2lip_pipeline import render_stream
from engines.media import video as media
from jayavatar.errors import ModelMissing
from jayavatar.settings import Settings

pytestmark = pytest.mark.env("lipsync")

FPS = 25
SIDE = 256
NO_FACE = range(30, 40)  # clip frames showing only background
BURST = (1.0, 1.6)  # seconds of loud speech-like sound; silence elsewhere
SPEECH_S = 2.6  # longer than the 2 s clip, so the render loops back


def write_clip(path: Path) -> Path:
    """A 2 s real-face clip (the demo portrait, gently moving) with ten frames of no face."""
    photo = astronaut_portrait(SIDE)
    empty = np.full_like(photo, 180)
    with media.VideoWriter(path, SIDE, SIDE, FPS, crf=18, preset="veryfast") as writer:
        for i, frame in enumerate(photo_motion(photo, FPS, 2 * FPS)):
            writer.write(empty if i in NO_FACE else frame)
    return path


def write_speech(path: Path, seconds: float) -> Path:
    """Silence with a harmonic burst inside BURST (repeating every 5 s for long files)."""
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t) for f in (180, 360, 720, 1500)) / 4
    inside = (t % 5.0 >= BURST[0]) & (t % 5.0 < BURST[1])
    sf.write(path, (0.5 * tone * inside).astype(np.float32), rate, subtype="FLOAT")
    return path


def save_random_checkpoint(models_dir: Path) -> None:
    """Random generator weights, saved the way the official training script does."""
    torch.manual_seed(0)
    state = {f"module.{k}": v for k, v in Wav2Lip().state_dict().items()}
    (models_dir / "wav2lip").mkdir(parents=True)
    torch.save({"state_dict": state, "global_step": 0}, models_dir / "wav2lip" / "wav2lip_gan.pth")


class Recorder:
    """A frame sink that keeps every frame, standing in for the encoder."""

    def __init__(self) -> None:
        self.frames: list[NDArray[np.uint8]] = []

    def write(self, frame: NDArray[np.uint8]) -> None:
        """Keep a copy of the frame."""
        self.frames.append(frame.copy())


class StripeProbe:
    """Stands in for the network: striped mouth when the mel window is loud, flat when silent."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, crops: NDArray[np.uint8], windows: torch.Tensor) -> NDArray[np.uint8]:
        """Return one crop per input; striped where the window holds sound."""
        self.batches.append(len(crops))
        out = np.full_like(crops, 128)
        loud = windows.amax(dim=(1, 2, 3)).cpu().numpy() > 0.0
        out[loud, 48::8] = 255
        out[loud, 52::8] = 0
        return out


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's scratch directory with weights, clip and audio."""
    root = tmp_path_factory.mktemp("wav2lip")
    save_random_checkpoint(root / "models")
    write_clip(root / "face.mp4")
    write_speech(root / "speech.wav", SPEECH_S)
    return root


@pytest.fixture(scope="module")
def settings(work: Path) -> Settings:
    """CPU settings pointing at the random weights."""
    return Settings(models_dir=work / "models", data_dir=work / "data", device="cpu")


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Wav2LipEngine:
    """The engine with a small batch, so a render crosses several batches."""
    return Wav2LipEngine(settings, batch=8, workers=2)


@pytest.fixture(scope="module")
def avatar(engine: Wav2LipEngine, work: Path) -> Path:
    """The prepared avatar of the test clip."""
    out = work / "avatar"
    engine.prepare(work / "face.mp4", out)
    return out


@pytest.fixture(scope="module")
def source_frames(avatar: Path) -> list[NDArray[np.uint8]]:
    """The prepared clip's frames as decoded I420 arrays, straight from PyAV."""
    with av.open(str(avatar / "clip.mp4")) as container:
        return [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]


def test_engine_sizes_itself_to_the_cores_it_may_use(settings: Settings) -> None:
    """Pinned to one core (as a worker sharing a host is), the engine plans for one core."""
    every = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(every)})
        assert usable_cores() == 1 and split_encoders() == 1
        assert Wav2LipEngine(settings).workers == 1
    finally:
        os.sched_setaffinity(0, every)
    assert usable_cores() == len(every)


def test_prepare_stores_reference_crops(avatar: Path) -> None:
    track = FaceTrack.load(avatar / "track.npz")
    with np.load(avatar / "wav2lip.npz") as data:
        boxes, source = data["boxes"], str(data["box_source"])
    assert source == "facemesh"
    assert not track.present[list(NO_FACE)].any() and track.present[:25].all()
    assert (boxes[~track.present] == 0).all()
    top, bottom, left, right = PADS
    want = track.boxes[track.present] + np.array([-left, -top, right, bottom])
    want[:, 3] = want[:, 3].clip(max=SIDE)
    np.testing.assert_array_equal(boxes[track.present], want)


def test_render_writes_an_mp4_as_long_as_the_audio(
    engine: Wav2LipEngine, avatar: Path, work: Path
) -> None:
    out = work / "out.mp4"
    reports: list[float] = []
    stats = engine.render(avatar, work / "speech.wav", out, lambda f, _: reports.append(f), {})
    info = media.probe(out)
    expected = media.frames_for_audio(int(SPEECH_S * 16000), 16000, FPS)
    assert (info.width, info.height, info.fps) == (SIDE, SIDE, FPS)
    assert info.frames == stats["frames"] == expected == 65
    assert info.has_audio and info.audio_codec == "aac"
    audio = media.load_audio(out, 16000)
    assert abs(len(audio) / 16000 - expected / FPS) < 0.05
    # 65 output frames play the 50-frame clip, then back from frame 48 to 34: frames 30-39
    # and 39-34 show no face.
    assert stats["face_frames"] == 65 - 16
    assert reports[-1] == 1.0 and reports == sorted(reports)
    assert not list(work.glob("*.tmp.mp4"))


def test_the_x264_preset_comes_from_settings(settings: Settings, avatar: Path, work: Path) -> None:
    assert Wav2LipEngine(settings).preset == "veryfast"
    fast = settings.model_copy(update={"wav2lip_preset": "ultrafast"})
    out = work / "ultrafast.mp4"
    Wav2LipEngine(fast, batch=8, workers=2).render(
        avatar, work / "speech.wav", out, lambda f, _: None, {}
    )
    # x264 writes its settings into the stream; ultrafast is the preset without CABAC.
    assert b"cabac=0" in out.read_bytes()


@pytest.mark.parametrize("blend", ["numpy", "torch"])
def test_outside_the_mask_frames_are_the_source_bit_for_bit(
    engine: Wav2LipEngine,
    avatar: Path,
    work: Path,
    source_frames: list[NDArray[np.uint8]],
    blend: str,
) -> None:
    plan, _, _ = engine.plan(avatar, work / "speech.wav")
    # The torch path runs on the CPU here, as the same code runs on CUDA.
    plan.compositor = TorchCompositor(torch.device("cpu"), plan.size) if blend == "torch" else None
    sink = Recorder()
    render_stream(plan, engine.load(), sink, lambda n: None)
    assert len(sink.frames) == plan.n_out
    changed = passed = 0
    for i, frame in enumerate(sink.frames):
        index = media.pingpong_index(i, plan.n_clip)
        source = source_frames[index]
        if not plan.present[index]:
            assert np.array_equal(frame, source), f"no-face frame {i} was altered"
            passed += 1
            continue
        # The frames are I420: luma may change where the mask is, chroma in the 2×2 blocks
        # the mask touches; every other byte must be the decoded source.
        mask = blend_mask((SIDE, SIDE), plan.boxes[index], plan.landmarks[index])
        luma = np.zeros((SIDE, SIDE), bool)
        luma[mask.box.slices] = mask.alpha > 0
        chroma = luma.reshape(SIDE // 2, 2, SIDE // 2, 2).any(axis=(1, 3))
        inside = np.concatenate([luma.reshape(-1), chroma.reshape(-1), chroma.reshape(-1)])
        flat, src = frame.reshape(-1), source.reshape(-1)
        assert np.array_equal(flat[~inside], src[~inside]), f"frame {i} changed outside"
        changed += int(np.any(flat[inside] != src[inside]))
    assert passed == 16
    assert changed >= 45  # the generated mouth really lands inside the mask


def test_the_mouth_moves_with_the_muxed_audio(settings: Settings, avatar: Path, work: Path) -> None:
    probe = StripeProbe()
    # Chunks of 4 gathered into batches of 16: ordering must survive the regrouping.
    engine = Wav2LipEngine(settings, batch=16, chunk=4, workers=2, generator=probe)
    out = work / "sync.mp4"
    engine.render(avatar, work / "speech.wav", out, lambda f, p: None, {})
    assert probe.batches[0] == 4 and max(probe.batches) <= 16 and 16 in probe.batches
    plan, _, _ = engine.plan(avatar, work / "speech.wav")
    frames = [f.to_ndarray(format="gray") for f in av.open(str(out)).decode(video=0)]
    seen, expected = [], []
    mel = plan.mel.cpu().numpy()
    for i, frame in enumerate(frames):
        index = media.pingpong_index(i, plan.n_clip)
        if not plan.present[index]:
            continue
        mask = blend_mask(frame.shape, plan.boxes[index], plan.landmarks[index])
        core = frame[mask.box.slices][mask.alpha >= 0.99].astype(np.float64)
        seen.append(core.std() > 20)
        start = min(int(i * 80 / FPS), mel.shape[1] - 16)  # the reference's window rule
        expected.append(mel[:, start : start + 16].max() > 0.0)
    assert seen == expected
    # The striped frames sit where the muxed audio is loud (windows reach 0.2 s ahead).
    audio = media.load_audio(out, 16000)
    onset = np.flatnonzero(np.abs(audio) > 0.05)[0] / 16000
    first = next(i for i, f in enumerate(seen) if f) / FPS
    assert onset - 0.2 - 1 / FPS <= first <= onset + 1 / FPS
    assert abs(onset - BURST[0]) < 0.03


def test_missing_weights_name_the_file_and_the_fix(work: Path, avatar: Path) -> None:
    bare = Settings(models_dir=work / "no-models", device="cpu")
    engine = Wav2LipEngine(bare)
    with pytest.raises(
        ModelMissing, match=r"wav2lip_gan\.pth.*jayavatar models import wav2lip_gan"
    ):
        engine.render(avatar, work / "speech.wav", work / "never.mp4", lambda f, p: None, {})
    assert not (work / "never.mp4").exists()


def peak_live_frames(
    engine: Wav2LipEngine, avatar: Path, audio: Path, monkeypatch: pytest.MonkeyPatch
) -> int:
    """Most decoded frames alive at once during a streamed render of `audio`."""
    live: dict[int, weakref.ref[NDArray[np.uint8]]] = {}
    peak = 0
    original = wav2lip_io.iter_pingpong

    def tracked(*args: Any, **kwargs: Any) -> Iterator[tuple[int, NDArray[np.uint8]]]:
        for index, frame in original(*args, **kwargs):
            key = id(frame)
            live[key] = weakref.ref(frame, lambda _, key=key: live.pop(key, None))
            yield index, frame

    class Sink:
        def write(self, frame: NDArray[np.uint8]) -> None:
            """Note how many frames are alive, then drop this one as an encoder would."""
            nonlocal peak
            peak = max(peak, len(live))

    monkeypatch.setattr(wav2lip_io, "iter_pingpong", tracked)
    plan, _, _ = engine.plan(avatar, audio)
    render_stream(plan, StripeProbe(), Sink(), lambda n: None)
    return peak


def test_frames_in_flight_do_not_grow_with_length(
    settings: Settings, avatar: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Wav2LipEngine(settings, batch=8, workers=2, generator=StripeProbe())
    short = peak_live_frames(engine, avatar, write_speech(work / "s4.wav", 4.0), monkeypatch)
    long = peak_live_frames(engine, avatar, write_speech(work / "s24.wav", 24.0), monkeypatch)
    # Chunks of 8: one in each of the 4 stages and up to 5 queued (2 + 1 + 2), plus the
    # second of frames the looping reader reverses at a time. A constant, where holding
    # every frame would mean 600 here.
    bound = (4 + 5) * 8 + 25
    assert 8 <= short <= bound
    assert long <= bound


RSS_SCRIPT = """
import resource, sys
from pathlib import Path
from jayavatar.settings import Settings
from engines.lipsync.wav2lip import Wav2LipEngine
root = Path(sys.argv[1])
settings = Settings(models_dir=root / "models", device="cpu")
engine = Wav2LipEngine(settings)
engine.render(root / "avatar", Path(sys.argv[2]), root / "rss.mp4", lambda f, p: None, {})
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_peak_rss_of_a_60s_render_is_within_20_percent_of_a_5s_render(
    avatar: Path, work: Path
) -> None:
    peaks = []
    for seconds in (5.0, 60.0):
        audio = write_speech(work / f"rss{seconds:.0f}.wav", seconds)
        result = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, str(work), str(audio)],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks.append(int(result.stdout.split()[-1]))
    assert peaks[1] <= 1.2 * peaks[0], peaks
