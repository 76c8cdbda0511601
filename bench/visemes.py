"""Benchmark: does the demo avatar's mouth form the words? Closures, rounding, sync, timing.

Speaks a script with the stock Piper voice, renders it onto the demo avatar with the landmark
engine twice (phones from the aligned script, and audio alone), measures each render with
FaceMesh (closure rate, rounding ratio, aperture/loudness correlation at lag 0, rest in pauses)
and prints one table with the render times. With ``--picture PNG`` it also writes one row of
mouth crops per viseme from the phone-driven render.

Runs in the lip-sync environment: ``.venvs/lipsync/bin/python bench/visemes.py``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import PIL.Image
import soundfile as sf

from engines.lipsync.alignment import Phone, align
from engines.lipsync.demo_assets import make_demo_avatar
from engines.lipsync.facetrack import MOUTH_LEFT, MOUTH_RIGHT, FaceMesh, face_scale, lip_aperture
from engines.lipsync.landmark import LandmarkEngine
from engines.lipsync.visemes import frame_times, viseme_of
from engines.media.video import iter_frames
from engines.quality import audio as quality_audio
from engines.quality import voice as quality_voice
from engines.quality.mouth import mouth_report
from jayavatar.settings import Settings

SCRIPT = (
    "Hi! I'm JayAvatar. Type a line in Discord, and a minute later I say it, in your voice. "
    "Maybe we could play some music, or move over to the blue room for coffee."
)
ROW_VISEMES = ("rest", "closed", "lip-teeth", "teeth", "rounded", "round-open", "wide", "open")
Image = npt.NDArray[np.uint8]


def measure(mp4: Path) -> tuple[Image | None, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-frame (frames kept for crops, aperture, width over eye distance) of a render."""
    apertures, widths = [], []
    with FaceMesh(video=True) as mesh:
        for frame in iter_frames(mp4):
            lm = mesh.landmarks(frame)
            if lm is None:
                apertures.append(np.nan)
                widths.append(np.nan)
                continue
            apertures.append(lip_aperture(lm))
            widths.append(float(np.linalg.norm(lm[MOUTH_LEFT] - lm[MOUTH_RIGHT])) / face_scale(lm))
    return None, np.array(apertures), np.array(widths)


def render(avatar: Path, speech: Path, out: Path, text: str) -> tuple[dict[str, Any], float]:
    """Render once; return (stats, seconds)."""
    engine = LandmarkEngine(Settings())
    started = time.perf_counter()
    stats = engine.render(avatar, speech, out, lambda f, p: None, {}, text, "en" if text else "")
    return stats, time.perf_counter() - started


