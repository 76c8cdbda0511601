"""Photo avatars stay alive: blinks at natural intervals, and a head that moves on its own."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

from engines.lipsync.avatar_prep import load_photo
from engines.lipsync.demo_assets import make_demo_avatar
from engines.lipsync.facetrack import FaceMesh, FaceTrack
from engines.lipsync.idle import BLINK_GAP_S, BLINK_S, blink_amounts, head_mask, head_motion
from engines.lipsync.landmark import LandmarkEngine
from engines.media import video as media
from jayavatar.settings import Settings

pytestmark = [pytest.mark.env("lipsync"), pytest.mark.timeout(300)]
FPS = 25


@pytest.fixture(scope="module")
def photo_avatar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo face at 384x384, prepared once for the module."""
    root = tmp_path_factory.mktemp("photo")
    photo = make_demo_avatar(root / "face.png", side=384)
    LandmarkEngine(Settings(_env_file=None)).prepare(photo, root / "prepared")
    return root / "prepared"


def peaks(amounts: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Frames where a blink is fully shut."""
    return np.flatnonzero(amounts >= 1.0)


def test_blinks_come_every_two_to_six_seconds_and_are_brief() -> None:
    amounts = blink_amounts(seed=7, frames=120 * FPS, fps=FPS)
    gaps = np.diff(peaks(amounts)) / FPS
    assert len(gaps) > 15
    # Centred on frames, a gap may round by a frame either way.
    assert gaps.min() >= BLINK_GAP_S[0] - 1 / FPS and gaps.max() <= BLINK_GAP_S[1] + 1 / FPS
    assert gaps.std() > 0.5  # irregular, as people blink
    # Each blink touches only the frames within BLINK_S / 2 of its middle.
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, amounts > 0, 0])))[::2]
    assert runs.max() <= round(BLINK_S * FPS)


def test_blinks_repeat_for_a_seed_and_differ_between_seeds() -> None:
    a = blink_amounts(seed=1, frames=30 * FPS, fps=FPS)
    assert np.array_equal(a, blink_amounts(seed=1, frames=30 * FPS, fps=FPS))
    assert not np.array_equal(peaks(a), peaks(blink_amounts(seed=2, frames=30 * FPS, fps=FPS)))


def eye_aperture(lm: npt.NDArray[np.float32]) -> float:
    """Both eyes' lid gap (159-145, 386-374) over their width (33-133, 263-362), averaged."""
    left = np.linalg.norm(lm[159] - lm[145]) / np.linalg.norm(lm[133] - lm[33])
    right = np.linalg.norm(lm[386] - lm[374]) / np.linalg.norm(lm[362] - lm[263])
    return float(left + right) / 2


def test_a_photo_avatar_blinks(photo_avatar: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sf.write(tmp_path / "speech.wav", 0.01 * rng.standard_normal(5 * 16_000), 16_000)
    out = tmp_path / "out.mp4"
    engine = LandmarkEngine(Settings(_env_file=None))
    stats = engine.render(photo_avatar, tmp_path / "speech.wav", out, lambda f, p: None, {})
    blinks = stats["blink_frames"]
    assert len(blinks) >= 1
    frames = list(media.iter_frames(out))
    with FaceMesh(video=False) as mesh:
        found = [mesh.landmarks(f) for f in frames]
    aperture = np.array([np.nan if lm is None else eye_aperture(lm) for lm in found])
    near = np.zeros(len(frames), bool)
    for b in blinks:
        near[max(0, b - 3) : b + 4] = True
    open_eyes = float(np.nanmedian(aperture[~near]))
    # FaceMesh never reads a shut eye as fully shut, but it sees the lids come down.
    assert all(aperture[b] < 0.85 * open_eyes for b in blinks), (aperture[blinks], open_eyes)


def test_head_motion_moves_the_head_and_nothing_outside_its_mask(tmp_path: Path) -> None:
    photo = load_photo(make_demo_avatar(tmp_path / "face.png", side=256))
    with FaceMesh(video=False) as mesh:
        lm = mesh.landmarks(photo)
    assert lm is not None
    mask = head_mask(lm, 256, 256)
    outside = mask == 0
    assert 0.1 < 1 - outside.mean() < 0.7  # the head, not the whole picture
    frames = list(head_motion(photo, lm, FPS, 4 * FPS))
    for frame in frames:
        assert np.array_equal(frame[outside], photo[outside])
    moved = max(float(np.abs(f.astype(int) - photo.astype(int))[~outside].mean()) for f in frames)
    assert moved > 1.0


def test_a_photo_avatars_clip_keeps_its_background_still(photo_avatar: Path) -> None:
    track = FaceTrack.load(photo_avatar / "track.npz")
    clip = list(media.iter_frames(photo_avatar / "clip.mp4"))
    mask = head_mask(track.landmarks[0], track.width, track.height)
    # Room for the head's motion and for the codec's blocks at the mask's edge.
    grown = cv2.dilate((mask > 0).astype(np.uint8), np.ones((41, 41), np.uint8)) > 0
    first = clip[0].astype(np.float32)
    worst = max(float(np.abs(f.astype(np.float32) - first)[~grown].mean()) for f in clip)
    head = max(float(np.abs(f.astype(np.float32) - first)[mask >= 1].mean()) for f in clip)
    # Outside the head only the codec's noise (a keyframe a second) differs, no motion.
    assert worst < 2.0 and head > 4 * worst, (worst, head)
