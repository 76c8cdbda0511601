"""How output frames are dealt to encoder processes and put back on one timeline."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest

from engines.media.children import DecodeJob, Layout, in_thread
from engines.media.frame_ring import FrameRing
from engines.media.video import VideoWriter

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.env("lipsync")


@pytest.mark.parametrize(("encoders", "segment"), [(1, 50), (2, 3), (3, 4)])
def test_every_frame_goes_to_one_encoder_and_comes_back_to_its_place(
    encoders: int, segment: int
) -> None:
    layout = Layout(encoders, segment)
    timelines: dict[int, list[int]] = {}
    for i in range(100):
        k = layout.owner(i)
        local = layout.local(i)
        timelines.setdefault(k, []).append(local)
        assert local + layout.shift(local, k) == i
    # Each encoder sees a gapless timeline of its own (x264 then keeps decode times sane).
    for local_times in timelines.values():
        assert local_times == list(range(len(local_times)))


def test_runs_are_dealt_round_robin() -> None:
    layout = Layout(2, 3)
    assert [layout.owner(i) for i in range(12)] == [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1]
    assert layout.local(6) == 3 and layout.shift(3, 0) == 3


def test_in_thread_yields_everything_in_order_and_passes_errors_on() -> None:
    assert list(in_thread(iter(range(100)), 3)) == list(range(100))

    def broken() -> Iterator[int]:
        yield 1
        raise ValueError("bad frame")

    got = []
    with pytest.raises(ValueError, match="bad frame"):
        for item in in_thread(broken(), 3):
            got.append(item)
    assert got == [1]


def test_leaving_in_thread_early_stops_and_closes_the_source() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            yield from itertools.count()
        finally:
            closed.set()

    items = in_thread(endless(), 2)
    assert next(items) == 0
    items.close()  # what leaving a for loop over it does
    assert closed.wait(timeout=10)


def test_a_decoder_waiting_for_free_slots_exits_when_the_render_goes_away(
    tmp_path: Path,
) -> None:
    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, 64, 64, 25) as writer:
        for i in range(10):
            writer.write(np.full((64, 64, 3), i * 20, np.uint8))
    ring = FrameRing((64, 64), slots=2)
    ours, theirs = socket.socketpair()
    child = subprocess.Popen(
        [sys.executable, "-m", "engines.media.children", "decoder", str(theirs.fileno())],
        cwd=ROOT,
        pass_fds=[theirs.fileno()],
    )
    theirs.close()
    conn = Connection(ours.detach())
    try:
        job = DecodeJob(
            clip, (64, 64), 25.0, 10, 10, 1, np.zeros(10, bool), np.zeros((10, 4), np.int32)
        )
        conn.send((ring.name, (64, 64), 2, (job, Layout(1, 50))))
        # Two frames fill both slots; nothing is ever encoded, so the decoder waits.
        assert [conn.recv()[0] for _ in range(2)] == [0, 1]
        assert not conn.poll(1.0) and child.poll() is None
        conn.close()
        assert child.wait(timeout=10) == 0
    finally:
        child.kill()
        ring.close()
