"""The quality report as one picture: what a person checks at a glance.

Four panels, drawn with matplotlib's Agg backend (no display needed):

- curves: the loudness of the voice and the lip aperture over time, pauses shaded, the best
  lag and its correlation in the title, closure points (lips shut for p/b/m) where the report
  has them, and the moments of the mouth strip marked;
- mouths: crops of the mouth at those moments, from the render itself;
- voice: the render's likeness to the enrolled reference next to the stock voice's;
- checks: each part's verdict and the flags.

The PNG's text chunks name the panels and count the closure points and pauses drawn, so a
reader (or a test) can tell what the picture shows without looking at it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engines.lipsync.facetrack import FaceTrack
from engines.media.video import iter_frames, pingpong_index
from engines.quality import audio as quality_audio
from engines.quality.video import mouth_box

Array = npt.NDArray[np.float64]
Image = npt.NDArray[np.uint8]
PANELS = ("curves", "mouths", "voice", "checks")
#: Mouth crops in the strip.
MOMENTS = 6
#: A pause: at least PAUSE_S seconds this many dB under the loudest frame.
PAUSE_DB = 30.0
PAUSE_S = 0.15
CROP_SIZE = (160, 120)  # width, height
VERDICT_COLOURS = {"ok": "#2e7d32", "flagged": "#c62828", "not measured": "#757575"}


@dataclass
class PlotData:
    """Everything the picture shows, already measured."""

    fps: float
    aperture: Array
    loudness: Array
    report: dict[str, Any]
    crops: list[tuple[int, Image]] = field(default_factory=list)  # (frame, RGB crop)
    pauses: list[tuple[float, float]] = field(default_factory=list)  # seconds
    closures: list[float] = field(default_factory=list)  # seconds


def plot_render(
    out: Path,
    report: dict[str, Any],
    mp4: Path,
    avatar_dir: Path,
    aperture: Array,
    audio: npt.NDArray[np.float32],
    fps: float,
) -> dict[str, str]:
    """Draw a measured render's picture into `out` (PNG); return the PNG's text chunks."""
    loudness = quality_audio.loudness_db(audio, fps, len(aperture))
    moments = pick_moments(len(aperture))
    data = PlotData(
        fps=fps,
        aperture=np.asarray(aperture, np.float64),
        loudness=loudness,
        report=report,
        crops=mouth_crops(mp4, avatar_dir, moments),
        pauses=report_spans(report, "pauses") or find_pauses(loudness, fps),
        closures=closure_times(report),
    )
    return draw(out, data)


def pick_moments(frames: int, count: int = MOMENTS) -> list[int]:
    """Evenly spread frame indices, away from the very first and last frame."""
    if frames <= 0:
        return []
    picks = np.linspace(0, frames - 1, count + 2)[1:-1]
    return sorted(set(np.rint(picks).astype(int).tolist()))


def find_pauses(loudness: Array, fps: float) -> list[tuple[float, float]]:
    """Spans (seconds) at least PAUSE_S long where the voice is PAUSE_DB under its peak."""
    if loudness.size == 0:
        return []
    quiet = loudness < loudness.max() - PAUSE_DB
    spans, start = [], None
    for i, silent in enumerate([*quiet.tolist(), False]):
        if silent and start is None:
            start = i
        elif not silent and start is not None:
            if (i - start) / fps >= PAUSE_S:
                spans.append((start / fps, i / fps))
            start = None
    return spans


def closure_times(report: dict[str, Any]) -> list[float]:
    """Times (seconds) of lip closures for p/b/m from the report's mouth part; empty without."""
    found = _get(report, "mouth", "closure_times_s")
    return [float(t) for t in found] if isinstance(found, list) else []


