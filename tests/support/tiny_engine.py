"""A tiny voice engine that exists only to show that an engine is its code plus one table row.

It "speaks" a tone per character into a WAV and loads a one-line model file strictly.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path
from typing import Any

from engines.base import ProgressFn
from jayavatar.catalog import Engine, Model, ModelFile
from jayavatar.errors import BadInput, ModelMissing
from jayavatar.settings import Settings

MAGIC = b"tone-table v1\n"
RATE = 8000

#: The one row that registers this engine.
ROW = Engine(
    name="tone",
    kind="voice",
    target="tests.support.tiny_engine:ToneEngine",
    env="core",
    device="CPU",
    languages=("en", "eo"),
    models=(
        Model(
            name="tone_table",
            licence="CC0",
            licence_url="https://creativecommons.org/publicdomain/zero/1.0/",
            files=(ModelFile("tone/table.bin", None, min_size=len(MAGIC)),),
            how_to_get="`jayavatar models import tone_table FILE`",
            check="tests.support.tiny_engine:verify_table",
        ),
    ),
)


def verify_table(path: Path, fix: str) -> str:
    """Load the tone table strictly: the magic line, then one byte per letter a-z."""
    data = path.read_bytes() if path.is_file() else b""
    if not data.startswith(MAGIC) or len(data) != len(MAGIC) + 26:
        raise ModelMissing(f"{path} is not a tone table{fix}")
    return "tone table ok"


class ToneEngine:
    """Speaks each letter as a short tone whose pitch comes from the model file."""

    name = "tone"

    def __init__(self, settings: Settings) -> None:
        self.path = settings.models_dir / "tone" / "table.bin"
        self.table: bytes = b""

    def load(self) -> None:
        """Load the table strictly (the registry calls this at worker start)."""
        verify_table(self.path, "; fix: `jayavatar models import tone_table FILE`")
        self.table = self.path.read_bytes()[len(MAGIC) :]

    def enroll(self, sample: Path, out_dir: Path) -> dict[str, Any]:
        """Every sample is fine: the tone voice ignores it."""
        return {"speech_s": 0.0}

    def synthesize(
        self, text: str, language: str, voice_dir: Path, out_wav: Path, progress: ProgressFn
    ) -> float:
        """Write one 50 ms tone per letter; return the seconds written."""
        letters = [c for c in text.lower() if "a" <= c <= "z"]
        if not letters:
            raise BadInput("nothing to say")
        samples = bytearray()
        for letter in letters:
            pitch = 200 + 10 * self.table[ord(letter) - ord("a")]
            for i in range(RATE // 20):
                value = int(8000 * math.sin(2 * math.pi * pitch * i / RATE))
                samples += struct.pack("<h", value)
        with wave.open(str(out_wav), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(RATE)
            out.writeframes(bytes(samples))
        progress(1.0, "write")
        return len(letters) / 20
