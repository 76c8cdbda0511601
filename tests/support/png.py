"""Read a PNG fully without an imaging library: every chunk's CRC, the pixel data, the text.

The core environment has no Pillow; this decodes enough to tell a whole, valid picture from a
truncated or corrupt file: the IDAT stream must inflate to exactly one filter byte plus one row
of pixels per line.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Bytes per pixel by PNG colour type, at 8 bits per sample.
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


@dataclass(frozen=True)
class Png:
    """What a decoded PNG holds."""

    width: int
    height: int
    channels: int
    text: dict[str, str]


def read_png(path: Path) -> Png:
    """Decode a PNG (8-bit, non-interlaced); raise ValueError if any part of it is wrong."""
    data = path.read_bytes()
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG")
    pos, idat, text, header = len(SIGNATURE), b"", {}, None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"bad CRC in chunk {kind!r}")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            text[key.decode("latin-1")] = value.decode("latin-1")
        pos += 12 + length
        if kind == b"IEND":
            break
    if header is None:
        raise ValueError("no IHDR chunk")
    width, height, depth, colour, _c, _f, interlace = header
    if depth != 8 or interlace or colour not in CHANNELS:
        raise ValueError(f"unsupported PNG: depth {depth}, colour {colour}, interlace {interlace}")
    pixels = zlib.decompress(idat)
    if len(pixels) != height * (1 + width * CHANNELS[colour]):
        raise ValueError("pixel data does not match the size")
    return Png(width, height, CHANNELS[colour], text)
