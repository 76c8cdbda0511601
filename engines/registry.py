"""Builds the configured engines; imports engine packages only when asked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jayavatar.errors import BadInput

if TYPE_CHECKING:
    from engines.base import LipSyncEngine, VoiceEngine
    from jayavatar.settings import Settings


def build_voice_engine(settings: Settings) -> VoiceEngine:
    """Build the voice engine named by `settings.voice_engine`."""
    name = settings.voice_engine
    if name == "piper":
        from engines.piper import PiperEngine

        return PiperEngine(settings)
    if name == "xtts":
        from engines.xtts import XttsEngine

        return XttsEngine(
            settings, gpt_precision=settings.xtts_precision, batch_size=settings.xtts_batch
        )
    raise BadInput(f"unknown voice engine {name!r}")


def build_lipsync_engine(settings: Settings) -> LipSyncEngine:
    """Build the lip-sync engine named by `settings.lipsync_engine`."""
    name = settings.lipsync_engine
    if name == "landmark":
        from engines.landmark import LandmarkEngine

        return LandmarkEngine(settings)
    if name == "wav2lip":
        from engines.wav2lip import Wav2LipEngine

        return Wav2LipEngine(settings)
    raise BadInput(f"unknown lip-sync engine {name!r}")
