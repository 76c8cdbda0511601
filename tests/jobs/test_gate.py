"""The upload gate: declared size and type, the streaming cap, and content sniffed by its bytes."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engines.media.sniff import image_size, sniff_bytes
from jayavatar.errors import BadInput
from jayavatar.settings import Settings
from jobs.gate import TooLarge, admit, check_declared, receive
from tests.support.assets import png, wav


def test_declared_type_and_size_are_checked_before_download() -> None:
    settings = Settings()
    check_declared("voice", settings, "me.wav", 1000, "audio/x-wav")
    check_declared("voice", settings, "me.bin", 1000, "application/octet-stream")
    with pytest.raises(BadInput, match="is image/png, not a voice sample"):
        check_declared("voice", settings, "me.wav", 1000, "image/png")
    with pytest.raises(TooLarge, match=r"is 26 MiB; the limit is 25 MiB"):
        check_declared("voice", settings, "me.wav", 26 * 2**20, "audio/wav")
    with pytest.raises(BadInput, match="is empty"):
        check_declared("avatar", settings, "me.mp4", 0, None)


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"\x00\x00\x00\x18ftypisom", "mp4"),
        (b"\x00\x00\x00\x08wide\x00\x00", "mp4"),
        (b"\x1aE\xdf\xa3\x01", "matroska"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"ID3\x04", "mp3"),
        (b"\xff\xfb\x90\x00", "mp3"),
        (b"OggS\x00", "ogg"),
        (b"fLaC\x00", "flac"),
    ],
)
def test_sniff_names_containers_by_their_first_bytes(head: bytes, name: str) -> None:
    found = sniff_bytes(head)
    assert found is not None and found.name == name


@pytest.mark.parametrize(
    "head",
    [
        b"hello world",
        b"#EXTM3U\n#EXT-X-VERSION:3\n",
        b"ffconcat version 1.0\nfile /etc/passwd\n",
        b"\xff\xf1\x50\x80",  # ADTS AAC: not on the list
        b"GIF89a\x01\x00",
        b"PK\x03\x04",
        b"",
    ],
)
def test_sniff_knows_nothing_else(head: bytes) -> None:
    assert sniff_bytes(head) is None


def test_content_must_match_the_kind_and_wav_length_is_checked(tmp_path: Path) -> None:
    settings = Settings()
    assert admit("voice", settings, wav(tmp_path / "ok.wav", 3.0), "ok.wav").ext == "wav"
    with pytest.raises(BadInput, match=r"short\.wav is 1\.0 s long; at least 2 s needed"):
        admit("voice", settings, wav(tmp_path / "short.wav", 1.0), "short.wav")
    with pytest.raises(BadInput, match=r"p\.wav is not a voice sample \(png content\)"):
        admit("voice", settings, png(tmp_path / "p.png"), "p.wav")
    assert admit("avatar", settings, png(tmp_path / "face.png"), "face.mp4").ext == "png"
    with pytest.raises(BadInput, match=r"not an avatar video or photo \(wav content\)"):
        admit("avatar", settings, tmp_path / "ok.wav", "x")


def test_image_sizes_come_from_headers(tmp_path: Path) -> None:
    settings = Settings()
    path = png(tmp_path / "p.png", 64, 48)
    found = sniff_bytes(path.read_bytes()[:64])
    assert found is not None and image_size(path, found) == (64, 48)
    huge = bytearray(path.read_bytes())
    huge[16:24] = struct.pack(">II", 16_000, 16_000)
    (tmp_path / "bomb.png").write_bytes(huge)
    with pytest.raises(BadInput, match="16000x16000"):
        admit("avatar", settings, tmp_path / "bomb.png", "bomb.png")


async def _chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"\0" * size


async def test_receive_stops_at_the_cap(tmp_path: Path) -> None:
    assert await receive(_chunks(4, 100), tmp_path / "a", 400, "a") == 400
    with pytest.raises(TooLarge, match="larger than 399 bytes"):
        await receive(_chunks(4, 100), tmp_path / "b", 399, "b")
    assert (tmp_path / "b").stat().st_size == 300


def test_jpeg_and_webp_sizes_come_from_headers(tmp_path: Path) -> None:
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    exif = b"\xff\xe1\x00\x08Exif\x00\x00"
    sof = b"\xff\xc2\x00\x11\x08" + struct.pack(">HH", 4000, 6000) + b"\x03" + b"\x00" * 9
    jpeg = tmp_path / "p.jpg"
    jpeg.write_bytes(b"\xff\xd8" + app0 + exif + sof + b"\xff\xd9")
    webp = tmp_path / "p.webp"
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4
    webp.write_bytes(b"RIFF\x00\x00\x00\x00WEBP" + vp8x + (639).to_bytes(3, "little") * 2)
    for path, size in ((jpeg, (6000, 4000)), (webp, (640, 640))):
        found = sniff_bytes(path.read_bytes()[:64])
        assert found is not None and image_size(path, found) == size
    with pytest.raises(BadInput, match="6000x4000; at most 8,294,400 pixels"):
        admit("avatar", Settings(), jpeg, "p.jpg")
