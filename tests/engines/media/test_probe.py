"""Probing: what a media file holds, and a clear `BadInput` for anything that is not media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engines.media.probe import probe
from jayavatar.errors import BadInput
from tests.engines.media.test_video import FPS, write_levels

pytestmark = pytest.mark.env("lipsync")


def test_probe_video_and_images(tmp_path: Path) -> None:
    info = probe(write_levels(tmp_path / "v.mp4", 30))
    assert (info.kind, info.width, info.height, info.frames) == ("video", 64, 48, 30)
    assert info.fps == pytest.approx(FPS)
    assert info.duration_s == pytest.approx(30 / FPS, abs=0.05)
    import cv2

    for ext in ("jpg", "png", "webp"):
        path = tmp_path / f"p.{ext}"
        cv2.imwrite(str(path), np.full((40, 60, 3), 128, np.uint8))
        info = probe(path)
        assert (info.kind, info.width, info.height) == ("image", 60, 40), ext


def test_probe_audio(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", np.zeros(8000, np.float32) + 0.01, 16000)
    info = probe(tmp_path / "a.wav")
    assert (info.kind, info.audio_rate) == ("audio", 16000)
    assert info.duration_s == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.mp4", b"", "empty"),
        ("text.mp4", b"hello, this is not a video\n" * 50, "not a"),
        ("noise.png", bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)), None),
    ],
    ids=["empty", "text-as-mp4", "noise-as-png"],
)
def test_probe_rejects_garbage(
    tmp_path: Path, name: str, content: bytes, message: str | None
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInput, match=message):
        probe(path)


def test_probe_rejects_a_truncated_mp4(tmp_path: Path) -> None:
    full = write_levels(tmp_path / "v.mp4", 30).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full[: len(full) // 8])
    with pytest.raises(BadInput):
        probe(cut)


def test_probe_rejects_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        probe(tmp_path / "nope.mp4")
