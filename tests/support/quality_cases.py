"""Deliberately broken renders, to calibrate the quality report and to test that it flags them.

Each case starts from the same avatar and speech as an honest render by the landmark engine
and breaks one thing, written in one encode from the clip like a real render:

- ``shifted``: the honest render's video, untouched, with the audio 5 frames late;
- ``frozen``: the mouth never moves (the clip as it is, with the speech);
- ``wrong_voice``: an honest render of speech in another voice (the caller supplies it);
- ``blurry``: the mouth region blurred inside the engine's mask;
- ``flicker``: the mouth jumps by a few pixels every other frame, inside the mask;
- ``pasted``: the whole face box pasted back hard with a colour cast, as a crude engine
  would, so pixels outside the mask change;
- ``subtle``: a band across the top of the frame, far from the mouth, 3 levels brighter: a
  change too small to see in any one tile of one frame, but there all along.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
import numpy.typing as npt

from engines.lipsync.compositing import blend
from engines.lipsync.facetrack import FaceTrack
from engines.lipsync.landmark import AUDIO_RATE, mouth_poses
from engines.lipsync.mouth_warp import MouthPose, speak_i420, warp_mask
from engines.lipsync.wav2lip_io import iter_pingpong, roi_to_rgb, write_roi
from engines.media.guard import open_input
from engines.media.video import VideoWriter, frames_for_audio, load_audio

#: Changes one finished frame: (frame, its clip landmarks, output index) -> frame.
Image = npt.NDArray[np.uint8]
Mutation = Callable[[Image, npt.NDArray[np.float32], int], Image]
SHIFT_FRAMES = 5


def render_with(
    avatar_dir: Path,
    speech: Path,
    out_mp4: Path,
    *,
    mutate: Mutation | None = None,
    freeze: bool = False,
    text: str = "",
    language: str = "",
) -> Path:
    """Render like the landmark engine (of `text`, if given), then apply `mutate` to each face."""
    meta = json.loads((avatar_dir / "avatar.json").read_text(encoding="utf-8"))
    track = FaceTrack.load(avatar_dir / "track.npz")
    fps = int(meta["fps"])
    samples = load_audio(speech, AUDIO_RATE)
    n_out = frames_for_audio(len(samples), AUDIO_RATE, fps)
    poses, _ = mouth_poses(samples, fps, n_out, text, language)
    size = (track.width, track.height)
    with VideoWriter(out_mp4, *size, fps, audio=samples) as writer:
        # Like the engine, frames stay I420; a mutation sees RGB and only what it changes is
        # written back, so nothing else takes a colour round trip.
        for i, (index, frame) in enumerate(
            iter_pingpong(avatar_dir / "clip.mp4", len(track), n_out, fps)
        ):
            if track.present[index]:
                lm = track.landmarks[index]
                frame = speak_i420(
                    frame, size, lm, MouthPose(0.0, 1.0, 0.0) if freeze else poses[i]
                )
                if mutate is not None:
                    _mutate_i420(frame, size, mutate, lm, i)
            writer.write_i420(frame)
    return out_mp4


def _mutate_i420(
    frame: Image, size: tuple[int, int], mutate: Mutation, lm: npt.NDArray[np.float32], i: int
) -> None:
    """Apply an RGB mutation to an I420 frame in place, writing back only the pixels it changed."""
    width, height = size
    box = (0, 0, width, height)
    rgb = roi_to_rgb(frame, box, width, height)
    out = mutate(rgb.copy(), lm, i)
    changed = (out != rgb).any(axis=-1).astype(np.float32)
    write_roi(frame, out, changed, box, width, height)


def shift_audio(src_mp4: Path, out_mp4: Path, frames: int = SHIFT_FRAMES) -> Path:
    """Copy `src_mp4`'s video packets as they are and re-encode its audio `frames` frames late."""
    audio = load_audio(src_mp4, AUDIO_RATE)
    with open_input(src_mp4) as src, av.open(str(out_mp4), "w", format="mp4") as dst:
        vin = src.streams.video[0]
        fps = float(vin.average_rate or 25)
        delay = round(frames * AUDIO_RATE / fps)
        late = np.concatenate([np.zeros(delay, np.float32), audio])[: len(audio)]
        vout = dst.add_stream_from_template(vin)
        aout = dst.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for packet in src.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            dst.mux(packet)
        frame = av.AudioFrame.from_ndarray(late.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, 0, Fraction(1, AUDIO_RATE)
        dst.mux(aout.encode(frame))
        dst.mux(aout.encode(None))
    return out_mp4


def blur_mouth(sigma: float = 3.0) -> Mutation:
    """Blur the region the engine may change, through its own feathered mask."""

    def apply(frame: Image, lm: npt.NDArray[np.float32], i: int) -> Image:
        mask = warp_mask(lm, frame.shape[1], frame.shape[0])
        rows, cols = mask.box.slices
        # GaussianBlur keeps the dtype: the blurred crop is uint8 RGB like the frame.
        soft = cast(Image, cv2.GaussianBlur(frame[rows, cols], (0, 0), sigma))
        return blend(frame, soft, mask)

    return apply


def flicker_mouth(pixels: int = 4) -> Mutation:
    """Move the mouth region down by `pixels` on every other frame, inside the mask."""

    def apply(frame: Image, lm: npt.NDArray[np.float32], i: int) -> Image:
        if i % 2 == 0:
            return frame
        mask = warp_mask(lm, frame.shape[1], frame.shape[0])
        box = mask.box
        top = max(0, box.y1 - pixels)
        patch = frame[top : box.y2 - pixels, box.x1 : box.x2]
        if patch.shape[0] != box.height:  # the box touches the top edge: leave it be
            return frame
        return blend(frame, patch, mask)

    return apply


def brighten_band(levels: int = 3, rows: int = 40) -> Mutation:
    """Brighten the top `rows` rows of every frame by `levels`, outside any mouth mask."""

    def apply(frame: Image, lm: npt.NDArray[np.float32], i: int) -> Image:
        out = frame.copy()
        out[:rows] = np.clip(out[:rows].astype(np.int16) + levels, 0, 255).astype(np.uint8)
        return out

    return apply


def paste_face(cast: float = 30.0) -> Mutation:
    """Paste the whole face box back with a colour cast and no feathering (a crude engine)."""

    def apply(frame: Image, lm: npt.NDArray[np.float32], i: int) -> Image:
        h, w = frame.shape[:2]
        x1, y1 = np.floor(lm.min(axis=0)).astype(int).clip(0, (w - 1, h - 1))
        x2, y2 = np.ceil(lm.max(axis=0)).astype(int).clip(1, (w, h))
        out = frame.copy()
        box = out[y1:y2, x1:x2].astype(np.float32) + np.array([cast, cast / 2, 0.0])
        out[y1:y2, x1:x2] = np.clip(box, 0, 255).astype(np.uint8)
        return out

    return apply
