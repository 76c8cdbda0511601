"""The mouth checks: closures against rest, rounding against spreading, rest in pauses."""

from __future__ import annotations

import numpy as np
import pytest

from engines.lipsync.alignment import Phone
from engines.quality.mouth import (
    closure_misses,
    mouth_flags,
    mouth_report,
    pause_frames,
)

pytestmark = pytest.mark.env("lipsync")

FPS = 25.0
PHONES = [
    Phone("SIL", 0.0, 0.4),
    Phone("M", 0.4, 0.5),
    Phone("UW", 0.5, 0.7),
    Phone("SIL", 0.7, 1.0),
    Phone("P", 1.0, 1.1),
    Phone("IY", 1.1, 1.3),
    Phone("SIL", 1.3, 1.6),
]
FRAMES = 40
REST = 0.07


def series(values: dict[tuple[float, float], float], base: float) -> np.ndarray:
    """A per-frame series at `base`, with the value given for each (start, end) span of time."""
    out = np.full(FRAMES, base)
    times = (np.arange(FRAMES) + 0.5) / FPS
    for (start, end), value in values.items():
        out[(times >= start) & (times < end)] = value
    return out


def test_pauses_are_the_long_silences_less_their_edges() -> None:
    frames = pause_frames(PHONES, FPS, FRAMES)
    assert frames.min() == 1 and 9 not in frames  # a frame in from the edge
    assert set(range(19, 24)) <= set(frames)


def test_a_closure_counts_when_the_lips_come_back_to_rest() -> None:
    aperture = series({(0.5, 0.7): 0.2, (1.1, 1.3): 0.2}, REST)
    report = mouth_report(aperture, np.ones(FRAMES), PHONES, FPS)
    assert report["rest_aperture"] == pytest.approx(REST)
    assert report["closure_rate"] == 1.0 and report["closures"] == 2
    assert report["closure_times_s"] == [0.45, 1.05]
    assert report["rest_in_pauses"] == 1.0
    assert mouth_flags(report) == ["lips do not round (width ratio 1.00)"]


def test_a_mouth_left_open_over_a_closure_is_flagged() -> None:
    aperture = series({(0.4, 0.7): 0.2, (1.0, 1.3): 0.2}, REST)
    times, misses = closure_misses(aperture, PHONES, FPS, REST)
    assert times == [0.45, 1.05] and min(misses) > 0.1
    width = series({(0.5, 0.7): 0.8, (1.1, 1.3): 1.0}, 0.9)
    report = mouth_report(aperture, width, PHONES, FPS)
    assert report["closure_rate"] == 0.0
    assert report["round_ratio"] == pytest.approx(0.8)
    assert mouth_flags(report) == ["lips close at 0% of p/b/m"]


def test_unmeasured_frames_and_missing_pauses_say_not_measured() -> None:
    aperture = np.full(FRAMES, np.nan)
    report = mouth_report(aperture, aperture, PHONES, FPS)
    assert report["measured"] is False and mouth_flags(report) == []
    no_pause = [Phone("AA", 0.0, 1.6)]
    assert mouth_report(np.ones(FRAMES), np.ones(FRAMES), no_pause, FPS)["measured"] is False


@pytest.mark.parametrize(("eye_px", "flagged"), [(0.0, True), (40.0, False), (200.0, True)])
def test_a_small_face_is_allowed_a_pixel_of_rounding(eye_px: float, flagged: bool) -> None:
    # Rounded width 0.92 against spread 1.0: over the 0.9 goal by 0.02 eye distances, which is
    # less than a pixel where the eyes are 40 pixels apart and five pixels where they are 200.
    aperture = series({(0.5, 0.7): 0.2, (1.1, 1.3): 0.2}, REST)
    width = series({(0.5, 0.7): 0.92, (1.1, 1.3): 1.0}, 0.95)
    report = mouth_report(aperture, width, PHONES, FPS, eye_px=eye_px)
    assert report["round_ratio"] == pytest.approx(0.92)
    assert mouth_flags(report) == (["lips do not round (width ratio 0.92)"] if flagged else [])
