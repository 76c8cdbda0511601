"""Whether a render's mouth forms the words: closures, rounding and rest in pauses.

The script is aligned to the render's own audio (`engines.lipsync.alignment`), so these checks need
nothing from the engine that made the render. Per frame the picture pass measures the inner-lip
aperture (FaceMesh 13-14) and the mouth width (61-291), both over the eye distance.

- Closure: at every /p b m/ the smallest aperture within +-1 frame is within CLOSE_TOL of the
  mouth at rest (the median aperture over the pauses, where the mouth is not posed).
- Rounding: the median width during /uw ow w/ over the median width during /iy ey/, at most
  MAX_ROUND_RATIO (plus a pixel's worth on small faces).
- Rest: the share of pause frames whose aperture is no more than REST_TOL above rest.

FaceMesh itself jitters by about 0.01 on an unchanged frame of a 512-pixel face (its tracking
state and the codec's noise differ from frame to frame), which sets both tolerances: a lip that
is really open for a sound is 0.05 or more above rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from engines.lipsync.alignment import Phone
from engines.lipsync.visemes import (
    ROUNDED_PHONES,
    SPREAD_PHONES,
    closure_times,
    frame_times,
    phone_frames,
)

Array: TypeAlias = npt.NDArray[np.float64]
#: A closure counts when the lips come within this aperture (eye distances) of rest.
CLOSE_TOL = 0.005
#: A pause frame rests when its aperture is at most this far above rest.
REST_TOL = 0.015
#: Goals: closures reached, and rounded width over spread width.
MIN_CLOSURE_RATE = 0.9
MAX_ROUND_RATIO = 0.9
#: Pauses shorter than this (seconds) are gaps between words, not rests.
MIN_PAUSE_S = 0.1


def pause_frames(phones: Sequence[Phone], fps: float, frames: int) -> npt.NDArray[np.intp]:
    """Frames inside an aligned silence long enough to rest in, a frame in from each edge."""
    times = frame_times(fps, frames)
    inside = np.zeros(frames, bool)
    margin = 1.0 / fps
    for p in phones:
        if p.name == "SIL" and p.end - p.start >= MIN_PAUSE_S:
            inside |= (times >= p.start + margin) & (times < p.end - margin)
    return np.flatnonzero(inside)


def rest_aperture(aperture: Array, pauses: npt.NDArray[np.intp]) -> float:
    """The aperture of the mouth at rest: the median over the pauses (NaN if none measured)."""
    values = aperture[pauses]
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def closure_misses(
    aperture: Array, phones: Sequence[Phone], fps: float, rest: float | Array
) -> tuple[list[float], list[float]]:
    """(closure times, how far above rest the lips stayed at each), seconds and apertures."""
    times = closure_times(phones)
    above = aperture - rest
    misses = []
    for t in times:
        centre = int(t * fps)
        window = above[max(0, centre - 1) : centre + 2]
        window = window[np.isfinite(window)]
        misses.append(float(window.min()) if window.size else float("nan"))
    return times, misses


def mouth_report(
    aperture: Array,
    width: Array,
    phones: Sequence[Phone],
    fps: float,
    source: Array | None = None,
    eye_px: float = 0.0,
) -> dict[str, Any]:
    """Closure, rounding and rest measures of one render (JSON-able).

    `source` (per render frame, the clip's own aperture) lets a video avatar's mouth rest
    differently from frame to frame: rest is then the source plus the median offset over the
    pauses. `eye_px` (eye distance in pixels) widens the tolerances to a pixel on small faces,
    below which FaceMesh cannot tell.
    """
    frames = len(aperture)
    pauses = pause_frames(phones, fps, frames)
    rest = rest_aperture(aperture, pauses)
    series: float | Array = rest
    if source is not None:
        series = source + rest_aperture(aperture - source, pauses)
    close_tol, rest_tol = _tolerances(eye_px)
    resting = (aperture - series)[pauses] <= rest_tol
    return {
        "measured": bool(np.isfinite(rest)),
        "rest_aperture": _round(rest),
        **_closure_measures(aperture, phones, fps, series, close_tol),
        **_rounding_measures(width, phones, fps, frames, eye_px),
        "pause_frames": int(pauses.size),
        "rest_in_pauses": _round(float(resting.mean())) if pauses.size else None,
        "phones": len(phones),
    }


def _tolerances(eye_px: float) -> tuple[float, float]:
    """(closure, rest) tolerances, widened to a pixel or so on faces with `eye_px` > 0."""
    if eye_px <= 0:
        return CLOSE_TOL, REST_TOL
    return max(CLOSE_TOL, 1.0 / eye_px), max(REST_TOL, 1.5 / eye_px)


def _closure_measures(
    aperture: Array, phones: Sequence[Phone], fps: float, rest: float | Array, tol: float
) -> dict[str, Any]:
    """The closure part of `mouth_report`: times, excess over rest, and the share that shut."""
    times, misses = closure_misses(aperture, phones, fps, rest)
    shut = [m <= tol for m in misses if np.isfinite(m)]
    return {
        "closure_tolerance": _round(tol),
        "closure_times_s": [round(t, 3) for t in times],
        "closure_excess": [_round(m) for m in misses],
        "closure_rate": _round(float(np.mean(shut))) if shut else None,
        "closures": len(times),
    }


def _rounding_measures(
    width: Array, phones: Sequence[Phone], fps: float, frames: int, eye_px: float
) -> dict[str, Any]:
    """The rounding part of `mouth_report`: median widths on rounded and spread vowels."""
    rounded = _median(width, phone_frames(phones, ROUNDED_PHONES, fps, frames))
    spread = _median(width, phone_frames(phones, SPREAD_PHONES, fps, frames))
    # On a small face a pixel is a large share of the width: a rounded mouth a pixel wider
    # than the goal cannot be told from one that meets it.
    pixel = 1.0 / eye_px if eye_px > 0 else 0.0
    return {
        "round_width": _round(rounded),
        "spread_width": _round(spread),
        "round_ratio": _round(rounded / spread) if spread > 0 else None,
        "round_limit": _round(MAX_ROUND_RATIO + pixel / spread) if spread > 0 else None,
    }


def mouth_flags(mouth: dict[str, Any]) -> list[str]:
    """Flags for lips that do not close or round (only where measured)."""
    if not mouth.get("measured"):
        return []
    out = []
    rate = mouth["closure_rate"]
    if rate is not None and rate < MIN_CLOSURE_RATE:
        out.append(f"lips close at {100 * rate:.0f}% of p/b/m")
    ratio, limit = mouth["round_ratio"], mouth.get("round_limit") or MAX_ROUND_RATIO
    if ratio is not None and ratio > limit:
        out.append(f"lips do not round (width ratio {ratio:.2f})")
    return out


def _median(values: Array, index: npt.NDArray[np.intp]) -> float:
    """Median of the finite values at `index`; NaN if none."""
    chosen = values[index]
    chosen = chosen[np.isfinite(chosen)]
    return float(np.median(chosen)) if chosen.size else float("nan")


def _round(value: float, digits: int = 4) -> float | None:
    """Round for JSON; NaN becomes None."""
    return round(float(value), digits) if np.isfinite(value) else None
