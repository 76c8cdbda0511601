"""Face track: FaceMesh landmarks on a real face, gap bridging, smoothing, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.lipsync import facetrack
from engines.lipsync.avatar_prep import photo_motion
from engines.lipsync.demo_assets import astronaut_portrait

pytestmark = pytest.mark.env("lipsync")


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """The demo face at a small size."""
    return astronaut_portrait(256)


def test_facemesh_finds_the_face_with_sane_geometry(portrait: np.ndarray) -> None:
    with facetrack.FaceMesh(video=False) as mesh:
        lm = mesh.landmarks(portrait)
    assert lm is not None and lm.shape == (478, 2) and lm.dtype == np.float32
    assert (lm >= 0).all() and (lm < 256).all()
    eyes_y = (lm[facetrack.IRIS_A, 1] + lm[facetrack.IRIS_B, 1]) / 2
    assert eyes_y < lm[facetrack.NOSE_TIP, 1] < lm[facetrack.INNER_UPPER_MID, 1]
    assert lm[facetrack.INNER_LOWER_MID, 1] < lm[facetrack.CHIN, 1]
    assert lm[facetrack.MOUTH_LEFT, 0] < lm[facetrack.MOUTH_RIGHT, 0]
    assert 20 < facetrack.face_scale(lm) < 120
    assert 0 <= facetrack.lip_aperture(lm) < 1


def test_no_face_gives_none() -> None:
    with facetrack.FaceMesh(video=False) as mesh:
        assert mesh.landmarks(np.full((128, 128, 3), 90, np.uint8)) is None


def test_track_marks_faceless_frames_and_bridges_short_dropouts(portrait: np.ndarray) -> None:
    blank = np.full_like(portrait, 100)
    frames = [portrait] * 6 + [blank] * 2 + [portrait] * 6 + [blank] * 12 + [portrait] * 4
    track = facetrack.track_frames(frames, fps=25)
    assert len(track) == len(frames)
    # The two-frame dropout is bridged; the twelve-frame stretch without a face is not.
    assert track.present[:14].all()
    assert not track.present[14:26].any()
    assert track.present[26:].all()
    assert (track.landmarks[14:26] == 0).all() and (track.boxes[14:26] == 0).all()
    assert track.face_frames == 18


def test_track_boxes_follow_motion_without_lag_and_with_less_jitter(portrait: np.ndarray) -> None:
    frames = list(photo_motion(portrait, fps=25, frames=50))
    with facetrack.FaceMesh(video=True) as mesh:
        raw = np.stack([mesh.landmarks(f) for f in frames])  # type: ignore[misc]
    track = facetrack.track_frames(frames, fps=25)
    assert track.present.all()
    assert track.boxes.dtype == np.int32 and track.boxes.shape == (50, 4)
    raw_centre = raw.mean(axis=1)
    box_centre = (track.boxes[:, :2] + track.boxes[:, 2:]) / 2
    # Centred smoothing: no systematic offset along the motion (a lagging filter would trail).
    lag = np.mean((box_centre - box_centre.mean(0)) - (raw_centre - raw_centre.mean(0)), axis=0)
    assert np.abs(lag).max() < 1.0
    smooth_jitter = np.abs(np.diff(track.landmarks.mean(axis=1), n=2, axis=0)).mean()
    raw_jitter = np.abs(np.diff(raw_centre, n=2, axis=0)).mean()
    assert smooth_jitter < raw_jitter


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 7
    track = facetrack.FaceTrack(
        fps=25.0,
        width=320,
        height=240,
        present=rng.random(n) > 0.3,
        boxes=rng.integers(0, 200, (n, 4)).astype(np.int32),
        landmarks=rng.random((n, 478, 2)).astype(np.float32) * 200,
    )
    track.save(tmp_path / "track.npz")
    back = facetrack.FaceTrack.load(tmp_path / "track.npz")
    assert (back.fps, back.width, back.height) == (25.0, 320, 240)
    assert np.array_equal(back.present, track.present)
    assert np.array_equal(back.boxes, track.boxes)
    assert np.array_equal(back.landmarks, track.landmarks)
    assert not list(tmp_path.glob("*.tmp*"))


def test_bridge_gaps_interpolates_linearly() -> None:
    present = np.array([True, False, False, True, False, False, False, False, False, False, True])
    lm = np.zeros((11, 478, 2), np.float32)
    lm[0], lm[3], lm[10] = 0.0, 30.0, 50.0
    filled, out = facetrack.bridge_gaps(present, lm, max_gap=5)
    assert filled[:4].all() and not filled[4:10].any()
    assert out[1, 0, 0] == pytest.approx(10.0) and out[2, 0, 0] == pytest.approx(20.0)


def test_segments() -> None:
    present = np.array([False, True, True, False, True])
    assert facetrack.segments(present) == [(1, 3), (4, 5)]
    assert facetrack.segments(np.zeros(3, bool)) == []
