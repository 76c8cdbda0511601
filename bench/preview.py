"""Make the README's preview: a short looping picture of a render (by default `make demo`'s).

The face is found by FaceMesh on the first frame and cropped with a margin, so the mouth is
large enough to see move; every `--step`-th frame of the first `--seconds` is kept, resized
to `--width` pixels, and written as an animated WebP that loops forever (lossy, `--quality`).
With `--strip`, a still strip of a few of those frames is written too, for places that show no
animation. Prints each file's size; the README's copy should stay under 300 KB.

Runs in the lip-sync environment:
``.venvs/lipsync/bin/python bench/preview.py out/demo.mp4 -o docs/preview.webp [--strip s.jpg]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from engines.lipsync.facetrack import FaceMesh
from engines.media.probe import probe
from engines.media.video import iter_frames

Frame = npt.NDArray[np.uint8]
#: The crop: the face's landmark box grown by this share of its size on every side.
MARGIN = 0.45
STRIP_FRAMES = 5


def face_box(frame: Frame) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of a square around the face with margin; the whole frame without one."""
    height, width = frame.shape[:2]
    with FaceMesh(video=False) as mesh:
        points = mesh.landmarks(frame)
    if points is None:
        return 0, 0, width, height
    (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
    side = max(x2 - x1, y2 - y1) * (1 + 2 * MARGIN)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = min(side, width, height)
    left = int(np.clip(cx - side / 2, 0, width - side))
    top = int(np.clip(cy - side / 2, 0, height - side))
    return left, top, left + int(side), top + int(side)


def frames(mp4: Path, seconds: float, step: int, width: int) -> tuple[list[Image.Image], float]:
    """The preview's frames (cropped and resized) and the render's frame rate."""
    fps = probe(mp4).fps or 25.0
    keep: list[Image.Image] = []
    box = None
    for index, frame in enumerate(iter_frames(mp4)):
        if index >= seconds * fps:
            break
        box = box or face_box(frame)
        if index % step == 0:
            crop = Image.fromarray(frame).crop(box)
            size = (width, round(width * crop.height / crop.width))
            keep.append(crop.resize(size, Image.Resampling.LANCZOS))
    if not keep:
        raise SystemExit(f"{mp4} holds no video frames")
    return keep, fps


def write_webp(images: list[Image.Image], out: Path, frame_ms: int, quality: int) -> None:
    """Write a looping animated WebP."""
    out.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        out,
        format="WEBP",
        save_all=True,
        append_images=images[1:],
        duration=frame_ms,
        loop=0,
        quality=quality,
        method=6,
    )


def write_strip(images: list[Image.Image], out: Path) -> None:
    """Write a strip of STRIP_FRAMES frames spread over the preview."""
    picks = [images[round(i)] for i in np.linspace(0, len(images) - 1, STRIP_FRAMES)]
    strip = Image.new("RGB", (sum(p.width for p in picks), picks[0].height), "white")
    x = 0
    for pick in picks:
        strip.paste(pick, (x, 0))
        x += pick.width
    out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(out, optimize=True)  # the format follows the suffix: .png, .jpg, .webp


def main() -> None:
    """Parse the arguments, write the preview (and strip), print their sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mp4", type=Path, nargs="?", default=Path("out/demo.mp4"))
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/preview.webp"))
    parser.add_argument("--strip", type=Path, default=None, help="also write a still strip here")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--step", type=int, default=2, help="keep every n-th frame")
    parser.add_argument("--width", type=int, default=240)
    parser.add_argument("--quality", type=int, default=70)
    args = parser.parse_args()
    images, fps = frames(args.mp4, args.seconds, args.step, args.width)
    write_webp(images, args.output, round(1000 * args.step / fps), args.quality)
    print(f"{args.output}: {len(images)} frames, {args.output.stat().st_size / 1024:.0f} KB")
    if args.strip is not None:
        write_strip(images, args.strip)
        print(f"{args.strip}: {STRIP_FRAMES} frames, {args.strip.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