def picture(mp4: Path, phones: list[Phone], fps: float, out: Path) -> None:
    """One row per viseme: mouth crops at the middle of the longest phones of that viseme."""
    frames = list(iter_frames(mp4))
    with FaceMesh(video=False) as mesh:
        lm = mesh.landmarks(frames[0])
    assert lm is not None
    cx, cy = (lm[MOUTH_LEFT] + lm[MOUTH_RIGHT]) / 2
    half = int(0.9 * np.linalg.norm(lm[MOUTH_LEFT] - lm[MOUTH_RIGHT]))
    times = frame_times(fps, len(frames))
    rows = []
    for name in ROW_VISEMES:
        chosen = [p for p in phones if viseme_of(p.name).name == name]
        if name == "rest":
            chosen = [p for p in phones if p.name == "SIL"]
        chosen = sorted(chosen, key=lambda p: p.end - p.start, reverse=True)[:4]
        crops = []
        for p in sorted(chosen, key=lambda p: p.start):
            i = int(np.argmin(np.abs(times - p.mid)))
            crop = frames[i][int(cy) - half // 2 : int(cy) + half, int(cx) - half : int(cx) + half]
            crops.append(cv2.resize(crop, (96, 72), interpolation=cv2.INTER_AREA))
        while len(crops) < 4:
            crops.append(np.full((72, 96, 3), 255, np.uint8))
        label = np.full((72, 110, 3), 255, np.uint8)
        cv2.putText(label, name, (4, 42), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.hstack([label, *crops]))
    # 256 colours keep the committed picture small; the crops hold few colours anyway.
    PIL.Image.fromarray(np.vstack(rows)).quantize(256, dither=PIL.Image.Dither.NONE).save(out)


def deficit_by_phone(
    aperture: npt.NDArray[np.float64],
    loudness: npt.NDArray[np.float64],
    phones: list[Phone],
    fps: float,
) -> dict[str, float]:
    """Each phone's share of 1 - r (r: aperture/loudness correlation at lag 0), largest first.

    With both series standardised, 1 - r is the mean of (za - zl)² / 2 over the frames, so the
    frames of each phone (and of the pauses, "SIL") add up to the whole deficit.
    """
    n = min(len(aperture), len(loudness))
    a, b = aperture[:n], loudness[:n]
    ok = np.isfinite(a) & np.isfinite(b)
    za = (a - a[ok].mean()) / a[ok].std()
    zl = (b - b[ok].mean()) / b[ok].std()
    labels = np.full(n, "SIL", dtype=object)
    times = frame_times(fps, n)
    for p in phones:
        labels[(times >= p.start) & (times < p.end)] = p.name
    shares: dict[str, float] = {}
    for i in np.flatnonzero(ok):
        shares[labels[i]] = shares.get(labels[i], 0.0) + (za[i] - zl[i]) ** 2 / (2 * ok.sum())
    return dict(sorted(shares.items(), key=lambda kv: -kv[1]))


def main() -> None:
    """Render, measure and print the table (and write the picture if asked)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--picture", type=Path, default=None)
    parser.add_argument("--side", type=int, default=512, help="demo avatar size")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed Piper's noise: a repeatable reading"
    )
    args = parser.parse_args()
    if args.seed is not None:
        import onnxruntime

        # Only the process's first seed takes, so before Piper's session exists.
        onnxruntime.set_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        speech = tmp / "speech.wav"
        audio16 = quality_voice.stock_speech(SCRIPT)
        sf.write(speech, audio16, quality_voice.RATE)
        photo = make_demo_avatar(tmp / "face.png", side=args.side)
        LandmarkEngine(Settings()).prepare(photo, tmp / "avatar")
        t0 = time.perf_counter()
        phones = align(audio16, quality_voice.RATE, SCRIPT, "en")
        align_s = time.perf_counter() - t0
        assert phones is not None, "the script did not align"
        print(
            f"alignment: {len(phones)} phones in {align_s:.2f} s for {len(audio16) / 16000:.1f} s"
        )
        rows = []
        for label, text in (("phones", SCRIPT), ("audio only", "")):
            out = tmp / f"{label.replace(' ', '_')}.mp4"
            stats, seconds = render(tmp / "avatar", speech, out, text)
            _, aperture, width = measure(out)
            fps = float(stats["fps"])
            mouth = mouth_report(aperture, width, phones, fps)
            loud = quality_audio.loudness_db(audio16, fps, len(aperture))
            corr0 = quality_audio.lagged_correlation(aperture, loud, 0)
            corr, lag = quality_audio.best_lag(aperture, loud)
            rows.append((label, seconds, stats, mouth, corr0, corr, lag))
            deficit = deficit_by_phone(aperture, loud, phones, fps)
            print(f"{label}: 1 - corr@0 = {1 - corr0:.3f}, by phone: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in list(deficit.items())[:8]))  # fmt: skip
            if label == "phones" and args.picture is not None:
                picture(out, phones, fps, args.picture)
    print("| cues | render s | closure rate | round ratio | corr@0 | best lag | rest in pauses |")
    print("|---|---|---|---|---|---|---|")
    for label, seconds, _stats, m, corr0, corr, lag in rows:
        print(
            f"| {label} | {seconds:.2f} | {m['closure_rate']} ({m['closures']}) | "
            f"{m['round_ratio']} | {corr0:.3f} | {lag} ({corr:.3f}) | {m['rest_in_pauses']} |"
        )


if __name__ == "__main__":
    main()
