"""Visemes: phones become mouth shapes that blend, close for /p b m/ and rest in pauses."""

from __future__ import annotations

import numpy as np
import pytest

from engines.lipsync.alignment import Phone
from engines.lipsync.visemes import (
    CLOSED,
    CLOSURE_PRESS,
    OPEN,
    ROUNDED,
    VISEMES,
    WIDE,
    closure_amount,
    frame_times,
    viseme_of,
    viseme_poses,
)

pytestmark = pytest.mark.env("lipsync")

FPS = 25
#: The 39 ARPAbet phones of the CMU dictionary, and the aligner's silence.
ARPABET = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH", "SIL",
)  # fmt: skip


def seq(*spec: tuple[str, float]) -> list[Phone]:
    """Phones back to back from (name, duration) pairs."""
    out, t = [], 0.0
    for name, dur in spec:
        out.append(Phone(name, t, t + dur))
        t += dur
    return out


def poses(phones: list[Phone], loud: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(open, round) per frame for constant loudness over the phones."""
    frames = round(phones[-1].end * FPS)
    loudness = np.full(frames, loud)
    for p in phones:  # silence is silent
        if p.name == "SIL":
            times = frame_times(FPS, frames)
            loudness[(times >= p.start) & (times < p.end)] = 0.0
    out = viseme_poses(phones, loudness, FPS)
    return np.array([p.open for p in out]), np.array([p.round for p in out])


def at(phones: list[Phone], index: int) -> int:
    """The frame nearest the middle of phone `index`."""
    return int(phones[index].mid * FPS)


def test_every_phone_has_a_shape() -> None:
    assert set(ARPABET) <= set(VISEMES)
    assert viseme_of("P") is viseme_of("B") is viseme_of("M") is CLOSED
    assert viseme_of("UW").round > 0.5 > -0.5 > viseme_of("IY").round
    assert viseme_of("XYZ").dominance < 1  # unknown phones follow their neighbours


def test_lips_shut_for_every_bilabial_even_a_short_one() -> None:
    phones = seq(("SIL", 0.2), ("AA", 0.2), ("M", 0.03), ("AA", 0.2), ("B", 0.06), ("AA", 0.2))
    open_, _ = poses(phones)
    # Shut means pressed: at the closure the opening goes past rest (negative).
    assert open_[at(phones, 2)] == -CLOSURE_PRESS < 0.0
    assert open_[at(phones, 4)] == -CLOSURE_PRESS
    assert open_[at(phones, 1)] > 0.5 and open_[at(phones, 3)] > 0.5


def test_a_plosive_closes_before_its_burst_and_opens_for_it() -> None:
    phones = [Phone("AA", 0.0, 0.3), Phone("P", 0.3, 0.42), Phone("AA", 0.42, 0.8)]
    times = frame_times(FPS, 20)
    shut = closure_amount(phones, times, FPS)
    closed = times[shut == 1.0]
    # Shut from (about) the phone's start, open again by the burst at its end.
    assert closed.min() < 0.3 + 0.5 / FPS and closed.max() < 0.42
    assert shut[times > 0.42].max() == 0.0


def test_neighbours_blend_and_short_vowels_fall_short() -> None:
    long_ = seq(("M", 0.1), ("AA", 0.3), ("M", 0.1))
    short = seq(("M", 0.1), ("AA", 0.04), ("M", 0.1))
    assert poses(short)[0].max() < 0.8 * poses(long_)[0].max()


def test_rounded_and_spread_vowels_pull_the_corners_opposite_ways() -> None:
    phones = seq(("SIL", 0.2), ("UW", 0.25), ("SIL", 0.2), ("IY", 0.25), ("SIL", 0.2))
    _, rounding = poses(phones)
    assert rounding[at(phones, 1)] > 0.6 * ROUNDED.round
    assert rounding[at(phones, 3)] < 0.6 * WIDE.round


def test_loudness_scales_the_opening_and_pauses_rest() -> None:
    phones = seq(("SIL", 0.3), ("AA", 0.3), ("SIL", 0.3))
    loud, _ = poses(phones, 1.0)
    soft, _ = poses(phones, 0.3)
    mid = at(phones, 1)
    assert loud[mid] == pytest.approx(OPEN.open, abs=0.1)
    assert 0.2 * loud[mid] < soft[mid] < 0.5 * loud[mid]
    assert loud[: at(phones, 0) + 2].max() == 0.0 and loud[-3:].max() == 0.0


def test_no_phones_is_a_mouth_at_rest() -> None:
    out = viseme_poses([], np.ones(10), FPS)
    assert len(out) == 10 and all(p.open == 0.0 for p in out)


def test_closure_frames_as_loud_as_the_vowel_open_for_it() -> None:
    # A long aligned /m/ whose last frames carry the next vowel's loudness.
    phones = [Phone("AA", 0.0, 0.4), Phone("M", 0.4, 0.62), Phone("AA", 0.62, 1.0)]
    times = frame_times(FPS, 25)
    loud = np.full(25, 0.9)
    loud[10:13] = 0.35  # the murmur, lips shut
    loud[13:16] = 0.85  # aligned as /m/, sounding like the vowel
    shut = closure_amount(phones, times, FPS, loud)
    assert (shut[10:13] == 1.0).all()
    assert shut[14:].max() == 0.0
    assert closure_amount(phones, times, FPS)[13:15].min() == 1.0  # by the phone alone: shut
