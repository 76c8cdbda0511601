"""Input files for tests: the demo assets (built once, cached) and deliberately bad files."""

from __future__ import annotations

import math
import random
import struct
import subprocess
import wave
import zlib
from pathlib import Path

from tests.support.stack import ROOT, env_python

CACHE = ROOT / ".data" / "test-assets"


def demo_inputs() -> tuple[Path, Path]:
    """Return the demo voice sample and avatar photo, building them once per machine."""
    from cli.demo import demo_assets
    from jayavatar.settings import Settings

    return demo_assets(Settings(data_dir=ROOT / ".data"))


def face_clip(seconds: float = 2.0, side: int = 256) -> Path:
    """Return a short real-face video (the demo portrait, gently moving), built once."""
    out = CACHE / f"face-{seconds:g}s-{side}.mp4"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        code = (
            "import sys; from pathlib import Path; "
            "from engines.lipsync.demo_assets import make_face_clip; "
            "make_face_clip(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]))"
        )
        tmp = out.with_name(f"{out.stem}.part.mp4")
        subprocess.run(
            [str(env_python("lipsync")), "-c", code, str(tmp), str(seconds), str(side)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        tmp.replace(out)
    return out


def wav(path: Path, seconds: float, kind: str = "tone", rate: int = 16_000) -> Path:
    """Write a mono 16-bit WAV: a warbling 'tone', 'silence' or white 'noise'."""
    rng = random.Random(1)
    frames = bytearray()
    for i in range(int(seconds * rate)):
        t = i / rate
        if kind == "silence":
            value = 0.0
        elif kind == "noise":
            value = rng.uniform(-0.5, 0.5)
        else:
            value = 0.3 * math.sin(2 * math.pi * (140 + 30 * math.sin(3 * t)) * t)
        frames += struct.pack("<h", int(value * 32767))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return path


def png(path: Path, width: int = 320, height: int = 240) -> Path:
    """Write a smooth gradient PNG (an image with no face in it)."""
    raw = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))
        for y in range(height)
    )

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def garbage(path: Path, size: int = 4096) -> Path:
    """Write random bytes (a file that lies about its type through its name)."""
    path.write_bytes(random.Random(2).randbytes(size))
    return path
