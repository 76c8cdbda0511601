"""Frame I/O for the wav2lip render in the codec's own 4:2:0 layout.

Frames travel from decoder to encoder as I420 arrays ((3H/2) × W: the Y plane, then U, then
V), exactly as the prepared clip stores them. Only the small boxes around the face are turned
into RGB (for the generator's crop and for the blend) and back. Full-frame colour conversion
on both ends was what capped the render near 400 frames/s at 720p.

Pixels are rewritten only where the blend mask is non-zero: luma per pixel, chroma per 2×2
block touched by the mask. Everything else is the decoded source, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeAlias

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from engines.media import video as media
from engines.media.guard import open_input

U8: TypeAlias = NDArray[np.uint8]


def planes(frame: U8, width: int, height: int) -> tuple[U8, U8, U8]:
    """Views of the Y (H×W), U and V (H/2 × W/2) planes of an I420 array."""
    area = width * height
    y = frame.reshape(-1)[:area].reshape(height, width)
    u = frame.reshape(-1)[area : area * 5 // 4].reshape(height // 2, width // 2)
    v = frame.reshape(-1)[area * 5 // 4 :].reshape(height // 2, width // 2)
    return y, u, v


def even_box(box: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """Grow (x1, y1, x2, y2) to even coordinates inside the frame, so chroma aligns."""
    x1, y1, x2, y2 = box
    return x1 & ~1, y1 & ~1, min(width, (x2 + 1) & ~1), min(height, (y2 + 1) & ~1)


def roi_to_rgb(frame: U8, box: tuple[int, int, int, int], width: int, height: int) -> U8:
    """Return the RGB pixels of an even-aligned box of an I420 frame."""
    x1, y1, x2, y2 = box
    y, u, v = planes(frame, width, height)
    parts = (
        y[y1:y2, x1:x2],
        u[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2],
        v[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2],
    )
    i420 = np.concatenate([p.reshape(-1) for p in parts]).reshape((y2 - y1) * 3 // 2, x2 - x1)
    return np.asarray(cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420), dtype=np.uint8)


def write_roi(
    frame: U8,
    rgb: U8,
    alpha: NDArray[np.float32],
    box: tuple[int, int, int, int],
    width: int,
    height: int,
) -> None:
    """Write an RGB box back into an I420 frame, only where `alpha` (box-sized) is non-zero."""
    x1, y1, x2, y2 = box
    h, w = y2 - y1, x2 - x1
    i420 = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), dtype=np.uint8).reshape(-1)
    new_y = i420[: h * w].reshape(h, w)
    new_u = i420[h * w : h * w * 5 // 4].reshape(h // 2, w // 2)
    new_v = i420[h * w * 5 // 4 :].reshape(h // 2, w // 2)
    touched = alpha > 0
    # A chroma sample changes where any of its 2x2 luma pixels does (four strided views:
    # numpy's `any` over the axes of a 4-D reshape takes several times as long).
    block = touched[0::2, 0::2] | touched[0::2, 1::2] | touched[1::2, 0::2] | touched[1::2, 1::2]
    y, u, v = planes(frame, width, height)
    np.copyto(y[y1:y2, x1:x2], new_y, where=touched)
    np.copyto(u[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2], new_u, where=block)
    np.copyto(v[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2], new_v, where=block)


def iter_pingpong(
    path: Path, n_clip: int, n_out: int, fps: float, gop: int | None = None
) -> Iterator[tuple[int, U8]]:
    """Yield (clip index, I420 array) for `n_out` frames playing the clip forth and back."""
    for index, frame in iter_pingpong_frames(path, n_clip, n_out, fps, gop):
        yield index, frame.to_ndarray(format="yuv420p")


def iter_pingpong_frames(
    path: Path, n_clip: int, n_out: int, fps: float, gop: int | None = None, threads: int = 0
) -> Iterator[tuple[int, Any]]:
    """Yield (clip index, decoded `av.VideoFrame`) for `n_out` frames, forth and back.

    Same order as `media.pingpong_index`. Backward runs decode one keyframe interval (`gop`
    frames, one second in prepared clips) at a time and hand it out reversed, so each frame
    is decoded once and memory holds at most one interval. A frame may be handed out more
    than once (a clip shorter than its track says): copy, never write into, what comes out.
    `threads` caps the decoder's threads (0: one per core).
    """
    if n_clip <= 0 or n_out <= 0:
        return
    gop = gop or max(1, round(fps))
    with open_input(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads

        def span(a: int, b: int) -> Iterator[Any]:
            return _span(container, stream, fps, a, b)

        i = 0
        while i < n_out:
            indices = _next_run(i, n_clip, n_out)
            yield from zip(indices, _read_run(span, indices, gop), strict=True)
            i += len(indices)


def copy_i420(frame: Any, out: U8) -> None:
    """Copy a decoded yuv420p `av.VideoFrame` into an I420 array, plane by plane."""
    height, width = out.shape[0] * 2 // 3, out.shape[1]
    for plane, dest in zip(frame.planes, planes(out, width, height), strict=True):
        rows, cols = dest.shape
        src = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        np.copyto(dest, src[:rows, :cols])


def _next_run(i: int, n_clip: int, n_out: int) -> range:
    """The clip indices of the straight run that output frame `i` starts."""
    if n_clip == 1:
        return range(0, 1) if n_out - i >= 1 else range(0)
    period = 2 * n_clip - 2
    m = i % period
    if m < n_clip:  # forward up to the last frame
        return range(m, min(n_clip, m + n_out - i))
    start = period - m  # backward down to frame 1; frame 0 starts the next forward run
    return range(start, max(0, start - (n_out - i)), -1)


def _read_run(span: Callable[[int, int], Iterator[Any]], indices: range, gop: int) -> Iterator[Any]:
    """Frames of one run, in the run's order."""
    if indices.step > 0:
        yield from span(indices.start, indices.stop)
        return
    top, low = indices.start + 1, indices.stop + 1
    while top > low:
        # Start each piece on a keyframe, so no frame is decoded twice.
        a = max(low, ((top - 1) // gop) * gop)
        yield from reversed(list(span(a, top)))
        top = a


def _span(container: Any, stream: Any, fps: float, a: int, b: int) -> Iterator[Any]:
    """Decode frames a..b-1 after seeking to the keyframe at or before frame a."""
    container.seek(int(a / fps / stream.time_base), stream=stream, backward=True)
    want, last = a, None
    for frame in container.decode(stream):
        index = round(float(frame.time or 0.0) * fps)
        if index < want:
            continue
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        last = frame
        yield last
        want += 1
        if want >= b:
            return
    # A clip shorter than its track says: repeat the last frame rather than stop short.
    while want < b and last is not None:
        yield last
        want += 1


class I420Writer(media.VideoWriter):
    """`media.VideoWriter` fed I420 arrays: the encoder gets its own format, no conversion."""

    def write(self, frame: U8) -> None:
        """Encode one I420 frame, then the audio up to the end of that frame."""
        vf = av.VideoFrame.from_ndarray(frame, format="yuv420p")
        vf.pts = self.frames
        vf.time_base = Fraction(1, self.fps)
        self.container.mux(self.video.encode(vf))
        self.frames += 1
        self._write_audio_until(self.frames * self.audio_rate // self.fps)
