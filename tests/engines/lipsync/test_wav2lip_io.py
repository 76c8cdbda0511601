"""I420 frame I/O: back-and-forth reading, box conversions, masked write-back, the writer."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from engines.lipsync.wav2lip_io import (
    I420Writer,
    copy_i420,
    even_box,
    iter_pingpong,
    iter_pingpong_frames,
    planes,
    roi_to_rgb,
    write_roi,
)
from engines.media import video as media

pytestmark = pytest.mark.env("lipsync")

W, H, FPS = 96, 64, 25


def numbered_frame(k: int) -> NDArray[np.uint8]:
    """An RGB frame whose content tells its number (a bright bar at row 2k) over a texture."""
    yy, xx = np.mgrid[0:H, 0:W]
    texture = np.stack([(xx * 2) % 256, (yy * 3) % 256, ((xx + yy) * 2) % 256], -1)
    frame: NDArray[np.uint8] = texture.astype(np.uint8)
    frame[(2 * k) % H : (2 * k) % H + 2] = 255
    return frame


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-frame clip written like prepared clips are (one keyframe a second)."""
    path = tmp_path_factory.mktemp("io") / "clip.mp4"
    with media.VideoWriter(path, W, H, FPS, crf=10, preset="veryfast") as writer:
        for k in range(30):
            writer.write(numbered_frame(k))
    return path


@pytest.fixture(scope="module")
def decoded(clip: Path) -> list[NDArray[np.uint8]]:
    """Every frame of the clip, decoded straight through by PyAV."""
    with av.open(str(clip)) as container:
        return [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]


def test_pingpong_reads_every_frame_in_back_and_forth_order(
    clip: Path, decoded: list[NDArray[np.uint8]]
) -> None:
    n_out = 100  # forward 0-29, back 28-1, forward 0-29, back 28-16
    got = list(iter_pingpong(clip, 30, n_out, FPS))
    assert [i for i, _ in got] == [media.pingpong_index(i, 30) for i in range(n_out)]
    for index, frame in got:
        assert np.array_equal(frame, decoded[index]), index
    assert len({id(frame) for _, frame in got}) == n_out  # each frame is the caller's own


def test_decoded_frames_copy_into_an_i420_array_plane_by_plane(
    clip: Path, decoded: list[NDArray[np.uint8]]
) -> None:
    # At this width the chroma rows are padded (line size > 48): the copy must skip the padding.
    out = np.full_like(decoded[0], 7)
    for index, frame in iter_pingpong_frames(clip, 30, 60, FPS):
        assert frame.planes[1].line_size > W // 2
        copy_i420(frame, out)
        assert np.array_equal(out, decoded[index]), index


def test_a_track_longer_than_the_clip_repeats_its_last_frame(
    clip: Path, decoded: list[NDArray[np.uint8]]
) -> None:
    got = list(iter_pingpong(clip, 33, 33, FPS))
    assert len(got) == 33
    assert all(np.array_equal(frame, decoded[29]) for _, frame in got[30:])


def test_box_to_rgb_matches_a_full_frame_conversion(decoded: list[NDArray[np.uint8]]) -> None:
    frame = decoded[5]
    full = cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_I420)
    box = even_box((13, 7, 61, 50), W, H)
    assert box == (12, 6, 62, 50)
    x1, y1, x2, y2 = box
    assert np.array_equal(roi_to_rgb(frame, box, W, H), full[y1:y2, x1:x2])


def test_write_back_touches_only_the_masked_pixels_and_chroma_blocks(
    decoded: list[NDArray[np.uint8]],
) -> None:
    frame = decoded[3].copy()
    source = frame.copy()
    box = (20, 10, 60, 40)
    alpha = np.zeros((30, 40), np.float32)
    alpha[11:19, 15:25] = 0.5  # odd rows/columns: partial chroma blocks
    write_roi(frame, np.zeros((30, 40, 3), np.uint8), alpha, box, W, H)
    y, u, v = planes(frame, W, H)
    sy, su, sv = planes(source, W, H)
    luma = np.zeros((H, W), bool)
    luma[21:29, 35:45] = True
    assert np.array_equal(y[~luma], sy[~luma]) and (y[luma] != sy[luma]).all()
    chroma = np.zeros((H // 2, W // 2), bool)
    chroma[10:15, 17:23] = True
    assert np.array_equal(u[~chroma], su[~chroma]) and np.array_equal(v[~chroma], sv[~chroma])


def test_writer_encodes_i420_frames(tmp_path: Path, decoded: list[NDArray[np.uint8]]) -> None:
    out = tmp_path / "out.mp4"
    audio = np.zeros(48000, np.float32)
    with I420Writer(out, W, H, FPS, audio=audio, crf=10, preset="veryfast") as writer:
        for frame in decoded:
            writer.write(frame)
    info = media.probe(out)
    assert (info.width, info.height, info.frames, info.has_audio) == (W, H, 30, True)
    with av.open(str(out)) as container:
        again = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
    error = np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(again, decoded, strict=True)])
    assert error < 2.0