def report_spans(report: dict[str, Any], name: str) -> list[tuple[float, float]]:
    """(start, end) spans in seconds that the report lists under `name`, if any."""
    found = report.get(name) or _get(report, "sync", name)
    spans = []
    for item in found if isinstance(found, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2:
            spans.append((float(item[0]), float(item[1])))
        elif isinstance(item, dict) and {"start", "end"} <= item.keys():
            spans.append((float(item["start"]), float(item["end"])))
    return spans


def _get(report: dict[str, Any], part: str, key: str) -> Any:
    value = report.get(part)
    return value.get(key) if isinstance(value, dict) else None


def mouth_crops(mp4: Path, avatar_dir: Path, moments: Iterable[int]) -> list[tuple[int, Image]]:
    """Crops of the mouth at the given render frames, boxed from the avatar's face track."""
    import cv2

    wanted = set(moments)
    track = FaceTrack.load(avatar_dir / "track.npz")
    crops = []
    for index, frame in enumerate(iter_frames(mp4)):
        if index > max(wanted, default=-1):
            break
        if index in wanted:
            rows, cols = _crop_box(track, pingpong_index(index, len(track)), frame.shape)
            crop = cv2.resize(frame[rows, cols], CROP_SIZE, interpolation=cv2.INTER_AREA)
            crops.append((index, np.asarray(crop, np.uint8)))
    return crops


def _crop_box(track: FaceTrack, clip_index: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The mouth box grown to the strip's aspect ratio (the frame's lower middle without a face)."""
    height, width = shape[:2]
    if track.present[clip_index]:
        rows, cols = mouth_box(track.landmarks[clip_index], width, height)
        cy, cx = (rows.start + rows.stop) / 2, (cols.start + cols.stop) / 2
        half_w = max(cols.stop - cols.start, (rows.stop - rows.start) * 4 / 3) * 0.65
    else:
        cy, cx, half_w = height * 0.65, width / 2, width / 6
    half_h = half_w * 3 / 4
    y1, x1 = int(max(0, cy - half_h)), int(max(0, cx - half_w))
    return slice(y1, int(min(height, cy + half_h))), slice(x1, int(min(width, cx + half_w)))


def draw(out: Path, data: PlotData) -> dict[str, str]:
    """Draw the four panels into `out` (PNG, written atomically); return its text chunks."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.gridspec import GridSpec

    fig = plt.figure(figsize=(10, 7.2), dpi=100)
    grid = GridSpec(3, MOMENTS, figure=fig, height_ratios=[2.3, 1.25, 1.2], hspace=0.45)
    _curves(fig.add_subplot(grid[0, :]), data)
    _mouths([fig.add_subplot(grid[1, i]) for i in range(MOMENTS)], data)
    _voice(fig.add_subplot(grid[2, : MOMENTS // 2]), data.report.get("voice", {}))
    _checks(fig.add_subplot(grid[2, MOMENTS // 2 :]), data.report)
    fig.suptitle(_title(data), fontsize=11, x=0.01, ha="left")
    meta = {
        "Title": "JayAvatar quality report",
        "Panels": ",".join(PANELS),
        "Closures": str(len(data.closures)),
        "Pauses": str(len(data.pauses)),
        "Mouths": str(len(data.crops)),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.part")
    fig.savefig(part, format="png", metadata=meta, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    part.replace(out)
    return meta


def _title(data: PlotData) -> str:
    seconds = len(data.aperture) / data.fps if data.fps else 0.0
    summary = str(data.report.get("summary", ""))
    return f"Quality report · {seconds:.1f} s at {data.fps:g} fps · {summary}"


def _curves(ax: Any, data: PlotData) -> None:
    """Loudness and aperture over time, pauses shaded, closures and the strip's moments."""
    times = np.arange(len(data.aperture)) / data.fps
    for start, end in data.pauses:
        ax.axvspan(start, end, color="#d0d7de", alpha=0.6, lw=0)
    ax.plot(times, data.loudness, color="#1f77b4", lw=1.2, label="loudness (dB)")
    ax.set_ylabel("loudness (dB)", color="#1f77b4")
    ax.set_xlabel("time (s)")
    ax.set_xlim(0, max(times[-1] if len(times) else 1.0, 1e-3))
    twin = ax.twinx()
    twin.plot(times, data.aperture, color="#d62728", lw=1.4, label="lip aperture")
    twin.set_ylabel("lip aperture (eye distances)", color="#d62728")
    if data.closures:
        at = np.clip(np.round(np.asarray(data.closures) * data.fps).astype(int), 0, None)
        at = at[at < len(data.aperture)]
        twin.scatter(at / data.fps, data.aperture[at], marker="v", color="black", s=28,
                     zorder=5, label="closures (p/b/m)")  # fmt: skip
    for letter, (index, _crop) in zip(_letters(), data.crops, strict=False):
        ax.axvline(index / data.fps, color="#555", lw=0.8, ls=":")
        ax.text(index / data.fps, 1.01, letter, transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=8)  # fmt: skip
    sync = data.report.get("sync", {})
    ax.set_title(_sync_words(sync, len(data.pauses)), fontsize=9, loc="left", pad=14)
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper right", fontsize=8)


def _sync_words(sync: dict[str, Any], pauses: int) -> str:
    if sync.get("corr") is None:
        return f"lip sync not measured · {pauses} pauses shaded"
    lag = int(sync.get("lag_frames", 0))
    side = "lips behind the voice" if lag > 0 else "lips ahead of the voice" if lag < 0 else ""
    lag_words = f"best lag {lag:+d} frames" + (f" ({side})" if side else "")
    return f"correlation {sync['corr']:.2f}, {lag_words} · {pauses} pauses shaded"


def _letters() -> Iterable[str]:
    return "ABCDEFGHIJ"


def _mouths(axes: list[Any], data: PlotData) -> None:
    """The strip of mouth crops, each labelled with its letter, time and aperture."""
    for ax in axes:
        ax.set_axis_off()
    for ax, letter, (index, crop) in zip(axes, _letters(), data.crops, strict=False):
        ax.imshow(crop)
        value = data.aperture[index] if index < len(data.aperture) else float("nan")
        shown = f"{value:.3f}" if np.isfinite(value) else "no face"
        ax.set_title(f"{letter} · {index / data.fps:.2f} s · {shown}", fontsize=8)


def _voice(ax: Any, voice: dict[str, Any]) -> None:
    """The render's voice likeness to the reference, against the stock voice's."""
    ax.set_title("voice likeness to the enrolled reference", fontsize=9, loc="left")
    if not voice.get("measured"):
        ax.set_axis_off()
        ax.text(0, 0.5, str(voice.get("reason", "not measured")), fontsize=9, va="center")
        return
    names, values = ["this render", "stock voice"], [voice["similarity"], voice["stock_similarity"]]
    bars = ax.barh(names, values, color=["#2e7d32", "#9e9e9e"])
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=8)
    ax.set_xlim(0, 1.1)
    ax.invert_yaxis()
    ax.set_xlabel("cosine similarity (speaker embedding)", fontsize=8)


def _checks(ax: Any, report: dict[str, Any]) -> None:
    """Each part's verdict, then the flags."""
    ax.set_axis_off()
    ax.set_title("checks", fontsize=9, loc="left")
    checks = report.get("checks", {})
    y = 0.92
    for part, verdict in checks.items():
        colour = VERDICT_COLOURS.get(str(verdict), "black")
        ax.text(0.0, y, part, fontsize=9, va="top", transform=ax.transAxes)
        ax.text(0.45, y, str(verdict), fontsize=9, va="top", color=colour, transform=ax.transAxes)
        y -= 0.15
    for flag in report.get("flags", [])[:3]:
        ax.text(0.0, y, f"flag: {flag}"[:70], fontsize=8, va="top", color="#c62828",
                transform=ax.transAxes)  # fmt: skip
        y -= 0.13
