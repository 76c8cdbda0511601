"""Speaker matching with the WORLD vocoder: make one voice sound more like a reference speaker.

WORLD splits speech into pitch (F0), a smooth spectral envelope (vocal tract: formants and
timbre) and aperiodicity (breathiness). Matching moves the first two toward the reference:

- pitch: log-F0 mean and range mapped from the source voice's statistics to the reference's;
- envelope: a frequency warp (vocal-tract length: formants up or down by one factor) chosen
  so the source's long-term average envelope best lines up with the reference's, then an
  equaliser (the smoothed remaining difference of the averages) for timbre and tilt.

The profile is fitted once at enrollment from two `VoiceStats` and stored as a small `.npz`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pyworld

from jayavatar.errors import BadInput

Audio: TypeAlias = npt.NDArray[np.float32]
Vector: TypeAlias = npt.NDArray[np.float64]

#: WORLD analysis grid and FFT size; fixed so envelopes of any two clips share their bins.
FRAME_MS = 5.0
FFT_SIZE = 1024
F0_FLOOR, F0_CEIL = 60.0, 700.0
#: Warp factors searched: about ±25 % vocal-tract length, the adult range and a bit more.
WARPS = np.round(np.arange(0.78, 1.28, 0.005), 3)
#: Band the warp is fitted on: formants live here; below is pitch, above is mostly noise.
FIT_BAND_HZ = (200.0, 5000.0)
#: Cepstral coefficients kept when smoothing an average envelope (formant-scale detail only).
LIFTER = 40
#: The equaliser never boosts or cuts more than this (natural-log power; 4.6 ≈ ±20 dB).
EQ_LIMIT = 4.6
#: Pitch range is scaled by at most this factor either way.
RANGE_LIMIT = 2.0


@dataclass(frozen=True)
class VoiceStats:
    """Long-term statistics of one speaker's voice, as WORLD sees it."""

    rate: int
    logf0_mean: float
    logf0_std: float
    envelope: Vector  # mean log power envelope of voiced frames, FFT_SIZE // 2 + 1 bins
    voiced_s: float


@dataclass(frozen=True)
class Profile:
    """How to move the source voice toward one reference speaker."""

    rate: int
    source_logf0_mean: float
    source_logf0_std: float
    target_logf0_mean: float
    target_logf0_std: float
    warp: float
    eq: Vector  # log power gain per envelope bin, applied after the warp

    @property
    def pitch_ratio(self) -> float:
        """Ratio of the reference's mean pitch to the source's."""
        return float(np.exp(self.target_logf0_mean - self.source_logf0_mean))


