"""Mouth shapes from aligned phones: visemes, co-articulation and closures, one pose per frame.

Each ARPAbet phone has a target shape (how far open, how much jaw, rounded or spread) and a
dominance: how strongly it holds its shape against its neighbours. Per video frame the targets
of the nearby phones are blended by dominance-weighted influence that is flat over a phone and
decays outside it, so neighbours blend and a short phone does not reach its full target. The
lips then shut hard for /p b m/, from a little before the phone (the closure leads the burst)
until the burst, whatever the neighbours want, except where the audio says the aligner's
phone edge ran into the vowel beside it: a frame that loud is the vowel's. Loudness scales how
far each shape is reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter1d

from engines.lipsync.alignment import Phone
from engines.lipsync.mouth_warp import MouthPose

Floats: TypeAlias = npt.NDArray[np.float64]

#: How fast a phone's influence decays outside it, seconds (about a frame at 25 fps).
DECAY_S = 0.035
#: The lips shut this long before a plosive's phone starts, and open this long before it
#: ends: the audible burst that releases them is the phone's last few milliseconds.
CLOSURE_LEAD_S = 0.02
BURST_S = 0.02
#: However short the phone, the lips stay shut this many frames' time.
MIN_CLOSURE_FRAMES = 1.6
#: A closure frame this much louder (in loudness opening, 0-1) than the closure's middle is
#: the neighbouring vowel's, which the aligner's phone edge ran into: open there. With the
#: firmer press below, 12 seeded readings of the demo line (bench/visemes.py --seed) went from
#: aperture/loudness correlation 0.758 (0.731-0.781) to 0.776 (0.762-0.805), closures 130 of
#: 132 both ways.
CLOSURE_QUIET_RANGE = 0.2
#: How far past rest (as a negative opening) the lips press together at a closure: lips that
#: meet for /p b m/ are pressed, a little thinner than at rest, not merely touching. Trimmed
#: closures leave FaceMesh fewer shut frames to find, and its jitter (sd about 0.005 of face
#: height) would read some as open at a lighter press.
CLOSURE_PRESS = 0.1
#: Share of the loudness opening that even the least open shape keeps.
LOUDNESS_FLOOR = 0.8
#: Smoothing of the opening, frames (a Gaussian's sigma): lips cannot jump, but too much would
#: blur the syllables that loudness marks.
OPEN_SMOOTH = 0.6


@dataclass(frozen=True)
class Viseme:
    """A mouth shape: open in [0, 1], jaw gain, round in [-1 spread, 1 rounded], dominance."""

    name: str
    open: float
    jaw: float
    round: float
    dominance: float


REST = Viseme("rest", 0.0, 1.0, 0.0, 1.5)
CLOSED = Viseme("closed", 0.0, 1.0, 0.1, 3.0)  # p b m
LIP_TEETH = Viseme("lip-teeth", 0.1, 0.7, -0.1, 2.0)  # f v: lower lip to the upper teeth
TEETH = Viseme("teeth", 0.12, 0.75, -0.3, 1.2)  # s z t d n: teeth nearly together
TONGUE_TEETH = Viseme("tongue-teeth", 0.2, 0.85, 0.0, 1.2)  # th dh l
POSTALVEOLAR = Viseme("sh", 0.18, 0.8, 0.7, 1.5)  # sh zh ch jh: lips pushed out
ROUNDED = Viseme("rounded", 0.3, 0.9, 1.0, 1.6)  # uw w: narrow and round
ROUND_OPEN = Viseme("round-open", 0.5, 1.0, 0.85, 1.3)  # ow ao oy uh
WIDE = Viseme("wide", 0.32, 0.9, -0.8, 1.2)  # iy ih ey y: spread
MID = Viseme("mid", 0.55, 1.0, -0.4, 1.0)  # eh ae
OPEN = Viseme("open", 0.95, 1.1, 0.0, 1.0)  # aa ah ay aw
R_COLOURED = Viseme("r", 0.32, 0.95, 0.55, 1.0)  # er r
BACK = Viseme("back", 0.35, 1.0, 0.0, 0.3)  # k g ng hh: the tongue works, lips follow neighbours

VISEMES: dict[str, Viseme] = {
    "SIL": REST,
    **dict.fromkeys(("P", "B", "M"), CLOSED),
    **dict.fromkeys(("F", "V"), LIP_TEETH),
    **dict.fromkeys(("S", "Z", "T", "D", "N"), TEETH),
    **dict.fromkeys(("TH", "DH", "L"), TONGUE_TEETH),
    **dict.fromkeys(("SH", "ZH", "CH", "JH"), POSTALVEOLAR),
    **dict.fromkeys(("UW", "W"), ROUNDED),
    **dict.fromkeys(("OW", "AO", "OY", "UH"), ROUND_OPEN),
    **dict.fromkeys(("IY", "IH", "EY", "Y"), WIDE),
    **dict.fromkeys(("EH", "AE"), MID),
    **dict.fromkeys(("AA", "AH", "AY", "AW"), OPEN),
    **dict.fromkeys(("ER", "R"), R_COLOURED),
    **dict.fromkeys(("K", "G", "NG", "HH"), BACK),
}
CLOSURES = ("P", "B", "M")
PLOSIVES = ("P", "B")
ROUNDED_PHONES = ("UW", "OW", "W")
SPREAD_PHONES = ("IY", "EY")


def viseme_of(phone: str) -> Viseme:
    """The mouth shape of an ARPAbet phone (unknown ones get the neutral back shape)."""
    return VISEMES.get(phone, BACK)


def frame_times(fps: float, frames: int) -> Floats:
    """Each video frame's centre, seconds (the moment the audio analysis is centred on)."""
    return (np.arange(frames) + 0.5) / fps


