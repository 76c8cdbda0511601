"""Hostile media through enrollment, decoded by the real workers on the offline engines.

Each file is refused with a clear one-line reason: the request fails, no voice or avatar is
registered, and no file of it stays in storage. Big-looking files are made small (header tricks,
flat frames), so nothing large is ever written.
"""

from __future__ import annotations

import asyncio
import struct
import subprocess
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jayavatar.errors import BadInput
from tests.abuse.discord import wav_bytes, zip_bomb
from tests.abuse.store import files, one_line
from tests.support.assets import face_clip, wav
from tests.support.stack import ROOT, env_python

pytestmark = pytest.mark.timeout(600)
Make = Callable[[Path], Path]


def made(kind: str, suffix: str) -> Make:
    """A file from `tests.abuse.make_media` (PyAV lives in the lipsync environment)."""

    def make(tmp: Path) -> Path:
        out = tmp / f"{kind}{suffix}"
        cmd = [str(env_python("lipsync")), "-m", "tests.abuse.make_media", kind, str(out)]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
        return out

    return make


def raw(name: str, data: Callable[[], bytes]) -> Make:
    """A file with the given bytes."""

    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(data())
        return tmp / name

    return make


def truncated_clip() -> bytes:
    """The first 40 % of a real face clip."""
    data = face_clip().read_bytes()
    return data[: len(data) * 2 // 5]


def png_bomb() -> bytes:
    """A PNG header promising 40000 x 40000 RGB pixels (4.8 GB decoded) with almost no data."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


VOICES: list[tuple[str, Make, str]] = [
    ("pure silence", lambda t: wav(t / "silence.wav", 4, "silence"), "silent"),
    ("pure noise", lambda t: wav(t / "noise.wav", 4, "noise"), "no voice"),
    (
        "WAV header claiming 2 hours",
        raw("long.wav", lambda: wav_bytes(3.0, claim_s=7200)),
        "truncated",
    ),
    ("WAV cut short", raw("cut.wav", lambda: wav_bytes(10.0)[:8000]), "truncated"),
    ("zip bomb named .wav", raw("bomb.wav", zip_bomb), "not"),
    ("text named .mp3", raw("notes.mp3", lambda: b"meeting notes\n" * 300), "not"),
]
AVATARS: list[Any] = [
    ("video without a face", made("noface", ".mp4"), "face"),
    ("8K video", made("8k", ".mp4"), "pixels"),
    ("2-hour video", made("2h", ".mp4"), "120 s"),
    ("truncated MP4", raw("cut.mp4", truncated_clip), "truncated"),
    ("PNG decompression bomb", raw("bomb.png", png_bomb), "40000x40000"),
    ("GIF named .mp4", raw("clip.mp4", lambda: made_gif_bytes()), "unrecognised content"),
]


def _ids(cases: list[Any]) -> list[str]:
    return [c.values[0] if hasattr(c, "values") else c[0] for c in cases]


def made_gif_bytes() -> bytes:
    """A tiny real GIF (a still image, no face)."""
    from tests.abuse.discord import still_gif

    return still_gif()


def stored(root: Path) -> list[str]:
    """Return the files in storage (temp work of running jobs aside)."""
    return [f for f in files(root) if (root / f).is_file() and not f.startswith(".tmp")]


async def refused(client: Any, kind: str, make: Make, tmp: Path, words: str) -> None:
    """Enroll a hostile file; check the one-line refusal (by the upload gate, or by the worker)
    and that nothing of it stays."""
    store_root = client.settings.data_dir / "store"
    before = stored(store_root)
    submit = client.submit_voice_enroll if kind == "voice" else client.submit_avatar_enroll
    name = f"bad-{uuid.uuid4().hex[:8]}"
    try:
        req = await submit("abuser", name, make(tmp))
    except BadInput as exc:  # the gate looked at the first bytes and headers
        assert one_line(str(exc)) and words in str(exc).lower(), exc
        assert stored(store_root) == before
        return
    done = await client.wait(req.id, 240)
    assert (done.state, done.refused) == ("failed", True), (done.state, done.result)
    assert one_line(done.error) and words in done.error.lower(), done.error
    assert await client.accounts.get_asset(kind, "abuser", name) is None
    # The worker removes the upload right after announcing the failure.
    for _ in range(100):
        if not client.storage.exists(f"uploads/{req.id}"):
            break
        await asyncio.sleep(0.1)
    after = stored(store_root)
    assert after == before


@pytest.mark.parametrize(("case", "make", "words"), VOICES, ids=[c[0] for c in VOICES])
async def test_hostile_voice_sample(
    client: Any, tmp_path: Path, case: str, make: Make, words: str
) -> None:
    await refused(client, "voice", make, tmp_path, words)


@pytest.mark.parametrize(("case", "make", "words"), AVATARS, ids=_ids(AVATARS))
async def test_hostile_avatar_media(
    client: Any, tmp_path: Path, case: str, make: Make, words: str
) -> None:
    await refused(client, "avatar", make, tmp_path, words)
