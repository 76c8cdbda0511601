"""Synthetic prepared avatars, audio and random weights for the wav2lip benchmark and GPU tests.

A portrait drifting over a textured background with a synthetic face track, so no face
detector has to run on the GPU machine; speech-like audio; random generator weights saved in
the official checkpoint format.
"""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from engines.lipsync.avatar_prep import CLIP_CRF, CLIP_PRESET, CLIP_TUNE
from engines.lipsync.facetrack import FACE_OVAL, MOUTH_LEFT, MOUTH_RIGHT, NOSE_BASE, FaceTrack
from engines.lipsync.wav2lip_model import Wav2Lip
from engines.media import video as media

FPS = 25
NO_FACE_S = (4.0, 4.4)  # a stretch of each clip whose track says "no face" (pass-through)


def synthetic_landmarks(cx: float, cy: float, rx: float, ry: float) -> NDArray[np.float32]:
    """A 478-point face: the FaceMesh points the engine uses, placed on an ellipse face."""
    points = np.tile(np.array([cx, cy], np.float32), (478, 1))
    angles = -np.pi / 2 + 2 * np.pi * np.arange(len(FACE_OVAL)) / len(FACE_OVAL)
    points[list(FACE_OVAL), 0] = cx + rx * np.cos(angles)
    points[list(FACE_OVAL), 1] = cy + ry * np.sin(angles)
    points[MOUTH_LEFT] = (cx - 0.35 * rx, cy + 0.45 * ry)
    points[MOUTH_RIGHT] = (cx + 0.35 * rx, cy + 0.45 * ry)
    points[NOSE_BASE] = (cx, cy + 0.2 * ry)
    return points


def portrait(side: int) -> NDArray[np.uint8]:
    """The public-domain astronaut portrait if scikit-image is here, else a drawn face."""
    try:
        from skimage import data

        photo = data.astronaut()  # type: ignore[no-untyped-call,unused-ignore]
        image = np.ascontiguousarray(photo[0:288, 80:368])
        return np.asarray(cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA))
    except ImportError:
        face = np.full((side, side, 3), 90, np.uint8)
        cv2.ellipse(
            face, (side // 2, side // 2), (side // 3, side * 2 // 5), 0, 0, 360, (200, 160, 140), -1
        )
        return face


def make_avatar(out: Path, width: int, height: int, seconds: float) -> Path:
    """Write a prepared avatar (clip.mp4, track.npz, avatar.json) with a synthetic track."""
    out.mkdir(parents=True, exist_ok=True)
    n = round(seconds * FPS)
    side = int(height * 0.6)
    face = portrait(side)
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([(xx // 3) % 200, (yy // 2) % 220, ((xx + yy) // 5) % 180], -1)
    background = background.astype(np.uint8)
    landmarks = np.zeros((n, 478, 2), np.float32)
    # Encoded as avatar preparation encodes its clips, so renders decode the same stream.
    clip = out / "clip.mp4"
    with media.VideoWriter(
        clip, width, height, FPS, crf=CLIP_CRF, preset=CLIP_PRESET, tune=CLIP_TUNE
    ) as w:
        for i in range(n):
            dx = int(0.02 * width * math.sin(2 * math.pi * i / (4 * FPS)))
            dy = int(0.01 * height * math.sin(2 * math.pi * i / (3 * FPS)))
            x0, y0 = (width - side) // 2 + dx, (height - side) // 2 + dy
            frame = background.copy()
            frame[y0 : y0 + side, x0 : x0 + side] = face
            w.write(frame)
            landmarks[i] = synthetic_landmarks(
                x0 + side / 2, y0 + side * 0.45, side * 0.3, side * 0.4
            )
    present = np.ones(n, bool)
    present[int(NO_FACE_S[0] * FPS) : int(NO_FACE_S[1] * FPS)] = False
    boxes = np.concatenate([landmarks.min(1), landmarks.max(1)], 1).round().astype(np.int32)
    boxes[~present] = 0
    FaceTrack(FPS, width, height, present, boxes, landmarks).save(out / "track.npz")
    meta = {
        "frames": n,
        "fps": FPS,
        "width": width,
        "height": height,
        "duration_s": n / FPS,
        "face_frames": int(present.sum()),
        "source": "video",
    }
    (out / "avatar.json").write_text(json.dumps(meta), encoding="utf-8")
    return out


def make_audio(path: Path, seconds: float) -> Path:
    """Write a 16 kHz mono WAV of syllable-like bursts (never exact silence)."""
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * f * t) for f in (150, 300, 600, 1200, 2400)) / 5
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    noise = np.random.default_rng(0).normal(0, 0.003, t.size)
    pcm = np.clip(0.4 * voice * envelope + noise, -1, 1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((pcm * 32767).astype("<i2").tobytes())
    return path


def save_weights(models_dir: Path) -> Path:
    """Random generator weights in the official format (DataParallel keys, state_dict)."""
    torch.manual_seed(0)
    path = models_dir / "wav2lip" / "wav2lip_gan.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"module.{k}": v for k, v in Wav2Lip().state_dict().items()}
    torch.save({"state_dict": state, "global_step": 0, "global_epoch": 0}, path)
    return path