def _world(audio: Audio, rate: int, aperiodicity: bool = True) -> tuple[Vector, Vector, Vector]:
    """Analyse audio into WORLD's F0 track, spectral envelope and (on request) aperiodicity.

    Pitch comes from Harvest: DIO is 20x faster but doubles the pitch of the stock voice's
    low, creaky frames (measured: 153 Hz mean against ~95-120 Hz by Harvest and cepstrum).
    """
    x = audio.astype(np.float64)
    f0, times = pyworld.harvest(x, rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    sp = pyworld.cheaptrick(x, f0, times, rate, fft_size=FFT_SIZE)
    ap = pyworld.d4c(x, f0, times, rate, fft_size=FFT_SIZE) if aperiodicity else np.empty(0)
    return f0, sp, ap


def analyse(audio: Audio, rate: int) -> VoiceStats:
    """Measure a speaker's pitch statistics and average spectral envelope."""
    f0, sp, _ = _world(audio, rate, aperiodicity=False)
    voiced = f0 > 0
    if voiced.sum() < 40:  # under 0.2 s of voicing: nothing to measure a speaker from
        raise BadInput("too little voiced speech in the sample to measure the voice")
    logf0 = np.log(f0[voiced])
    envelope = smooth_envelope(np.log(sp[voiced] + 1e-12).mean(axis=0))
    return VoiceStats(
        rate=rate,
        logf0_mean=float(logf0.mean()),
        logf0_std=float(max(logf0.std(), 1e-3)),
        envelope=envelope,
        voiced_s=float(voiced.sum()) * FRAME_MS / 1000.0,
    )


def smooth_envelope(log_env: Vector) -> Vector:
    """Keep only formant-scale detail of a log envelope (cepstral liftering)."""
    cepstrum = np.fft.irfft(log_env)
    cepstrum[LIFTER : len(cepstrum) - LIFTER + 1] = 0.0
    return np.asarray(np.fft.rfft(cepstrum).real, dtype=np.float64)


def warp_envelope(env: Vector, factor: float) -> Vector:
    """Move spectral features along frequency by `factor` along the last axis (>1: formants up)."""
    bins = np.arange(env.shape[-1], dtype=np.float64)
    source_bins = bins / factor
    if env.ndim == 1:
        return np.interp(source_bins, bins, env)
    lo = np.clip(np.floor(source_bins).astype(int), 0, env.shape[-1] - 1)
    hi = np.minimum(lo + 1, env.shape[-1] - 1)
    frac = np.clip(source_bins - lo, 0.0, 1.0)
    return np.asarray(env[..., lo] * (1.0 - frac) + env[..., hi] * frac, dtype=np.float64)


def _detrend(values: Vector, freqs: Vector) -> Vector:
    """Remove the best straight line (level and tilt), leaving the formant pattern."""
    slope, offset = np.polyfit(freqs, values, 1)
    return np.asarray(values - (slope * freqs + offset), dtype=np.float64)


def fit_warp(source: VoiceStats, target: VoiceStats) -> float:
    """Find the warp that best aligns the source's average formant pattern with the target's."""
    freqs = np.fft.rfftfreq(FFT_SIZE, 1.0 / source.rate).astype(np.float64)
    band = (freqs >= FIT_BAND_HZ[0]) & (freqs <= FIT_BAND_HZ[1])
    want = _detrend(target.envelope[band], freqs[band])
    errors = [
        float(np.mean((_detrend(warp_envelope(source.envelope, w)[band], freqs[band]) - want) ** 2))
        for w in WARPS
    ]
    return float(WARPS[int(np.argmin(errors))])


def fit_profile(source: VoiceStats, target: VoiceStats) -> Profile:
    """Fit the pitch mapping, warp and equaliser that move `source` toward `target`."""
    if source.rate != target.rate:
        raise ValueError("source and target must be analysed at the same rate")
    warp = fit_warp(source, target)
    eq = smooth_envelope(target.envelope - warp_envelope(source.envelope, warp))
    eq = np.clip(eq - eq.mean(), -EQ_LIMIT, EQ_LIMIT)  # loudness is normalised separately
    return Profile(
        rate=source.rate,
        source_logf0_mean=source.logf0_mean,
        source_logf0_std=source.logf0_std,
        target_logf0_mean=target.logf0_mean,
        target_logf0_std=target.logf0_std,
        warp=warp,
        eq=eq,
    )


def map_pitch(f0: Vector, profile: Profile) -> Vector:
    """Map voiced F0 values from the source's log-F0 mean/range to the target's."""
    scale = np.clip(
        profile.target_logf0_std / profile.source_logf0_std, 1 / RANGE_LIMIT, RANGE_LIMIT
    )
    out = np.zeros_like(f0)
    voiced = f0 > 0
    logf0 = np.log(f0[voiced])
    out[voiced] = np.exp((logf0 - profile.source_logf0_mean) * scale + profile.target_logf0_mean)
    return np.clip(out, 0.0, F0_CEIL * 1.5)


def convert(audio: Audio, rate: int, profile: Profile) -> Audio:
    """Resynthesise `audio` (spoken by the source voice) toward the profile's speaker."""
    if rate != profile.rate:
        raise ValueError(f"audio at {rate} Hz, profile fitted at {profile.rate} Hz")
    f0, sp, ap = _world(audio, rate)
    sp = np.exp(warp_envelope(np.log(sp + 1e-12), profile.warp) + profile.eq)
    ap = np.clip(warp_envelope(ap, profile.warp), 0.0, 1.0)
    # WORLD's C code wants C-ordered float64 arrays; the warp returns strided views.
    f0, sp, ap = (
        np.ascontiguousarray(a, dtype=np.float64) for a in (map_pitch(f0, profile), sp, ap)
    )
    out = pyworld.synthesize(f0, sp, ap, rate, FRAME_MS)
    return np.asarray(out[: len(audio)], dtype=np.float32)


def save_profile(profile: Profile, path: Path) -> None:
    """Store a profile as a small `.npz` (numbers only; loading needs no pickle)."""
    arrays: dict[str, npt.NDArray[np.float64]] = {
        key: np.asarray(value, dtype=np.float64) for key, value in asdict(profile).items()
    }
    with path.open("wb") as out:
        np.savez(out, allow_pickle=False, **arrays)


def load_profile(path: Path) -> Profile:
    """Load a profile written by `save_profile`."""
    with np.load(path, allow_pickle=False) as data:
        return Profile(
            rate=int(data["rate"]),
            source_logf0_mean=float(data["source_logf0_mean"]),
            source_logf0_std=float(data["source_logf0_std"]),
            target_logf0_mean=float(data["target_logf0_mean"]),
            target_logf0_std=float(data["target_logf0_std"]),
            warp=float(data["warp"]),
            eq=np.asarray(data["eq"], dtype=np.float64),
        )
