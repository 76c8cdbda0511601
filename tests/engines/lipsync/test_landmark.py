"""The landmark lip-sync engine: the mouth follows the audio, nothing else changes, no jump cuts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import soundfile as sf

from engines.lipsync import facetrack, wav2lip_io
from engines.lipsync.alignment import align
from engines.lipsync.demo_assets import make_demo_avatar
from engines.lipsync.facetrack import FaceTrack
from engines.lipsync.landmark import LandmarkEngine, speech_cues
from engines.lipsync.mouth_warp import MouthPose, speak, warp_mask
from engines.media import video as media
from engines.quality import audio as quality_audio
from engines.quality import voice as quality_voice
from engines.quality.mouth import mouth_report
from jayavatar.settings import Settings

pytestmark = pytest.mark.env("lipsync")

FPS = 25
RATE = 22_050


def babble(seconds: float, seed: int) -> np.ndarray:
    """Speech-like audio: a voiced buzz with a vowel formant, cut into syllables and pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    env = np.zeros_like(t)
    pos = 0.1
    while pos < seconds - 0.4:
        dur = rng.uniform(0.12, 0.35)
        a, b = int(pos * RATE), int((pos + dur) * RATE)
        env[a:b] += rng.uniform(0.3, 1.0) * np.sin(np.linspace(0, np.pi, b - a)) ** 2
        pos += dur + rng.uniform(0.03, 0.25)
    f0 = 120 + 15 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(
        np.sin(k * phase) / k * (1 + 0.8 * np.exp(-((((k * 120) - 700) / 250) ** 2)))
        for k in range(1, 30)
    )
    y = 0.25 * env * voice / np.abs(voice).max() + rng.normal(0, 1e-4, len(t))
    return y.astype(np.float32)


def frame_loudness(y: np.ndarray, frames: int) -> np.ndarray:
    """RMS of the audio under each video frame."""
    hop = RATE / FPS
    return np.array(
        [np.sqrt(np.mean(y[int(i * hop) : int((i + 1) * hop)] ** 2)) for i in range(frames)]
    )


def best_lag_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 2) -> float:
    """Highest Pearson correlation of a and b over lags within +-max_lag frames."""
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        x = a[max(0, lag) : len(a) + min(0, lag)]
        y = b[max(0, -lag) : len(b) - max(0, lag)]
        best = max(best, float(np.corrcoef(x, y)[0, 1]))
    return best


