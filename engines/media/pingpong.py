"""Looping a prepared clip forth and back, as long as the speech needs, without a jump cut."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engines.media.guard import open_input

Image = npt.NDArray[np.uint8]


def pingpong_index(i: int, n: int) -> int:
    """Map output frame `i` to a clip frame, playing an `n`-frame clip forth and back forever."""
    if n <= 1:
        return 0
    period = 2 * n - 2
    m = i % period
    return m if m < n else period - m


def iter_pingpong(
    path: Path, n_clip: int, n_out: int, fps: float, chunk: int = 25
) -> Iterator[tuple[int, Image]]:
    """Yield (clip index, frame) for `n_out` output frames, looping the clip back and forth.

    Forward runs decode straight through; backward runs decode `chunk` frames at a time after a
    seek and hand them out reversed, so memory holds at most `chunk` frames (no jump cut, no
    whole clip in RAM). Assumes a constant-rate clip starting at time 0, as `prepare` writes.
    """
    if n_clip <= 0 or n_out <= 0:
        return
    with open_input(path) as container:
        reader = _SeekReader(container, fps)
        if n_clip == 1:
            frame = next(reader.read(range(0, 1), chunk))
            for _ in range(n_out):
                yield 0, frame
            return
        period = 2 * n_clip - 2
        i = 0
        while i < n_out:
            m = i % period
            if m < n_clip:  # forward run up to the last frame
                indices = range(m, min(n_clip, m + n_out - i))
            else:  # backward run down to frame 1; frame 0 starts the next forward run
                start = period - m
                indices = range(start, max(0, start - (n_out - i)), -1)
            for index, frame in zip(indices, reader.read(indices, chunk), strict=True):
                yield index, frame
            i += len(indices)


class _SeekReader:
    """Reads runs of frames from an open constant-rate clip, forwards or backwards."""

    def __init__(self, container: Any, fps: float) -> None:
        self.container = container
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.fps = fps

    def read(self, indices: range, chunk: int) -> Iterator[Image]:
        """Yield the frames for a contiguous run of indices, in the run's order."""
        if indices.step > 0:
            yield from self._span(indices.start, indices.stop)
            return
        top = indices.start + 1
        low = indices.stop + 1
        while top > low:
            a = max(low, top - chunk)
            yield from reversed(list(self._span(a, top)))
            top = a

    def _span(self, a: int, b: int) -> Iterator[Image]:
        """Decode frames a..b-1 after seeking to the keyframe at or before frame a."""
        tb = self.stream.time_base
        self.container.seek(int(a / self.fps / tb), stream=self.stream, backward=True)
        want = a
        last: Image | None = None
        for frame in self.container.decode(self.stream):
            index = round(float(frame.time or 0.0) * self.fps)
            if index < want:
                continue
            last = frame.to_ndarray(format="rgb24")
            yield last
            want += 1
            if want >= b:
                return
        # A clip shorter than its track says: repeat the last frame rather than stop short.
        while want < b and last is not None:
            yield last
            want += 1
