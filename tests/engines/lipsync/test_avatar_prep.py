"""Avatar preparation: photo or video -> normalised clip + face track; bad media is refused."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile as sf

from engines.lipsync import avatar_prep
from engines.lipsync.demo_assets import astronaut_portrait, make_demo_avatar, make_face_clip
from engines.lipsync.facetrack import FaceTrack
from engines.media import video as media
from jayavatar.errors import BadInput
from jayavatar.settings import Settings

pytestmark = pytest.mark.env("lipsync")


def settings(**overrides: object) -> Settings:
    """Settings that ignore the environment and any .env file."""
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def check_prepared(out: Path, meta: dict[str, object]) -> FaceTrack:
    """Assert the contract of a prepared avatar directory and return its track."""
    assert sorted(p.name for p in out.iterdir()) == sorted(avatar_prep.FILES)
    assert json.loads((out / "avatar.json").read_text()) == meta
    with av.open(str(out / "clip.mp4")) as c:
        assert not c.streams.audio
        v = c.streams.video[0]
        assert (v.codec_context.name, v.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert float(v.average_rate) == 25.0
        assert (v.codec_context.width, v.codec_context.height) == (meta["width"], meta["height"])
        assert v.frames == meta["frames"]
    # Encoded for fast decoding (x264 writes its settings into the stream).
    assert b"cabac=0" in (out / "clip.mp4").read_bytes()
    track = FaceTrack.load(out / "track.npz")
    assert len(track) == meta["frames"]
    assert (track.width, track.height, track.fps) == (meta["width"], meta["height"], 25.0)
    assert track.face_frames == meta["face_frames"]
    assert cv2.imread(str(out / "poster.jpg")) is not None
    return track


def test_photo_becomes_a_gently_moving_clip(tmp_path: Path) -> None:
    photo = make_demo_avatar(tmp_path / "me.jpg", side=256)
    meta = avatar_prep.prepare_avatar(photo, tmp_path / "out", settings())
    assert meta["source"] == "photo" and meta["fps"] == 25
    assert 8.0 <= meta["duration_s"] <= 10.0
    track = check_prepared(tmp_path / "out", meta)
    assert track.present.all()
    centres = track.landmarks.mean(axis=1)
    drift = np.ptp(centres, axis=0)
    assert 0.5 < drift.max() < 10  # it moves, subtly (pixels at 256x256)
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.max() < 1.0  # slowly: under a pixel per frame


def test_video_is_resampled_and_scaled_down(tmp_path: Path) -> None:
    face = astronaut_portrait(400)
    canvas = np.full((400, 2000, 3), 200, np.uint8)
    canvas[:, 800:1200] = face
    src = tmp_path / "wide.mp4"
    with media.VideoWriter(src, 2000, 400, 10, preset="ultrafast") as w:
        for _ in range(10):  # 1 s at 10 fps
            w.write(canvas)
    meta = avatar_prep.prepare_avatar(src, tmp_path / "out", settings())
    assert (meta["width"], meta["height"]) == (1920, 384)
    assert meta["frames"] == 25 and meta["source"] == "video"
    check_prepared(tmp_path / "out", meta)


def test_short_face_video(tmp_path: Path) -> None:
    clip = make_face_clip(tmp_path / "face.mp4", seconds=1.0, side=192)
    meta = avatar_prep.prepare_avatar(clip, tmp_path / "out", settings())
    assert meta["frames"] == 25 and meta["face_frames"] == 25
    check_prepared(tmp_path / "out", meta)


def bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected message fragment)."""
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp / "lying.jpg"
    text.write_text("not really a photo\n" * 30)
    grey = tmp / "grey.png"
    cv2.imwrite(str(grey), np.full((200, 200, 3), 127, np.uint8))
    faceless = tmp / "faceless.mp4"
    with media.VideoWriter(faceless, 128, 128, 25, preset="ultrafast") as w:
        for i in range(10):
            w.write(np.full((128, 128, 3), 60 + i, np.uint8))
    audio = tmp / "voice.wav"
    sf.write(audio, np.full(16000, 0.1, np.float32), 16000)
    clip = make_face_clip(tmp / "face.mp4", seconds=1.0, side=128).read_bytes()
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(clip[: len(clip) // 10])
    return {
        "empty": (empty, "empty"),
        "lying-extension": (text, "not"),
        "photo-without-face": (grey, "no face"),
        "video-without-face": (faceless, "no face"),
        "audio-only": (audio, "audio only"),
        "truncated": (truncated, "not|no "),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "lying-extension",
        "photo-without-face",
        "video-without-face",
        "audio-only",
        "truncated",
    ],
)
def test_bad_media_is_refused_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    path, message = bad_files(tmp_path)[case]
    out = tmp_path / "out"
    with pytest.raises(BadInput, match=message) as info:
        avatar_prep.prepare_avatar(path, out, settings())
    assert "\n" not in str(info.value)
    assert not out.exists() or not any(out.iterdir())


def test_limits_on_length_and_pixels(tmp_path: Path) -> None:
    clip = make_face_clip(tmp_path / "face.mp4", seconds=2.0, side=128)
    with pytest.raises(BadInput, match="at most 1 s"):
        avatar_prep.prepare_avatar(clip, tmp_path / "a", settings(max_avatar_s=1.0))
    with pytest.raises(BadInput, match="pixels"):
        avatar_prep.prepare_avatar(clip, tmp_path / "b", settings(max_avatar_pixels=100 * 100))