@pytest.fixture(scope="module")
def avatar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo face at 256x256, prepared once for the module."""
    root = tmp_path_factory.mktemp("avatar")
    photo = make_demo_avatar(root / "face.png", side=256)
    LandmarkEngine(Settings(_env_file=None)).prepare(photo, root / "prepared")  # type: ignore[call-arg]
    return root / "prepared"


def render(
    avatar: Path, tmp: Path, y: np.ndarray, calls: list[tuple[float, str]] | None = None
) -> tuple[Path, dict[str, Any]]:
    """Render `y` onto the avatar; return (mp4 path, stats). Progress calls go to `calls`."""
    sf.write(tmp / "speech.wav", y, RATE)
    out = tmp / "out.mp4"
    seen = [] if calls is None else calls

    def progress(fraction: float, phase: str) -> None:
        seen.append((fraction, phase))

    engine = LandmarkEngine(Settings(_env_file=None))  # type: ignore[call-arg]
    stats = engine.render(avatar, tmp / "speech.wav", out, progress, {"comment": "jayavatar test"})
    return out, stats


def test_lip_aperture_follows_loudness(avatar: Path, tmp_path: Path) -> None:
    y = babble(4.0, seed=3)
    calls: list[tuple[float, str]] = []
    out, stats = render(avatar, tmp_path, y, calls)
    frames = list(media.iter_frames(out))
    assert len(frames) == stats["frames"] == 100 and stats["face_frames"] == 100
    with facetrack.FaceMesh(video=False) as mesh:
        found = [mesh.landmarks(f) for f in frames]
    assert all(lm is not None for lm in found)
    aperture = np.array([facetrack.lip_aperture(lm) for lm in found if lm is not None])
    loudness = frame_loudness(y, len(frames))
    assert best_lag_correlation(aperture, loudness) >= 0.6
    # The mouth really opens, not a flicker: the measured range is a good part of a lip gap.
    assert np.ptp(aperture) > 0.1
    # Progress: warp reports climb to the end, encode closes.
    fractions = [f for f, p in calls if p == "warp"]
    assert fractions == sorted(fractions) and calls[-1] == (1.0, "encode")
    assert set(stats["seconds"]) == {"audio", "decode", "warp", "encode"}


def test_output_is_h264_aac_of_equal_length_with_tags(avatar: Path, tmp_path: Path) -> None:
    y = babble(1.3, seed=4)
    out, stats = render(avatar, tmp_path, y)
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.name, a.codec_context.name) == ("h264", "aac")
        v_s, a_s = float(v.duration * v.time_base), float(a.duration * a.time_base)
        assert c.metadata["comment"] == "jayavatar test"
    assert abs(v_s - len(y) / RATE) <= 1 / FPS
    assert abs(a_s - v_s) <= 1 / FPS
    assert abs(stats["frames"] - len(y) / RATE * FPS) <= 0.5


def test_pixels_outside_the_mask_are_bit_identical(avatar: Path) -> None:
    track = FaceTrack.load(avatar / "track.npz")
    frames = media.iter_frames(avatar / "clip.mp4")
    for index, frame in zip(range(0, 40, 7), frames, strict=False):
        lm = track.landmarks[index]
        out = speak(frame, lm, MouthPose(open=1.0, jaw=1.25, round=0.5))
        mask = warp_mask(lm, track.width, track.height)
        alpha = np.zeros(frame.shape[:2], np.float32)
        alpha[mask.box.slices] = mask.alpha
        assert np.array_equal(out[alpha == 0], frame[alpha == 0])
        assert not np.array_equal(out[alpha > 0], frame[alpha > 0])


def test_closed_pose_leaves_the_frame_alone(avatar: Path) -> None:
    track = FaceTrack.load(avatar / "track.npz")
    frame = next(media.iter_frames(avatar / "clip.mp4"))
    out = speak(frame, track.landmarks[0], MouthPose(open=0.0, jaw=1.0, round=0.0))
    assert np.array_equal(out, frame)


def test_pressed_lips_meet_tighter_than_at_rest_without_a_gap(avatar: Path) -> None:
    """A negative opening presses the lips: the lip line moves in, nothing dark is painted."""
    track = FaceTrack.load(avatar / "track.npz")
    frame = next(media.iter_frames(avatar / "clip.mp4"))
    lm = track.landmarks[0]
    pressed = speak(frame, lm, MouthPose(open=-0.3, jaw=1.0, round=0.0))
    mask = warp_mask(lm, track.width, track.height)
    alpha = np.zeros(frame.shape[:2], np.float32)
    alpha[mask.box.slices] = mask.alpha
    assert np.array_equal(pressed[alpha == 0], frame[alpha == 0])
    assert not np.array_equal(pressed, frame)
    # Around the lips' meeting line no pixel gets darker than the darkest there was: lips
    # closing over each other, not a cavity painted in.
    x1, y1 = (lm[[61, 13]].min(axis=0)).astype(int)
    x2, y2 = (lm[[291, 14]].max(axis=0)).astype(int)
    before = frame[y1 - 3 : y2 + 4, x1 : x2 + 1].astype(int).sum(axis=-1)
    after = pressed[y1 - 3 : y2 + 4, x1 : x2 + 1].astype(int).sum(axis=-1)
    assert after.min() >= before.min() - 6


def copy_avatar(avatar: Path, dest: Path, present: np.ndarray | None = None) -> Path:
    """Copy a prepared avatar, optionally overriding which frames have a face."""
    dest.mkdir()
    for p in avatar.iterdir():
        (dest / p.name).write_bytes(p.read_bytes())
    if present is not None:
        track = FaceTrack.load(dest / "track.npz")
        track.present = present
        track.save(dest / "track.npz")
    return dest


def test_frames_without_a_face_pass_through_untouched(avatar: Path, tmp_path: Path) -> None:
    y = babble(1.0, seed=5)
    n = len(FaceTrack.load(avatar / "track.npz"))
    faceless = copy_avatar(avatar, tmp_path / "faceless", present=np.zeros(n, bool))
    out, stats = render(faceless, tmp_path, y)
    assert stats["face_frames"] == 0
    # The same frames (the clip's own 4:2:0 samples) through the same encoder settings give
    # the same stream, bit for bit.
    ref = tmp_path / "ref.mp4"
    audio = media.load_audio(tmp_path / "speech.wav", 48_000)
    source = wav2lip_io.iter_pingpong(faceless / "clip.mp4", n, stats["frames"], FPS)
    with media.VideoWriter(ref, 256, 256, FPS, audio=audio) as w:
        for _, frame in source:
            w.write_i420(frame)
    got = list(media.iter_frames(out))
    want = list(media.iter_frames(ref))
    assert len(got) == len(want) == stats["frames"]
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))


def test_audio_longer_than_the_clip_loops_back_and_forth(avatar: Path, tmp_path: Path) -> None:
    track = FaceTrack.load(avatar / "track.npz")
    short = copy_avatar(avatar, tmp_path / "short")
    # A 0.8 s clip for 2 s of speech; each frame carries a marker block (far from the mouth)
    # at a position that tells its index.
    first = next(media.iter_frames(short / "clip.mp4"))
    clip = []
    for k in range(20):
        frame = first.copy()
        frame[4:14, 6 + 12 * k : 16 + 12 * k] = 255
        clip.append(frame)
    with media.VideoWriter(short / "clip.mp4", 256, 256, FPS, crf=10) as w:
        for f in clip:
            w.write(f)
    lm = np.repeat(track.landmarks[:1], 20, axis=0)
    FaceTrack(FPS, 256, 256, np.ones(20, bool), np.repeat(track.boxes[:1], 20, 0), lm).save(
        short / "track.npz"
    )
    out, stats = render(short, tmp_path, babble(2.0, seed=6))
    frames = list(media.iter_frames(out))
    # Read each output frame's marker: the brightest 10-pixel run along the top band.
    band = [f[6:12, :, :].astype(np.float32).mean(axis=(0, 2)) for f in frames]
    matched = [
        int(np.argmax([b[6 + 12 * k : 16 + 12 * k].mean() for k in range(20)])) for b in band
    ]
    assert matched == [media.pingpong_index(i, 20) for i in range(stats["frames"])]


def test_speech_cues_open_for_vowels_and_stay_shut_in_silence() -> None:
    rate = 16_000
    t = np.arange(rate) / rate
    vowel = 0.3 * np.sign(np.sin(2 * np.pi * 130 * t)) * np.hanning(rate) ** 0.2
    silence = np.random.default_rng(0).normal(0, 1e-4, rate)
    y = np.concatenate([silence, vowel, silence]).astype(np.float32)
    poses = speech_cues(y, rate, FPS, 75)
    opening = np.array([p.open for p in poses])
    assert opening[:20].max() < 0.05 and opening[55:].max() < 0.05
    assert opening[30:45].min() > 0.6


def test_speech_cues_keep_the_mouth_shut_for_a_silent_track() -> None:
    hum = np.random.default_rng(2).normal(0, 3e-4, 32_000).astype(np.float32)
    hum[8000:12000] *= 5  # louder hum is still no speech
    assert max(p.open for p in speech_cues(hum, 16_000, FPS, 50)) < 0.02


def test_speech_cues_hiss_opens_less_and_oo_rounds_more() -> None:
    rate = 16_000
    rng = np.random.default_rng(1)
    t = np.arange(rate) / rate
    hiss = np.diff(rng.normal(0, 1, rate + 1), n=2)[:rate]  # high-passed noise: "sss"
    hiss *= 0.3 / np.sqrt(np.mean(hiss**2))
    aa = sum(
        np.sin(2 * np.pi * k * 120 * t) * np.exp(-(((k * 120 - 750) / 200) ** 2))
        for k in range(1, 40)
    )
    oo = sum(
        np.sin(2 * np.pi * k * 120 * t) * np.exp(-(((k * 120 - 300) / 120) ** 2))
        for k in range(1, 40)
    )
    aa, oo = (0.3 * x / np.sqrt(np.mean(x**2)) for x in (aa, oo))
    y = np.concatenate([aa, hiss, oo]).astype(np.float32)
    poses = speech_cues(y, rate, FPS, 75)
    mid = slice(8, 17)
    p_aa, p_ss, p_oo = (poses[k * 25 : (k + 1) * 25][mid] for k in range(3))

    def mean(poses: list[MouthPose], attr: str) -> float:
        return float(np.mean([getattr(p, attr) for p in poses]))

    assert mean(p_ss, "open") < 0.7 * mean(p_aa, "open")
    assert mean(p_oo, "round") > mean(p_aa, "round") + 0.3
    assert mean(p_aa, "jaw") > mean(p_oo, "jaw")


SCRIPT = "Maybe we could play some music, or move over to the blue room. See you, Eve!"


@pytest.fixture(scope="module")
def avatar512(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo face at its default 512x512: FaceMesh's jitter is too coarse at 256."""
    root = tmp_path_factory.mktemp("avatar512")
    photo = make_demo_avatar(root / "face.png")
    LandmarkEngine(Settings(_env_file=None)).prepare(photo, root / "prepared")  # type: ignore[call-arg]
    return root / "prepared"


