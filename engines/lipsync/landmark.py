"""The offline lip-sync engine: warps the avatar's own mouth and jaw open and shut with the audio.

No model weights. Per output frame the audio gives a mouth pose (how far open, how much jaw,
how rounded); `engines.lipsync.mouth_warp` then moves the lower lip and chin along a
smooth field built on the clip frame's FaceMesh landmarks and paints the opened gap as a mouth
interior. Only the feathered lower-face mask is touched (and, for photo avatars, the eyes when
they blink: `engines.lipsync.idle`): every other pixel stays bit-identical to the clip.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter1d

from engines.base import ProgressFn
from engines.lipsync import alignment
from engines.lipsync.alignment import Phone, align
from engines.lipsync.avatar_prep import prepare_avatar
from engines.lipsync.facetrack import FaceTrack
from engines.lipsync.idle import blink_amounts, blink_i420
from engines.lipsync.mouth_warp import MouthPose, speak_i420
from engines.lipsync.visemes import closure_times, viseme_poses
from engines.lipsync.wav2lip_io import I420Writer, iter_pingpong
from engines.media.video import frames_for_audio, load_audio

if TYPE_CHECKING:
    from jayavatar.settings import Settings

AUDIO_RATE = 48_000
#: Loudness range (dB under the loud parts) over which the mouth goes from shut to open.
RANGE_DB = 26.0
OPEN_CURVE = 1.6
#: The same curve under visemes, which already keep consonants small.
VISEME_CURVE = 1.0
#: Mean-square level (dBFS) at or below which there is no speech at all, whatever the mix.
SILENCE_DB = -50.0


def speech_cues(
    audio: npt.NDArray[np.floating[Any]], rate: int, fps: int, frames: int
) -> list[MouthPose]:
    """Turn audio alone into one mouth pose per video frame (the fallback without phones).

    Loudness drives the opening; spectral shape (see `speech_features`) picks the vowel class.
    """
    return _poses(speech_features(audio, rate, fps, frames))


def speech_features(
    audio: npt.NDArray[np.floating[Any]], rate: int, fps: int, frames: int
) -> npt.NDArray[np.float64]:
    """Per-frame features: level (dB), F1 ratio, spectral centroid, hiss share, low share.

    Loudness (dB, relative to the clip's loud parts) drives the opening. Spectral shape
    refines it: energy high in the F1 region means an open vowel (more jaw), a low centroid of
    voiced sound means a rounded "oo", and hiss above 3 kHz means a fricative, said with the
    teeth nearly together. Windows are centred on each frame and smoothing is zero-phase, so
    the mouth is neither early nor late.
    """
    hop = rate / fps
    win = int(2 * hop)
    window = np.hanning(win).astype(np.float32)
    padded = np.pad(audio.astype(np.float32), (win, win))
    freqs = np.fft.rfftfreq(win, 1 / rate)
    bands = {
        "low": (freqs >= 80) & (freqs < 300),
        "f1": (freqs >= 450) & (freqs < 1100),
        "voice": (freqs >= 150) & (freqs < 1100),
        "mid": (freqs >= 150) & (freqs < 3000),
        "hiss": (freqs >= 3000) & (freqs < 8000),
    }
    feats = np.zeros((frames, 5), np.float64)
    for i in range(frames):
        start = round((i + 0.5) * hop) + win - win // 2  # window centred on the frame
        seg = padded[start : start + win]
        power = np.abs(np.fft.rfft(seg * window)) ** 2
        total = float(power.sum()) + 1e-12
        mid = power[bands["mid"]]
        feats[i] = (
            10 * np.log10(float(np.mean(seg**2)) + 1e-10),
            power[bands["f1"]].sum() / (power[bands["voice"]].sum() + 1e-12),
            float((freqs[bands["mid"]] * mid).sum() / (mid.sum() + 1e-12)),
            power[bands["hiss"]].sum() / total,
            power[bands["low"]].sum() / total,
        )
    return feats


def loudness_opening(
    level: npt.NDArray[np.float64], curve: float = OPEN_CURVE
) -> npt.NDArray[np.float64]:
    """Per-frame opening in [0, 1] from loudness (dBFS per frame) alone."""
    loud = np.percentile(level, 95)
    # RANGE_DB below the loud parts is a closed mouth; the loud parts are fully open. The
    # power curve keeps soft sounds small, as lips barely part for them.
    opening = np.clip((level - (loud - RANGE_DB)) / RANGE_DB, 0.0, 1.0) ** curve
    # Relative levels alone would make the mouth flap at the hum of a silent track.
    opening = opening * np.clip((level - SILENCE_DB) / 10.0, 0.0, 1.0)
    return opening


def _poses(feats: npt.NDArray[np.float64]) -> list[MouthPose]:
    """Map per-frame features (dB, F1 ratio, centroid, hiss, low) to smoothed poses."""
    level, f1_ratio, centroid, hiss, low = feats.T
    opening = loudness_opening(level)
    voiced = np.clip((low - 0.05) / 0.25, 0.0, 1.0) * (opening > 0.05)
    fricative = np.clip((hiss - 0.25) / 0.35, 0.0, 1.0)
    opening = opening * (1.0 - 0.55 * fricative)
    jaw = 0.75 + 0.5 * np.clip((f1_ratio - 0.25) / 0.45, 0.0, 1.0)
    rounded = np.clip((1000.0 - centroid) / 450.0, 0.0, 1.0) * voiced
    opening = gaussian_filter1d(opening, 0.8, mode="nearest")
    jaw = gaussian_filter1d(jaw, 1.5, mode="nearest")
    rounded = gaussian_filter1d(rounded, 1.5, mode="nearest")
    return [
        MouthPose(float(o), float(j), float(r))
        for o, j, r in zip(opening, jaw, rounded, strict=True)
    ]


def mouth_poses(
    samples: npt.NDArray[np.floating[Any]], fps: int, frames: int, text: str, language: str
) -> tuple[list[MouthPose], list[Phone] | None]:
    """Poses per frame, from the aligned script when it aligns, else from the audio alone."""
    feats = speech_features(samples, AUDIO_RATE, fps, frames)
    phones = align(samples, AUDIO_RATE, text, language) if text else None
    if phones is None:
        return _poses(feats), None
    return viseme_poses(phones, loudness_opening(feats[:, 0], VISEME_CURVE), fps), phones


class LandmarkEngine:
    """Lip-sync by landmark-driven warping of the avatar's own face (CPU, no weights)."""

    name = "landmark"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        alignment.warm_up()  # a worker's first render should not wait for the aligner's imports

    def prepare(self, media: Path, out_dir: Path) -> dict[str, Any]:
        """Validate the avatar and write its clip, face track, metadata and poster."""
        return prepare_avatar(media, out_dir, self.settings)

    def render(
        self,
        avatar_dir: Path,
        audio: Path,
        out_mp4: Path,
        progress: ProgressFn,
        metadata: dict[str, str],
        text: str = "",
        language: str = "",
    ) -> dict[str, Any]:
        """Stream clip frames through the mouth warp into an H.264/AAC MP4; return timings.

        With the script (`text`, `language`) the mouth forms visemes from phone timings;
        without it, or where it does not align, the mouth follows the audio alone.
        """
        times = dict.fromkeys(("audio", "decode", "warp", "encode"), 0.0)
        t0 = time.perf_counter()
        progress(0.0, "audio")
        cues = _load_cues(avatar_dir, audio, text, language)
        times["audio"] = time.perf_counter() - t0
        size = (cues.track.width, cues.track.height)
        # Frames stay in the clip's own 4:2:0 layout from decoder to encoder; only the mouth
        # is turned into RGB and back, so the rest of the frame loses nothing to conversions.
        writer = I420Writer(out_mp4, *size, cues.fps, audio=cues.samples, metadata=metadata)
        with writer:
            face_frames = _warp_frames(avatar_dir / "clip.mp4", cues, writer, times, progress)
            t = time.perf_counter()
        times["encode"] += time.perf_counter() - t
        progress(1.0, "encode")
        return _render_report(cues, face_frames, times)


@dataclass(frozen=True)
class _Cues:
    """What a render needs besides the clip: the face track, the audio and per-frame cues."""

    track: FaceTrack
    fps: int
    samples: npt.NDArray[np.float32]
    frames: int
    poses: list[MouthPose]
    phones: list[Phone] | None
    blinks: npt.NDArray[np.float64]


def _load_cues(avatar_dir: Path, audio: Path, text: str, language: str) -> _Cues:
    """Read the prepared avatar's track and turn the audio (and script) into per-frame cues."""
    meta = json.loads((avatar_dir / "avatar.json").read_text(encoding="utf-8"))
    track = FaceTrack.load(avatar_dir / "track.npz")
    fps = int(meta["fps"])
    samples = load_audio(audio, AUDIO_RATE)
    n_out = frames_for_audio(len(samples), AUDIO_RATE, fps)
    poses, phones = mouth_poses(samples, fps, n_out, text, language)
    # A photo does not blink by itself. The blinks' seed is the speech itself: the same
    # render blinks the same way again, different renders at different times.
    blinks = np.zeros(n_out)
    if meta.get("source") == "photo":
        blinks = blink_amounts(zlib.crc32(samples.tobytes()), n_out, fps)
    return _Cues(track, fps, samples, n_out, poses, phones, blinks)


def _warp_frames(
    clip: Path, cues: _Cues, writer: I420Writer, times: dict[str, float], progress: ProgressFn
) -> int:
    """Warp and write every output frame, adding to `times`; return how many showed a face."""
    track = cues.track
    size = (track.width, track.height)
    face_frames = 0
    frames = iter_pingpong(clip, len(track), cues.frames, cues.fps)
    for i in range(cues.frames):
        t = time.perf_counter()
        index, frame = next(frames)
        t1 = time.perf_counter()
        if track.present[index]:
            frame = speak_i420(frame, size, track.landmarks[index], cues.poses[i])
            frame = blink_i420(frame, size, track.landmarks[index], float(cues.blinks[i]))
            face_frames += 1
        t2 = time.perf_counter()
        writer.write(frame)
        t3 = time.perf_counter()
        times["decode"] += t1 - t
        times["warp"] += t2 - t1
        times["encode"] += t3 - t2
        if i % 25 == 0:
            progress(i / cues.frames, "warp")
    return face_frames


def _render_report(cues: _Cues, face_frames: int, times: dict[str, float]) -> dict[str, Any]:
    """The render's summary: frames, cues used, closures, blinks and timings (JSON-able)."""
    phones = cues.phones
    return {
        "frames": cues.frames,
        "fps": cues.fps,
        "face_frames": face_frames,
        "audio_s": round(len(cues.samples) / AUDIO_RATE, 3),
        "cues": "audio" if phones is None else "phones",
        "closures_s": [] if phones is None else [round(t, 3) for t in closure_times(phones)],
        "blink_frames": [int(i) for i in np.flatnonzero(cues.blinks >= 1.0)],
        "seconds": {k: round(v, 3) for k, v in times.items()},
    }