def influence(phones: Sequence[Phone], times: Floats) -> Floats:
    """(phones, frames) dominance-weighted influence: flat inside a phone, decaying outside."""
    starts = np.array([p.start for p in phones])[:, None]
    ends = np.array([p.end for p in phones])[:, None]
    dominance = np.array([viseme_of(p.name).dominance for p in phones])[:, None]
    outside = np.maximum(starts - times[None, :], 0.0) + np.maximum(times[None, :] - ends, 0.0)
    weights: Floats = dominance * np.exp(-outside / DECAY_S)
    return weights


def closure_amount(
    phones: Sequence[Phone], times: Floats, fps: float, loud: Floats | None = None
) -> Floats:
    """Per frame, how shut the lips must be (1 = pressed together) for /p b m/.

    With `loud` (loudness opening per frame, 0-1) the audio trims each closure (`_as_quiet`);
    without it the closure follows the phone's edges alone.
    """
    amount = np.zeros_like(times)
    for p in phones:
        if p.name not in CLOSURES:
            continue
        start, end = _closure_span(p, fps)
        # However short the phone, the frame nearest its middle shuts.
        nearest = int(np.argmin(np.abs(times - (start + end) / 2)))
        # Frames centred in the closure are shut; within half a frame of it they ease in and
        # out. Shutting more would hide the loudness the lips must still follow.
        gap = np.maximum(start - times, 0.0) + np.maximum(times - end, 0.0)
        shut = np.clip(1.0 - 4.0 * gap * fps, 0.0, 1.0)
        if loud is not None:
            shut = np.where(_as_quiet(shut, times, fps, loud, nearest), shut, 0.0)
        amount = np.maximum(amount, shut)
        amount[nearest] = 1.0
    return amount


def _closure_span(p: Phone, fps: float) -> tuple[float, float]:
    """(start, end) seconds the lips are shut for a /p b m/ phone, by its aligned edges."""
    plosive = p.name in PLOSIVES
    start = p.start - (CLOSURE_LEAD_S if plosive else 0.0)
    end = max(p.end - (BURST_S if plosive else 0.0), start + 1e-3)
    # Lips take time to meet and part: a closure is held at least MIN_CLOSURE_FRAMES.
    short = MIN_CLOSURE_FRAMES / fps - (end - start)
    if short > 0:
        start, end = start - short / 2, end + short / 2
    return start, end


