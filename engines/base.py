"""The engine kinds: what the workers need from a voice engine and a lip-sync engine.

Engines work on local files only; the job layer moves data in and out of storage.
Engines are built once per worker process (see `engines.registry`) and never download anything.
Every method is blocking and CPU/GPU heavy: the worker runs it in a child process it can kill.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

#: Progress callback: (fraction done in [0, 1], short phase label such as "encode").
ProgressFn = Callable[[float, str], None]


def no_progress(fraction: float, phase: str) -> None:
    """Ignore progress reports."""


class VoiceEngine(Protocol):
    """Turns text into speech in an enrolled voice."""

    name: str

    def enroll(self, sample: Path, out_dir: Path) -> dict[str, Any]:
        """Validate a reference sample and write the voice's derived data into `out_dir`.

        Raises `BadInput` for unusable samples (not audio, silent, too short or too long).
        Returns JSON-able metadata (speech seconds, warnings).
        """
        ...

    def synthesize(
        self, text: str, language: str, voice_dir: Path, out_wav: Path, progress: ProgressFn
    ) -> float:
        """Write speech for `text` in the voice of `voice_dir` to `out_wav`; return seconds.

        `out_wav` is mono 16-bit PCM WAV at the engine's native rate and never holds exact
        digital silence.
        """
        ...


class LipSyncEngine(Protocol):
    """Makes an avatar clip speak an audio track; only the mouth region is regenerated."""

    name: str

    def prepare(self, media: Path, out_dir: Path) -> dict[str, Any]:
        """Validate an avatar video or photo and write its prepared data into `out_dir`.

        Prepared data is the normalised clip and its face track, computed once and reused by
        every render. Raises `BadInput` for unusable media (not video/image, no face, too long).
        """
        ...

    def render(
        self,
        avatar_dir: Path,
        audio: Path,
        out_mp4: Path,
        progress: ProgressFn,
        metadata: dict[str, str],
        text: str = "",
        language: str = "",
    ) -> dict[str, Any]:
        """Write an H.264/AAC MP4 of the avatar speaking `audio`; return render statistics.

        `metadata` goes into the container's tags (provenance). Frames without a face pass
        through untouched; audio longer than the clip loops the clip back and forth. `text`
        and `language` are the script the audio speaks, for engines that use its phones.
        """
        ...
