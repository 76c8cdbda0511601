"""A render's quality report: lip sync, voice likeness, intelligibility, authenticity, artifacts.

`evaluate_render` runs in the lip-sync environment (mediapipe, PyAV, torch) after a render is
delivered, and returns JSON-able numbers, a one-line `summary` and short `flags`. Every model
ships inside a registry package and is loaded once per process, on first use:

- lip sync: FaceMesh lip aperture against the loudness envelope (`engines.quality.audio`);
- voice likeness: resemblyzer cosine of the render's voice and the enrolled reference, next to
  the stock Piper voice's (`engines.quality.voice`);
- intelligibility: faster-whisper tiny.en word error rate against the script (English only);
- authenticity and artifacts: the render against its source clip (`engines.quality.video`).

Thresholds were calibrated with `bench/quality.py` on the offline engines and on deliberately
broken renders (`tests.support.quality_cases`): each broken case is flagged, honest renders are not.

Usage (the `jayavatar eval` command runs this in the lip-sync environment):
``python -m engines.quality.report RENDER.mp4 --avatar DIR --voice DIR --text T``
``[--json OUT] [--plot PNG]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engines.lipsync.alignment import align
from engines.lipsync.facetrack import FaceMesh
from engines.media.video import load_audio
from engines.quality import audio as quality_audio
from engines.quality import mouth as quality_mouth
from engines.quality import plot as quality_plot
from engines.quality import video as quality_video
from engines.quality import voice as quality_voice
from jayavatar.errors import JayAvatarError

Floats = npt.NDArray[np.float32]

# Calibrated thresholds (see the module doc); a report flags anything past them.
MAX_LAG_FRAMES = 2
MIN_SYNC_CORR = 0.5
#: The mouth must move: the spread (5th to 95th percentile) of the aperture, in eye distances.
MIN_APERTURE_SPREAD = 0.06
#: The render's voice must beat the stock voice's likeness by this much, or be this close anyway.
MIN_VOICE_GAIN = 0.08
SAME_VOICE = 0.85
MAX_WER = 0.35
#: A face frame is blurry when its mouth sharpness falls under this share of the source's.
BLUR_RATIO = 0.5
MAX_BLURRY_SHARE = 0.1
#: Flicker: the mouth's mean frame-to-frame change, over the source's, plus this much (grey
#: levels) of slack for an honest mouth that opens and shuts.
FLICKER_SLACK = 6.0
MAX_FLICKER = 1.25
PARTS = ("sync", "voice", "intelligibility", "authenticity", "artifacts", "mouth")


def evaluate_render(
    mp4: Path, avatar_dir: Path, voice_dir: Path, text: str, language: str, plot: Path | None = None
) -> dict[str, Any]:
    """Measure a finished render against its avatar, voice and script; return the report.

    With `plot`, also draw the report as a PNG there (`engines.quality.plot`).
    """
    started = time.perf_counter()
    quality_video.check_inputs(mp4, avatar_dir)  # fail fast, before any model loads
    audio = load_audio(mp4, quality_audio.RATE)
    english = language.split("-")[0].lower() == "en"
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The ASR and speaker models run native code that drops the GIL: overlap them with the
        # picture pass, which spends its time in FaceMesh and numpy.
        sound: Future[dict[str, Any]] = pool.submit(_sound, audio, voice_dir, text, english)
        video = quality_video.measure_video(mp4, avatar_dir)
        voice, intelligibility = sound.result().values()
    report = {
        "sync": _sync(video, audio),
        "voice": voice,
        "intelligibility": intelligibility,
        "authenticity": _authenticity(video),
        "artifacts": _artifacts(video),
        "mouth": _mouth(video, audio, text, language),
        "frames": len(video.aperture),
        "fps": video.fps,
    }
    report["flags"] = flags(report)
    report["checks"] = checks(report)
    report["summary"] = summary(report)
    report["seconds"] = round(time.perf_counter() - started, 3)
    if plot is not None:
        aperture = video.array("aperture")
        quality_plot.plot_render(plot, report, mp4, avatar_dir, aperture, audio, video.fps)
    return report


def _sound(audio: Floats, voice_dir: Path, text: str, english: bool) -> dict[str, Any]:
    """Voice likeness and intelligibility (run beside the picture pass)."""
    return {"voice": _voice(audio, voice_dir), "intelligibility": _words(audio, text, english)}


def _sync(video: quality_video.VideoStats, audio: Floats) -> dict[str, Any]:
    aperture = video.array("aperture")
    loudness = quality_audio.loudness_db(audio, video.fps, len(aperture))
    corr, lag = quality_audio.best_lag(aperture, loudness)
    finite = aperture[np.isfinite(aperture)]
    spread = float(np.percentile(finite, 95) - np.percentile(finite, 5)) if finite.size else 0.0
    return {
        "corr": _round(corr),
        "lag_frames": lag,
        "corr_at_0": _round(quality_audio.lagged_correlation(aperture, loudness, 0)),
        "aperture_spread": round(spread, 4),
        "measured": bool(np.isfinite(corr)),
    }


def _mouth(
    video: quality_video.VideoStats, audio: Floats, text: str, language: str
) -> dict[str, Any]:
    """Closures, rounding and rest, at the script's phones aligned to the render's audio."""
    phones = align(audio, quality_audio.RATE, text, language)
    if phones is None:
        return {"measured": False, "reason": f"no phone alignment for language {language!r}"}
    aperture, width = video.array("aperture"), video.array("width")
    source, eye_px = video.array("source_aperture"), float(np.nanmedian(video.array("eye_px")))
    return quality_mouth.mouth_report(aperture, width, phones, video.fps, source, eye_px)


def _voice(audio: Floats, voice_dir: Path) -> dict[str, Any]:
    reference = quality_voice.find_reference(voice_dir)
    if reference is None:
        return {"measured": False, "reason": "the voice has no reference recording"}
    ref = quality_voice.reference_embedding(reference)
    similarity = quality_voice.cosine(quality_voice.embed(audio), ref)
    stock = quality_voice.cosine(quality_voice.stock_embedding(), ref)
    return {
        "measured": True,
        "similarity": round(similarity, 4),
        "stock_similarity": round(stock, 4),
        "reference": reference.name,
    }


def _words(audio: Floats, text: str, english: bool) -> dict[str, Any]:
    if not english:
        return {"measured": False, "reason": "not measured: the ASR model is English only"}
    transcript = quality_audio.transcribe(audio)
    return {
        "measured": True,
        "wer": round(quality_audio.word_error_rate(text, transcript), 4),
        "transcript": transcript,
    }


def _authenticity(video: quality_video.VideoStats) -> dict[str, Any]:
    changed = np.asarray(video.changed_px)
    checked = int(np.sum(video.outside_px))
    source_face = np.asarray(video.source_face)
    found = np.isfinite(video.array("aperture"))
    return {
        "changed_fraction": float(changed.sum()) / max(checked, 1),
        "changed_pixels": int(changed.sum()),
        "changed_frames": int((changed > 0).sum()),
        "checked_pixels": checked,
        "face_lost_frames": int((source_face & ~found).sum()),
        "faceless_source_frames": int((~source_face).sum()),
        "definition": (
            f"share of pixels outside the engines' mouth masks (+{quality_video.CODEC_MARGIN} px) "
            f"in {quality_video.BLOCK}x{quality_video.BLOCK} tiles whose mean differs from the "
            "source clip encoded again with the render's own encoder settings by over "
            f"{quality_video.FRAME_TOL:g} grey levels in a frame or "
            f"{quality_video.LASTING_TOL:g} on average over the render"
        ),
    }


def _artifacts(video: quality_video.VideoStats) -> dict[str, Any]:
    sharp_r, sharp_s = video.array("sharp_render"), video.array("sharp_source")
    face = np.isfinite(sharp_r) & np.isfinite(sharp_s)
    ratio = sharp_r[face] / np.maximum(sharp_s[face], 1e-6)
    motion_r, motion_s = video.array("motion_render"), video.array("motion_source")
    moving = np.isfinite(motion_r) & np.isfinite(motion_s)
    mean_r = float(motion_r[moving].mean()) if moving.any() else 0.0
    mean_s = float(motion_s[moving].mean()) if moving.any() else 0.0
    return {
        "blurry_frames": int((ratio < BLUR_RATIO).sum()),
        "face_frames": int(face.sum()),
        "sharpness_ratio": _round(float(np.median(ratio)) if ratio.size else float("nan")),
        "mouth_motion": round(mean_r, 3),
        "source_mouth_motion": round(mean_s, 3),
        "flicker_ratio": round(mean_r / (mean_s + FLICKER_SLACK), 3),
    }


def checks(report: dict[str, Any]) -> dict[str, str]:
    """Per part of the report: "ok", "flagged" or "not measured"."""
    found = _flag_parts(report)
    out = {}
    for part in PARTS:
        measured = report[part].get("measured", True)
        out[part] = "flagged" if found[part] else "ok" if measured else "not measured"
    return out


def flags(report: dict[str, Any]) -> list[str]:
    """Short descriptions of everything past a threshold; empty for a clean render."""
    return [text for texts in _flag_parts(report).values() for text in texts]


def _flag_parts(report: dict[str, Any]) -> dict[str, list[str]]:
    """The flags of each part of the report."""
    return {
        "sync": _sync_flags(report["sync"]),
        "voice": _voice_flags(report["voice"]),
        "intelligibility": _word_flags(report["intelligibility"]),
        "authenticity": _authenticity_flags(report["authenticity"], report["frames"]),
        "artifacts": _artifact_flags(report["artifacts"]),
        # A mouth that barely moves is the sync check's flag; closures would say nothing new.
        "mouth": (
            []
            if report["sync"]["aperture_spread"] < MIN_APERTURE_SPREAD
            else quality_mouth.mouth_flags(report["mouth"])
        ),
    }


def _sync_flags(sync: dict[str, Any]) -> list[str]:
    if sync["aperture_spread"] < MIN_APERTURE_SPREAD:
        return ["mouth barely moves"]  # then the lag and the correlation mean nothing
    if not sync["measured"]:
        return []
    if sync["corr"] < MIN_SYNC_CORR:
        return [f"lips do not follow the voice (sync {sync['corr']:.2f})"]
    if abs(sync["lag_frames"]) > MAX_LAG_FRAMES:
        side = "behind" if sync["lag_frames"] > 0 else "ahead of"
        return [f"lips {abs(sync['lag_frames'])} frames {side} the voice"]
    return []


def _voice_flags(voice: dict[str, Any]) -> list[str]:
    if not voice["measured"] or not _voice_unlike(voice):
        return []
    return [
        f"voice unlike the reference ({voice['similarity']:.2f}, "
        f"stock {voice['stock_similarity']:.2f})"
    ]


def _word_flags(words: dict[str, Any]) -> list[str]:
    if words["measured"] and words["wer"] > MAX_WER:
        return [f"hard to understand (WER {words['wer']:.2f})"]
    return []


def _voice_unlike(voice: dict[str, Any]) -> bool:
    """Unlike: neither clearly the same speaker nor clearly closer than the stock voice."""
    similarity, stock = voice["similarity"], voice["stock_similarity"]
    return bool(similarity < SAME_VOICE and similarity < stock + MIN_VOICE_GAIN)


def _authenticity_flags(auth: dict[str, Any], frames: int) -> list[str]:
    out = []
    if auth["changed_pixels"]:
        out.append(
            f"pixels outside the mouth changed ({100 * auth['changed_fraction']:.2f}% "
            f"in {auth['changed_frames']} frames)"
        )
    if auth["face_lost_frames"]:
        out.append(f"no face found in {auth['face_lost_frames']} of {frames} frames")
    return out


def _artifact_flags(art: dict[str, Any]) -> list[str]:
    out = []
    if art["face_frames"] and art["blurry_frames"] > MAX_BLURRY_SHARE * art["face_frames"]:
        out.append(f"blurry mouth in {art['blurry_frames']} frames")
    if art["flicker_ratio"] > MAX_FLICKER:
        out.append(f"mouth flickers ({art['flicker_ratio']:.1f}x)")
    return out


def summary(report: dict[str, Any]) -> str:
    """One line: sync, voice, WER, background, artifacts."""
    sync, voice, words = report["sync"], report["voice"], report["intelligibility"]
    auth, art = report["authenticity"], report["artifacts"]
    parts = [
        f"sync {sync['corr']:.2f} @{sync['lag_frames']}f" if sync["measured"] else "sync n/a",
        (
            f"voice {voice['similarity']:.2f} (stock {voice['stock_similarity']:.2f})"
            if voice["measured"]
            else "voice n/a"
        ),
        f"WER {words['wer']:.2f}" if words["measured"] else "WER not measured",
        (
            "background untouched"
            if auth["changed_pixels"] == 0
            else f"background {100 * auth['changed_fraction']:.2f}% changed"
        ),
        f"{_artifact_count(art)} artifacts",
    ]
    if report["mouth"].get("measured") and report["mouth"]["closure_rate"] is not None:
        parts.append(f"closures {100 * report['mouth']['closure_rate']:.0f}%")
    line = " · ".join(parts)
    return line if not report["flags"] else f"{line} · {len(report['flags'])} flagged"


def _artifact_count(art: dict[str, Any]) -> int:
    """Blurry frames, plus every frame when the mouth flickers."""
    flicker = art["face_frames"] if art["flicker_ratio"] > MAX_FLICKER else 0
    return int(art["blurry_frames"]) + int(flicker)


def _round(value: float, digits: int = 4) -> float | None:
    """Round for JSON; NaN becomes None (JSON has no NaN)."""
    return round(float(value), digits) if np.isfinite(value) else None


def warm_up() -> None:
    """Load every model and the stock-voice baseline now, so the first report is fast too."""
    quality_voice.stock_embedding()
    quality_audio.transcribe(np.zeros(quality_audio.RATE, np.float32))
    FaceMesh(video=True).close()


def main(argv: list[str] | None = None) -> int:
    """Evaluate one render and write the report as JSON (stdout, or --json FILE).

    An error from the JayAvatar tree is written as ``{"error": {"kind", "message"}}`` with exit
    code 1, so the caller in another environment can raise the same error.
    """
    parser = argparse.ArgumentParser(prog="python -m engines.quality.report", description=__doc__)
    parser.add_argument("mp4", type=Path)
    parser.add_argument("--avatar", type=Path, required=True, help="prepared avatar folder")
    parser.add_argument("--voice", type=Path, required=True, help="enrolled voice folder")
    parser.add_argument("--text", required=True, help="the script the render speaks")
    parser.add_argument("--language", default="en")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--plot", type=Path, default=None, help="draw the report as a PNG here")
    args = parser.parse_args(argv)
    code = 0
    try:
        report = evaluate_render(
            args.mp4, args.avatar, args.voice, args.text, args.language, args.plot
        )
    except JayAvatarError as exc:
        report, code = {"error": {"kind": type(exc).__name__, "message": str(exc)}}, 1
    data = json.dumps(report, indent=2, sort_keys=True)
    if args.json is None:
        print(data)
    else:
        args.json.write_text(data + "\n", encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main())