def _as_quiet(
    shut: Floats, times: Floats, fps: float, loud: Floats, middle: int
) -> npt.NDArray[np.bool_]:
    """Frames of the closure `shut` that stay shut: the run around `middle` no louder than it.

    Frames of the aligned phone louder than its middle by CLOSURE_QUIET_RANGE carry the
    neighbouring vowel. The minimum closure around the middle always stays.
    """
    keep: npt.NDArray[np.bool_] = np.abs(times - times[middle]) <= MIN_CLOSURE_FRAMES / fps / 2
    ceiling = loud[middle] + CLOSURE_QUIET_RANGE
    for step in (-1, 1):
        i = middle
        while 0 <= i < len(shut) and shut[i] > 0 and loud[i] <= ceiling:
            keep[i] = True
            i += step
    return keep


def shape_tracks(phones: Sequence[Phone], times: Floats) -> tuple[Floats, Floats, Floats]:
    """Blended (open, jaw, round) targets per frame, before closures and loudness."""
    weights = influence(phones, times)
    total = weights.sum(axis=0) + 1e-9
    targets = np.array([[viseme_of(p.name).open, viseme_of(p.name).jaw, viseme_of(p.name).round]
                        for p in phones])  # fmt: skip
    blended = (targets.T @ weights) / total
    return blended[0], blended[1], blended[2]


def viseme_poses(
    phones: Sequence[Phone],
    loudness: npt.NDArray[np.floating[Any]],
    fps: float,
) -> list[MouthPose]:
    """One mouth pose per frame from aligned phones; `loudness` in [0, 1] per frame."""
    frames = len(loudness)
    if not phones:
        return [MouthPose(0.0, 1.0, 0.0)] * frames
    times = frame_times(fps, frames)
    opening, jaw, rounding = shape_tracks(phones, times)
    loud = np.clip(np.asarray(loudness, np.float64), 0.0, 1.0)
    # Loudness sets how far the mouth opens, the viseme how that opening is shaped: an open
    # vowel reaches the full loudness opening, a consonant only part of it.
    opening = loud * (LOUDNESS_FLOOR + (1 - LOUDNESS_FLOOR) * opening / OPEN.open)
    # Smoothing must not leak speech into a pause: where the voice is silent the mouth rests.
    voiced = np.clip(loud / 0.05, 0.0, 1.0)
    opening = gaussian_filter1d(opening, OPEN_SMOOTH, mode="nearest") * voiced
    jaw = gaussian_filter1d(jaw, 1.0, mode="nearest")
    rounding = gaussian_filter1d(rounding, 1.0, mode="nearest") * np.clip(loud / 0.02, 0.0, 1.0)
    shut = closure_amount(phones, times, fps, loud)
    # Closing is applied last and unsmoothed, so the lips really meet. Pressed lips are not
    # rounded: the rounding warp lifts the lips' middle, and beside /uw ow w/ ("move", "some
    # music") it left 3 of 11 closures of a reading open (12 seeded readings: 127 of 132 shut
    # before, 130 after; corr@0 0.763 -> 0.758).
    opening = opening * (1.0 - shut) - CLOSURE_PRESS * shut
    rounding = rounding * (1.0 - shut)
    return [
        MouthPose(float(o), float(j), float(r))
        for o, j, r in zip(opening, jaw, rounding, strict=True)
    ]


def closure_times(phones: Sequence[Phone]) -> list[float]:
    """Middle of every /p b m/ closure, seconds (where the lips must meet)."""
    return [p.mid for p in phones if p.name in CLOSURES]


def phone_frames(
    phones: Sequence[Phone], names: Sequence[str], fps: float, frames: int
) -> npt.NDArray[np.intp]:
    """Indices of the frames whose centre falls inside a phone named in `names`."""
    times = frame_times(fps, frames)
    inside = np.zeros(frames, bool)
    for p in phones:
        if p.name in names:
            inside |= (times >= p.start) & (times < p.end)
    return np.flatnonzero(inside)
