"""The quality report's picture: drawn from a real render's measurements, every panel present.

The PNG is decoded fully (Pillow), and its text chunks say which panels it has and how many
closure points and pauses it drew, so each can be checked without looking at the picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engines.lipsync.landmark import LandmarkEngine
from engines.quality import plot as quality_plot
from engines.quality import report as quality
from jayavatar.settings import Settings
from tests.support.assets import face_clip
from tests.support.quality import TEXT, matched_speech

pytestmark = [pytest.mark.env("lipsync"), pytest.mark.timeout(300)]


def decoded(path: Path) -> Image.Image:
    """Open and fully decode a PNG; return it with its text chunks."""
    image = Image.open(path)
    image.load()  # decodes every pixel; raises on a truncated or corrupt file
    assert image.format == "PNG"
    return image


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """An honest landmark render of TEXT, evaluated with its picture."""
    root = tmp_path_factory.mktemp("plot")
    voice, speech = matched_speech()
    engine = LandmarkEngine(Settings(_env_file=None))
    engine.prepare(face_clip(), root / "avatar")
    mp4 = root / "good.mp4"
    engine.render(root / "avatar", speech, mp4, lambda f, p: None, {})
    plot = root / "report.png"
    report = quality.evaluate_render(mp4, root / "avatar", voice, TEXT, "en", plot)
    return report, plot


def test_a_render_gets_a_picture_with_every_panel(measured: tuple[dict[str, Any], Path]) -> None:
    report, plot = measured
    assert 30_000 < plot.stat().st_size < 600_000
    image = decoded(plot)
    assert image.width >= 800 and image.height >= 550
    text: dict[str, str] = image.text  # type: ignore[attr-defined]
    assert text["Panels"] == "curves,mouths,voice,checks"
    assert int(text["Mouths"]) == quality_plot.MOMENTS
    # The speech has pauses between its phrases, and its script has lip closures (p/b/m).
    assert int(text["Pauses"]) >= 1
    closures = quality_plot.closure_times(report)
    assert closures and text["Closures"] == str(len(closures))
    # The picture is not blank: the mouth strip and the curves put real variety in it.
    pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500
    assert not list(plot.parent.glob(".*.part")), "written atomically"


def synthetic(closures: list[Any] | None, pauses: list[Any] | None) -> quality_plot.PlotData:
    """Plot data from made-up curves, crops and a report that may list closures and pauses."""
    frames = 100
    t = np.arange(frames) / 25
    report: dict[str, Any] = {
        "sync": {"corr": 0.8, "lag_frames": 1},
        "voice": {"measured": False, "reason": "the voice has no reference recording"},
        "checks": {"sync": "ok", "voice": "not measured"},
        "flags": [],
        "summary": "made up",
    }
    if closures is not None:
        report["mouth"] = {"closure_times_s": closures}
    if pauses is not None:
        report["pauses"] = pauses
    loudness = -20 - 35 * (np.sin(t * 3) < -0.6)
    rng = np.random.default_rng(0)
    crops = [(i, rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)) for i in (10, 50, 90)]
    return quality_plot.PlotData(
        fps=25,
        aperture=0.1 + 0.1 * np.clip(np.sin(t * 3), 0, None),
        loudness=loudness.astype(np.float64),
        report=report,
        crops=crops,
        pauses=quality_plot.report_spans(report, "pauses")
        or quality_plot.find_pauses(loudness, 25),
        closures=quality_plot.closure_times(report),
    )


@pytest.mark.parametrize(
    ("closures", "expected"),
    [
        (None, 0),
        ([0.4, 1.2, 3.0], 3),
    ],
)
def test_closure_points_are_drawn_when_the_report_has_them(
    closures: list[Any] | None, expected: int, tmp_path: Path
) -> None:
    out = tmp_path / "synthetic.png"
    meta = quality_plot.draw(out, synthetic(closures, None))
    text: dict[str, str] = decoded(out).text  # type: ignore[attr-defined]
    assert text["Closures"] == meta["Closures"] == str(expected)
    assert text["Mouths"] == "3"


def test_pauses_come_from_the_report_or_the_loudness(tmp_path: Path) -> None:
    found = synthetic(None, None)
    # sin(3t) < -0.6 holds for about 0.6 s of every 2.1 s period: two pauses in 4 s.
    assert len(found.pauses) == 2 and all(end - start >= 0.15 for start, end in found.pauses)
    listed = synthetic(None, [[0.5, 0.9], {"start": 2.0, "end": 2.4}, [1.0, 1.1]])
    assert listed.pauses == [(0.5, 0.9), (2.0, 2.4), (1.0, 1.1)]
    meta = quality_plot.draw(tmp_path / "p.png", listed)
    assert meta["Pauses"] == "3"


def test_moments_spread_over_the_render() -> None:
    assert quality_plot.pick_moments(130) == [18, 37, 55, 74, 92, 111]
    assert quality_plot.pick_moments(3) == [0, 1, 2]
    assert quality_plot.pick_moments(0) == []
