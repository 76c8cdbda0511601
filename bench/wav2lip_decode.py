"""Where the split render's decoder process spends its time, per frame, on this host's CPUs.

The decoder feeds every other stage; this times its parts one by one on a synthetic
prepared avatar: decoding the clip back and forth (as a render plays it) or straight
through, the same clip encoded without `tune=fastdecode`, copying frames into a ring, and
cutting the generator crops. Prints a table.

    python -m bench.wav2lip_decode [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from bench.wav2lip_synth import FPS, make_avatar
from engines.lipsync import wav2lip_io
from engines.lipsync.avatar_prep import CLIP_CRF, CLIP_PRESET
from engines.lipsync.facetrack import FaceTrack
from engines.lipsync.wav2lip_blend import face_crop_i420


def timed(frames: Iterator[object], n: int) -> str:
    """Frames per second of draining `frames` (n of them), and CPU ms a frame it took."""
    t, c = time.perf_counter(), time.process_time()
    for _ in frames:
        pass
    cpu_ms = (time.process_time() - c) * 1e3 / n
    return f"{n / (time.perf_counter() - t):,.0f} | {cpu_ms:.2f}"


def per_frame(work: Callable[[int], object], n: int) -> str:
    """Frames per second of calling `work(i)` for i < n, and CPU ms a frame."""
    t, c = time.perf_counter(), time.process_time()
    for i in range(n):
        work(i)
    cpu_ms = (time.process_time() - c) * 1e3 / n
    return f"{n / (time.perf_counter() - t):,.0f} | {cpu_ms:.2f}"


def rows_for(label: str, avatar: Path, n_out: int) -> list[tuple[str, str]]:
    """Decoder parts for one avatar: each as frames per second."""
    track = FaceTrack.load(avatar / "track.npz")
    clip, n_clip = avatar / "clip.mp4", len(track.present)
    frames = [f for _, f in wav2lip_io.iter_pingpong(clip, n_clip, min(n_clip, 100), FPS)]
    ring = np.zeros((32, *frames[0].shape), np.uint8)
    boxes = np.asarray(track.boxes, np.int32)
    size = (track.width, track.height)
    plain = plain_clip(clip, avatar / "plain.mp4", n_clip, size)

    def play(path: Path, n: int, gop: int | None = None, threads: int = 0) -> str:
        frames = wav2lip_io.iter_pingpong_frames(path, n_clip, n, FPS, gop, threads)
        return timed(frames, n)

    def copy(i: int) -> None:
        np.copyto(ring[i % 32], frames[i % len(frames)])

    def crop(i: int) -> None:
        face_crop_i420(frames[i % len(frames)], boxes[i % len(frames)], size)

    return [
        (f"{label}: decode back and forth (prepared clip)", play(clip, n_out)),
        (f"{label}: decode straight through (prepared clip)", play(clip, n_clip)),
        (f"{label}: decode back and forth, {4 * FPS}-frame pieces", play(clip, n_out, 4 * FPS)),
        *[
            (f"{label}: decode back and forth, {n} threads", play(clip, n_out, threads=n))
            for n in (1, 2, 4, 8)
        ],
        (f"{label}: decode back and forth, clip without tune=fastdecode", play(plain, n_out)),
        (f"{label}: copy into ring", per_frame(copy, 2000)),
        (f"{label}: generator crop", per_frame(crop, 2000)),
        (f"{label}: generator crop, OpenCV on one thread", single_threaded(crop)),
    ]


def single_threaded(work: Callable[[int], object]) -> str:
    """`per_frame(work)` with OpenCV held to one thread (as the decoder process holds it)."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return per_frame(work, 2000)
    finally:
        cv2.setNumThreads(threads)


def plain_clip(src: Path, dst: Path, n_clip: int, size: tuple[int, int]) -> Path:
    """The clip encoded again as prepared clips are, but without `tune=fastdecode`."""
    with wav2lip_io.I420Writer(dst, *size, FPS, crf=CLIP_CRF, preset=CLIP_PRESET) as writer:
        for _, frame in wav2lip_io.iter_pingpong(src, n_clip, n_clip, FPS):
            writer.write(frame)
    return dst


def main() -> None:
    """Build the avatars, time the parts, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small clips, for a smoke run")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, width, height, clip_s, audio_s in [
            ("720p", 1280, 720, 10.0, 60.0),
            ("1080p", 1920, 1080, 10.0, 60.0),
        ]:
            avatar = make_avatar(Path(tmp) / label, width, height, max(2.0, clip_s * scale))
            rows += rows_for(label, avatar, round(audio_s * scale * FPS))
    print(f"\nhost: {os.cpu_count()} CPUs\n\n| part | frames/s | CPU ms/frame |\n|---|---|---|")
    for name, cells in rows:
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
