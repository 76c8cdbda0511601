"""Tests of engines.voice.match: WORLD analysis, warp fitting, pitch mapping and conversion."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import pyworld
from scipy.signal import lfilter

from engines.voice import match as voice_match
from engines.voice.piper import load_stock_voice, speak
from jayavatar.errors import BadInput

pytestmark = pytest.mark.env("voice")

RATE = 22050
BINS = voice_match.FFT_SIZE // 2 + 1


@pytest.fixture(scope="module")
def speech() -> voice_match.Audio:
    """A few seconds of the stock voice."""
    return speak(load_stock_voice(), "We walked along the quiet river until the sun went down.")


def vowel(f0: float, formants: list[float], seconds: float = 2.0) -> voice_match.Audio:
    """A synthetic sustained vowel: a glottal pulse train at `f0` through formant resonators."""
    n = int(seconds * RATE)
    pulses = np.zeros(n)
    pulses[:: int(RATE / f0)] = 1.0
    out = pulses
    for freq in formants:
        radius = np.exp(-np.pi * 80.0 / RATE)
        theta = 2 * np.pi * freq / RATE
        out = lfilter([1.0], [1.0, -2 * radius * np.cos(theta), radius**2], out)
    return np.asarray(0.3 * out / np.max(np.abs(out)), dtype=np.float32)


def peak_bins(env: voice_match.Vector, count: int) -> list[int]:
    """Return the `count` highest local maxima of an envelope, in frequency order."""
    inner = np.flatnonzero((env[1:-1] > env[:-2]) & (env[1:-1] > env[2:])) + 1
    return sorted(inner[np.argsort(env[inner])[-count:]].tolist())


def test_warp_moves_a_peak() -> None:
    """A feature at bin 100 ends at bin 120 with factor 1.2 and at 80 with 0.8."""
    env = np.exp(-(((np.arange(BINS) - 100.0) / 5.0) ** 2))
    assert int(np.argmax(voice_match.warp_envelope(env, 1.2))) == 120
    assert int(np.argmax(voice_match.warp_envelope(env, 0.8))) == 80
    frames = np.stack([env, env])
    assert voice_match.warp_envelope(frames, 1.2).shape == frames.shape


def test_analyse_measures_pitch_and_formants() -> None:
    """The analysis finds the pulse rate and the resonances of a synthetic vowel."""
    stats = voice_match.analyse(vowel(140.0, [700.0, 1200.0, 2600.0]), RATE)
    assert abs(np.exp(stats.logf0_mean) - 140.0) < 3.0
    assert stats.logf0_std < 0.05  # a steady pulse train: nearly no pitch movement
    hz = np.array(peak_bins(stats.envelope, 3)) * RATE / voice_match.FFT_SIZE
    assert np.allclose(hz, [700.0, 1200.0, 2600.0], atol=110.0)


def test_fit_warp_recovers_vocal_tract_length() -> None:
    """Between two vowels whose formants differ by 15 %, the fitted warp is about 1.15."""
    low = voice_match.analyse(vowel(120.0, [600.0, 1100.0, 2400.0, 3300.0]), RATE)
    high = voice_match.analyse(vowel(120.0, [690.0, 1265.0, 2760.0, 3795.0]), RATE)
    assert abs(voice_match.fit_warp(low, high) - 1.15) < 0.03
    assert abs(voice_match.fit_warp(high, low) - 1 / 1.15) < 0.03


def test_map_pitch_moves_mean_and_range() -> None:
    """Mapped log-F0 has the target's mean and spread; unvoiced frames stay unvoiced."""
    rng = np.random.default_rng(0)
    f0 = np.exp(rng.normal(np.log(120.0), 0.1, 1000))
    f0[::5] = 0.0
    profile = voice_match.Profile(
        rate=RATE,
        source_logf0_mean=float(np.log(120.0)),
        source_logf0_std=0.1,
        target_logf0_mean=float(np.log(210.0)),
        target_logf0_std=0.15,
        warp=1.0,
        eq=np.zeros(BINS),
    )
    mapped = voice_match.map_pitch(f0, profile)
    assert np.all(mapped[::5] == 0.0)
    logs = np.log(mapped[mapped > 0])
    assert abs(np.exp(logs.mean()) - 210.0) < 5.0
    assert abs(logs.std() - 0.15) < 0.01
    assert profile.pitch_ratio == pytest.approx(1.75)


def test_convert_reaches_the_target(speech: voice_match.Audio) -> None:
    """Converted speech measures with the profile's pitch and warped envelope, same length."""
    source = voice_match.analyse(speech, RATE)
    target = replace(
        source,
        logf0_mean=source.logf0_mean + float(np.log(1.4)),
        envelope=voice_match.warp_envelope(source.envelope, 1.12),
    )
    profile = voice_match.fit_profile(source, target)
    assert abs(profile.warp - 1.12) < 0.02
    converted = voice_match.convert(speech, RATE, profile)
    assert len(converted) == len(speech)
    assert np.all(np.isfinite(converted))
    # Frame by frame (median: robust to the odd octave error of the tracker) pitch is 1.4x.
    before_f0, after_f0 = pitch(speech), pitch(converted)
    both = (before_f0 > 0) & (after_f0 > 0)
    assert both.sum() > 100
    assert np.median(after_f0[both] / before_f0[both]) == pytest.approx(1.4, abs=0.05)
    after = voice_match.analyse(converted, RATE)
    assert voice_match.fit_warp(source, after) == pytest.approx(profile.warp, abs=0.03)


def pitch(speech: voice_match.Audio) -> voice_match.Vector:
    """Return the F0 track of speech (0 where unvoiced) on the analysis grid."""
    f0, _ = pyworld.harvest(speech.astype(np.float64), RATE, frame_period=voice_match.FRAME_MS)
    return np.asarray(f0, dtype=np.float64)


def test_equaliser_matches_timbre(speech: voice_match.Audio) -> None:
    """A treble boost in the target is reproduced by the equaliser, within its limit."""
    source = voice_match.analyse(speech, RATE)
    tilt = np.linspace(0.0, 2.0, BINS)  # +2 in log power (≈ +8.7 dB) at the top
    target = replace(source, envelope=source.envelope + tilt)
    profile = voice_match.fit_profile(source, target)
    assert profile.warp == pytest.approx(1.0, abs=0.01)
    assert np.all(np.abs(profile.eq) <= voice_match.EQ_LIMIT)
    assert profile.eq[-60:].mean() - profile.eq[:60].mean() > 1.5


def test_profile_round_trip(tmp_path: Path, speech: voice_match.Audio) -> None:
    """A saved profile loads back equal, without pickle."""
    stats = voice_match.analyse(speech, RATE)
    profile = voice_match.fit_profile(stats, replace(stats, logf0_mean=stats.logf0_mean + 0.3))
    path = tmp_path / "profile.npz"
    voice_match.save_profile(profile, path)
    loaded = voice_match.load_profile(path)
    assert loaded.rate == RATE
    assert loaded.warp == profile.warp
    assert loaded.target_logf0_mean == pytest.approx(profile.target_logf0_mean)
    assert np.array_equal(loaded.eq, profile.eq)


def test_analyse_refuses_unvoiced_audio() -> None:
    """Noise has no pitch to measure a speaker from."""
    noise = np.random.default_rng(1).normal(0, 0.1, RATE * 2).astype(np.float32)
    with pytest.raises(BadInput, match="voiced"):
        voice_match.analyse(noise, RATE)
