"""What an uploaded file really is, from its first bytes: container type, and image size.

Pure Python (no FFmpeg), so the fronts can refuse a file before it is stored and the workers
can pick the one demuxer to open it with. The user's file name and extension are never trusted:
FFmpeg chooses a demuxer from content *and* name, and some demuxers (HLS playlists, concat
scripts) open other files.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: How much of a file `sniff` looks at.
HEAD_BYTES = 64
#: JPEG metadata (EXIF, ICC) may come before the frame header; stop looking after this much.
JPEG_SCAN_BYTES = 4 * 2**20


@dataclass(frozen=True)
class Sniffed:
    """A recognised container: its short name, the extension it is stored under, its demuxer."""

    name: str
    ext: str
    demuxer: str
    still: bool = False


#: Every container JayAvatar accepts, by the name `sniff` gives it.
KNOWN = {
    "wav": Sniffed("wav", "wav", "wav"),
    "flac": Sniffed("flac", "flac", "flac"),
    "mp3": Sniffed("mp3", "mp3", "mp3"),
    "ogg": Sniffed("ogg", "ogg", "ogg"),
    "mp4": Sniffed("mp4", "mp4", "mov"),
    "matroska": Sniffed("matroska", "mkv", "matroska"),
    "jpeg": Sniffed("jpeg", "jpg", "jpeg_pipe", still=True),
    "png": Sniffed("png", "png", "png_pipe", still=True),
    "webp": Sniffed("webp", "webp", "webp_pipe", still=True),
}
#: Top-level QuickTime atoms an old .mov may start with instead of `ftyp`.
_MOV_ATOMS = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")


def sniff_bytes(head: bytes) -> Sniffed | None:
    """Return the container the first bytes announce, or None if it is none JayAvatar accepts."""
    if head[:4] == b"RIFF":
        return {b"WAVE": KNOWN["wav"], b"WEBP": KNOWN["webp"]}.get(head[8:12])
    for magic, name in (
        (b"fLaC", "flac"),
        (b"OggS", "ogg"),
        (b"\x1aE\xdf\xa3", "matroska"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff", "jpeg"),
        (b"ID3", "mp3"),
    ):
        if head.startswith(magic):
            return KNOWN[name]
    if head[4:8] in _MOV_ATOMS and int.from_bytes(head[:4], "big") >= 8:
        return KNOWN["mp4"]
    if _mpeg_audio_sync(head):
        return KNOWN["mp3"]
    return None


def _mpeg_audio_sync(head: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, a real layer (ADTS AAC has layer 0)."""
    if len(head) < 2 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    return version != 1 and layer != 0


def sniff(path: Path) -> Sniffed | None:
    """Return the container of the file at `path`, or None."""
    with path.open("rb") as fh:
        return sniff_bytes(fh.read(HEAD_BYTES))


def image_size(path: Path, kind: Sniffed) -> tuple[int, int] | None:
    """Return (width, height) from a still image's header without decoding it, or None."""
    with path.open("rb") as fh:
        if kind.name == "png":
            head = fh.read(24)
            return struct.unpack(">II", head[16:24]) if head[12:16] == b"IHDR" else None
        if kind.name == "webp":
            return _webp_size(fh.read(30))
        if kind.name == "jpeg":
            return _jpeg_size(fh)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        w = int.from_bytes(head[24:27], "little") + 1
        return w, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and len(head) >= 30:
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


#: JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(fh: BinaryIO) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the first frame header."""
    fh.seek(2)
    while fh.tell() < JPEG_SCAN_BYTES:
        marker = fh.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        if marker[1] in (0xD8, 0x01) or 0xD0 <= marker[1] <= 0xD7 or marker[1] == 0xFF:
            fh.seek(-1 if marker[1] == 0xFF else 0, 1)
            continue
        raw = fh.read(2)
        if len(raw) < 2:
            return None
        length = int.from_bytes(raw, "big")
        if marker[1] in _SOF:
            body = fh.read(5)
            return (int.from_bytes(body[3:5], "big"), int.from_bytes(body[1:3], "big"))
        fh.seek(length - 2, 1)
    return None


def wav_header(path: Path) -> tuple[float, int] | None:
    """Return (seconds the WAV's data chunk declares, bytes the RIFF header declares), or None."""
    with path.open("rb") as fh:
        head = fh.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        riff = int.from_bytes(head[4:8], "little") + 8
        byte_rate = 0
        for _ in range(64):
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            tag, size = chunk[:4], int.from_bytes(chunk[4:8], "little")
            if tag == b"fmt ":
                fmt = fh.read(size + (size & 1))
                byte_rate = int.from_bytes(fmt[8:12], "little") if len(fmt) >= 12 else 0
                continue
            if tag == b"data":
                return (size / byte_rate if byte_rate else 0.0), riff
            fh.seek(size + (size & 1), 1)
    return None
