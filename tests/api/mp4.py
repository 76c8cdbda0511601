"""Checks that a file is a playable MP4: its box layout here, a full decode in the lipsync env."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Any

from tests.support.stack import ROOT, env_python

# Boxes whose children we walk to find the sample entries.
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta"}


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """Return (type, payload start, payload end) of the boxes in data[start:end]."""
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise AssertionError(f"box {kind!r} at {pos} overruns the file")
        out.append((kind, pos + header, pos + size))
        pos += size
    if pos != end:
        raise AssertionError(f"{end - pos} stray bytes after the last box")
    return out


def box_types(data: bytes) -> set[bytes]:
    """Return every box type reachable through the container boxes, plus sample entry codes."""
    found: set[bytes] = set()

    def walk(start: int, end: int) -> None:
        for kind, lo, hi in boxes(data, start, end):
            found.add(kind)
            if kind in CONTAINERS:
                walk(lo, hi)
            elif kind == b"stsd":
                # Full box header (4) + entry count (4), then sample entries (size + code).
                found.add(data[lo + 12 : lo + 16])

    walk(0, len(data))
    return found


def decode(path: Path) -> dict[str, Any]:
    """Decode every frame with PyAV in the lipsync environment; return what it saw."""
    code = (
        "import av, json, sys\n"
        "c = av.open(sys.argv[1])\n"
        "v = c.streams.video[0]; a = c.streams.audio[0]\n"
        "frames = sum(1 for _ in c.decode(video=0)); c.seek(0)\n"
        "samples = sum(f.samples for f in c.decode(audio=0))\n"
        "print(json.dumps({'frames': frames, 'samples': samples, 'rate': a.rate,\n"
        "  'duration': float(c.duration or 0) / 1e6, 'vcodec': v.codec_context.name,\n"
        "  'acodec': a.codec_context.name, 'width': v.width, 'height': v.height}))\n"
    )
    out = subprocess.run(
        [str(env_python("lipsync")), "-c", code, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
