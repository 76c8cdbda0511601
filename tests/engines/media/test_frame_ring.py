"""The shared frame ring: slots, the encoded counter, and who removes the block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.media.frame_ring import WRITTEN, FrameRing, fits_in_shm, ring_bytes

pytestmark = pytest.mark.env("lipsync")


def test_a_second_mapping_sees_the_same_frames_and_counter() -> None:
    ring = FrameRing((64, 32), slots=3)
    other = FrameRing((64, 32), slots=3, name=ring.name)
    assert ring.frame(0).shape == (48, 64)
    ring.frame(4)[:] = 7  # frame 4 lives in slot 1
    other.counters[WRITTEN] = 5
    assert np.all(other.frame(1) == 7) and np.all(other.frame(0) == 0)
    assert ring.written == 5
    path = Path("/dev/shm") / ring.name
    other.close()
    assert path.exists()  # a mapping by name never removes the block
    ring.close()
    assert not path.exists()


def test_closing_while_frames_are_still_referenced_still_removes_the_block() -> None:
    ring = FrameRing((64, 32), slots=2)
    view = ring.frame(1)
    ring.close()
    assert not (Path("/dev/shm") / ring.name).exists()
    view[:] = 1  # the mapping lives on with the view
    assert view.sum() == view.size


def test_a_ring_too_big_for_shared_memory_is_refused(tmp_path: Path) -> None:
    assert ring_bytes((1280, 720), 384) == 64 + 384 * 1280 * 720 * 3 // 2
    assert fits_in_shm((1280, 720), 384, root=str(tmp_path))  # a normal disk has room
    assert not fits_in_shm((1280, 720), 10**9, root=str(tmp_path))
    assert not fits_in_shm((1280, 720), 384, root=str(tmp_path / "missing"))
