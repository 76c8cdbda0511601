"""A ring of I420 frames in shared memory, shared by the render and its decoder and encoder.

Frame `i` sits in slot `i % slots`. The block's header holds counters: for each encoder, one
past the last frame it has taken in (the decoder reads them to know which slots are free
again), and the frames written to the file so far (the render reads it for progress).

The render creates the block (so Python's resource tracker removes it even if the render
is killed); the children map it by path, which registers nothing that could remove it
when a child exits.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
from multiprocessing.shared_memory import SharedMemory
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

U8: TypeAlias = NDArray[np.uint8]
#: Bytes before the first slot: eight int64 counters, one cache line.
HEADER = 64
#: The counter of frames written to the file; counters 0..MAX_ENCODERS-1 are the encoders'.
WRITTEN = 7
MAX_ENCODERS = WRITTEN
SHM_ROOT = "/dev/shm"


def ring_bytes(size: tuple[int, int], slots: int) -> int:
    """Bytes a ring of `slots` I420 frames of `size` (width, height) takes."""
    width, height = size
    return HEADER + slots * width * height * 3 // 2


def fits_in_shm(size: tuple[int, int], slots: int, root: str = SHM_ROOT) -> bool:
    """Whether the shared-memory filesystem has room for the ring (containers often cap it)."""
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return False
    return free > ring_bytes(size, slots) * 5 // 4


class FrameRing:
    """`slots` I420 frames of one size in shared memory, plus the progress counters."""

    def __init__(self, size: tuple[int, int], slots: int, name: str | None = None) -> None:
        """Create a new block, or with `name` map the block another process created."""
        self.size, self.slots = size, slots
        width, height = size
        self.shape = (height * 3 // 2, width)
        nbytes = ring_bytes(size, slots)
        self._shm: SharedMemory | None = None
        if name is None:
            self._shm = SharedMemory(create=True, size=nbytes)
            name = self._shm.name.lstrip("/")
            # Views come from a mapping of our own (below), whose closing we control.
            self._shm.close()
        self.name = name
        fd = os.open(os.path.join(SHM_ROOT, name), os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        # frombuffer keeps an export of the mapping (np.ndarray(buffer=...) does not), so
        # the mapping cannot be closed under a live view.
        self.counters: NDArray[np.int64] = np.frombuffer(self._map, np.int64, HEADER // 8)
        frames = np.frombuffer(self._map, np.uint8, nbytes - HEADER, HEADER)
        self.frames: U8 = frames.reshape(slots, *self.shape)

    @property
    def written(self) -> int:
        """Frames written to the file in the current render."""
        return int(self.counters[WRITTEN])

    def frame(self, i: int) -> U8:
        """The slot of output frame `i`."""
        slot: U8 = self.frames[i % self.slots]
        return slot

    def close(self) -> None:
        """Drop this process's mapping; the creator also removes the block."""
        del self.counters, self.frames
        # Frames still referenced elsewhere keep the mapping alive; it goes with them.
        with contextlib.suppress(BufferError):
            self._map.close()
        if self._shm is not None:
            self._shm.unlink()
