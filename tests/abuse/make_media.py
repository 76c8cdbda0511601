"""Hostile media files, small on disk: `python -m tests.abuse.make_media KIND OUT` (lipsync env).

KIND is one of:

- ``noface``: 2 s of a moving gradient, no face anywhere;
- ``8k``: two 7680x4320 frames (a few KB: flat colour compresses to nothing);
- ``2h``: a 64x64 video whose two frames are two hours apart (a real 2-hour timeline);
- ``gif``: a still, single-frame GIF of the demo portrait;
- ``black4k``: 119 s of all-black 3840x2160 video at 1 frame/s, about 30 KB.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engines.lipsync.demo_assets import astronaut_portrait


def _video(out: Path, frames: list[np.ndarray], pts: list[int], rate: Fraction) -> None:
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.time_base = rate
        stream.codec_context.options = {"preset": "ultrafast"}
        for image, at in zip(frames, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = at, rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def no_face(out: Path) -> None:
    """A gradient that drifts for 2 s."""
    x = np.linspace(0, 255, 128, dtype=np.float32)
    frames = [
        np.stack([np.tile((x + 5 * i) % 256, (96, 1))] * 3, axis=-1).astype(np.uint8)
        for i in range(50)
    ]
    _video(out, frames, list(range(50)), Fraction(1, 25))


def eight_k(out: Path) -> None:
    """Two flat frames at 7680x4320."""
    frame = np.full((4320, 7680, 3), 90, dtype=np.uint8)
    _video(out, [frame, frame], [0, 1], Fraction(1, 25))


def two_hours(out: Path) -> None:
    """Two frames of the portrait, the second two hours after the first."""
    face = astronaut_portrait(64)
    _video(out, [face, face], [0, 7200], Fraction(1, 1))


def still_gif(out: Path) -> None:
    """One frame of the portrait as a GIF."""
    face = astronaut_portrait(128)
    with av.open(str(out), "w", format="gif") as container:
        stream = container.add_stream("gif", rate=1)
        stream.width, stream.height, stream.pix_fmt = 128, 128, "rgb8"
        frame = av.VideoFrame.from_ndarray(face, format="rgb24").reformat(format="rgb8")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def black_4k(out: Path) -> None:
    """119 black 4K frames, one a second: tiny on disk, minutes of work if decoded and tracked."""
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 3840, 2160, "yuv420p"
        stream.time_base = Fraction(1, 1)
        stream.codec_context.options = {"preset": "ultrafast", "crf": "51"}
        black = np.zeros((2160, 3840, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(black, format="rgb24").reformat(format="yuv420p")
        for i in range(119):
            frame.pts, frame.time_base = i, Fraction(1, 1)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


MAKERS = {
    "noface": no_face,
    "8k": eight_k,
    "2h": two_hours,
    "gif": still_gif,
    "black4k": black_4k,
}

if __name__ == "__main__":
    MAKERS[sys.argv[1]](Path(sys.argv[2]))