def test_a_script_render_closes_rounds_and_keeps_time(avatar512: Path, tmp_path: Path) -> None:
    """Real Piper speech of a script: the rendered mouth, measured by FaceMesh, forms its words."""
    avatar = avatar512
    # Repeatable speech: the same input every run, so the measures below do not vary by chance.
    speech = quality_voice.stock_speech(SCRIPT, repeatable=True)
    sf.write(tmp_path / "speech.wav", speech, quality_voice.RATE)
    out = tmp_path / "out.mp4"
    engine = LandmarkEngine(Settings(_env_file=None))  # type: ignore[call-arg]
    stats = engine.render(avatar, tmp_path / "speech.wav", out, lambda f, p: None, {}, SCRIPT, "en")
    assert stats["cues"] == "phones" and len(stats["closures_s"]) == 8
    with facetrack.FaceMesh(video=True) as mesh:
        found = [mesh.landmarks(f) for f in media.iter_frames(out)]
    assert all(lm is not None for lm in found)
    aperture = np.array([facetrack.lip_aperture(lm) for lm in found if lm is not None])
    width = np.array([facetrack.mouth_width(lm) for lm in found if lm is not None])
    # Measured as the quality report does: the script aligned to the render's own audio.
    heard = media.load_audio(out, quality_audio.RATE)
    phones = align(heard, quality_audio.RATE, SCRIPT, "en")
    assert phones is not None
    mouth = mouth_report(aperture, width, phones, FPS)
    assert mouth["closures"] == 8 and mouth["closure_rate"] >= 0.9, mouth
    assert mouth["round_ratio"] <= 0.9
    assert mouth["rest_in_pauses"] >= 0.95
    loudness = quality_audio.loudness_db(heard, FPS, len(aperture))
    corr, lag = quality_audio.best_lag(aperture, loudness)
    assert lag == 0 and corr >= 0.6
