"""How output frames are dealt to encoder processes and put back on one timeline."""

from __future__ import annotations

import pytest

from engines.media_children import Layout

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
