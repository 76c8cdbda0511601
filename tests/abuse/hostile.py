"""Hostile uploads that try to make FFmpeg read other files, or to buy memory and minutes.

Pure Python, so every test environment can build them; the 4K video comes from
`tests.abuse.make_media` (PyAV) and is cached.
"""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

from tests.support.assets import CACHE
from tests.support.stack import ROOT, env_python

#: An ID3v2 tag with no frames: FFmpeg skips such a tag before it guesses a format.
ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"
#: An ISO `ftyp` box: sniffs as MP4.
FTYP = b"\x00\x00\x00\x14ftypisom\x00\x00\x02\x00isom"


def hls(*segments: str) -> bytes:
    """An HLS playlist whose segments are the given paths."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2"]
    for segment in segments:
        lines += ["#EXTINF:2.0,", segment]
    return ("\n".join([*lines, "#EXT-X-ENDLIST", ""])).encode()


def ffconcat(*paths: str) -> bytes:
    """A concat-demuxer script listing the given files."""
    return ("ffconcat version 1.0\n" + "".join(f"file '{p}'\n" for p in paths)).encode()


def tricks(canary: Path, relative: str) -> list[tuple[str, str, bytes]]:
    """(case, file name as sent, bytes) of every file-reading trick aimed at `canary`.

    `relative` reaches the canary from an upload's folder in storage (`../../avatars/...`).
    """
    absolute = str(canary)
    return [
        ("HLS playlist, relative path", "clip.m3u8", hls(relative)),
        ("HLS playlist, absolute path", "clip.m3u8", hls(absolute)),
        ("HLS playlist named .mp4", "clip.mp4", hls(relative, absolute)),
        ("ffconcat script", "clip.ffconcat", ffconcat(absolute)),
        ("concat script named .mkv", "clip.mkv", ffconcat(relative)),
        ("HLS playlist behind an ID3 tag", "song.mp3", ID3 + hls(relative, absolute)),
        ("playlist in an MP4 box", "clip.mp4", FTYP + hls(relative, absolute)),
        ("file URL in a playlist", "clip.m3u8", hls(f"file://{absolute}")),
    ]


def png_bomb(side: int = 16_000) -> bytes:
    """A real 16-bit RGBA PNG of `side` x `side` black pixels (2 GB decoded) in about 2 MB.

    Built without compressing 2 GB: each row is deflated alone after a full flush, so every row
    compresses to the same bytes, which are repeated.
    """
    row = b"\0" * (1 + side * 8)  # filter byte, then 4 channels x 2 bytes per pixel
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflater.compress(row) + deflater.flush(zlib.Z_FULL_FLUSH)
    tail = deflater.flush(zlib.Z_FINISH)
    # Adler-32 of n zero bytes: a stays 1, b adds 1 per byte.
    total = len(row) * side
    adler = ((total % 65521) << 16) | 1
    idat = b"\x78\xda" + block * side + tail + struct.pack(">I", adler)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def cached(kind: str, suffix: str) -> Path:
    """A file from `tests.abuse.make_media`, made once per machine."""
    out = CACHE / f"hostile-{kind}{suffix}"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f"{out.stem}.part{suffix}")
        cmd = [str(env_python("lipsync")), "-m", "tests.abuse.make_media", kind, str(tmp)]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=300)
        tmp.replace(out)
    return out
