"""Benchmark: the quality report of the demo, and of deliberately broken versions of it.

Renders the demo through the real queues (as `bench/pipeline.py` does), then measures it with
`engines.quality.report` and builds the broken cases from the same avatar and speech: audio 5 frames
late, a frozen mouth, the stock voice instead of the matched one, a blurred mouth, a
flickering mouth, a face pasted back with a colour cast and a band of the background made 3
levels brighter. Prints one table (which cases are flagged, and why) and the report's own cost,
cold (models loading) and warm.

Runs in the lip-sync environment: ``.venvs/lipsync/bin/python bench/quality.py``
(``--render out/demo.mp4`` measures an existing demo render instead of making one).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import soundfile as sf

from cli.demo import DEMO_TEXT, USER, run_demo
from engines.lipsync.landmark import AUDIO_RATE, LandmarkEngine
from engines.media.video import load_audio
from engines.quality import report as quality
from engines.quality import voice as quality_voice
from jayavatar.settings import Settings
from storage import build_storage
from storage.keys import avatar_prefix, voice_prefix
from tests.support import quality_cases

CASES = ("honest", "shifted", "frozen", "wrong_voice", "blurry", "flicker", "pasted", "subtle")


def make_cases(render: Path, avatar: Path, text: str, work: Path) -> dict[str, Path]:
    """The honest demo render and its broken versions, written into `work`."""
    speech = work / "speech.wav"
    sf.write(speech, load_audio(render, AUDIO_RATE), AUDIO_RATE)
    stock = work / "stock.wav"
    sf.write(stock, quality_voice.stock_speech(text), quality_voice.RATE)
    engine = LandmarkEngine(Settings())
    engine.render(avatar, stock, work / "wrong_voice.mp4", lambda f, p: None, {}, text, "en")
    script = {"text": text, "language": "en"}
    return {
        "honest": render,
        "shifted": quality_cases.shift_audio(render, work / "shifted.mp4"),
        "frozen": quality_cases.render_with(
            avatar, speech, work / "frozen.mp4", freeze=True, **script
        ),
        "wrong_voice": work / "wrong_voice.mp4",
        "blurry": quality_cases.render_with(
            avatar, speech, work / "blurry.mp4", mutate=quality_cases.blur_mouth(), **script
        ),
        "flicker": quality_cases.render_with(
            avatar, speech, work / "flicker.mp4", mutate=quality_cases.flicker_mouth(), **script
        ),
        "pasted": quality_cases.render_with(
            avatar, speech, work / "pasted.mp4", mutate=quality_cases.paste_face(), **script
        ),
        "subtle": quality_cases.render_with(
            avatar, speech, work / "subtle.mp4", mutate=quality_cases.brighten_band(), **script
        ),
    }


def row(case: str, r: dict[str, Any]) -> str:
    """One table row of a report."""
    sync, voice, words = r["sync"], r["voice"], r["intelligibility"]
    auth, art, mouth = r["authenticity"], r["artifacts"], r["mouth"]
    measured = mouth.get("measured") and mouth["closure_rate"] is not None
    cells = [
        case,
        f"{sync['corr']:.2f} @{sync['lag_frames']:+d}f" if sync["measured"] else "n/a",
        f"{sync['aperture_spread']:.3f}",
        f"{voice['similarity']:.2f} ({voice['stock_similarity']:.2f})",
        f"{words['wer']:.2f}" if words["measured"] else "n/a",
        f"{100 * auth['changed_fraction']:.3f}%",
        f"{art['blurry_frames']}/{art['face_frames']}",
        f"{art['flicker_ratio']:.2f}",
        f"{100 * mouth['closure_rate']:.0f}% of {mouth['closures']}" if measured else "n/a",
        f"{mouth['round_ratio']}" if mouth.get("measured") else "n/a",
        "; ".join(r["flags"]) or "—",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    """Render (or take) the demo, evaluate it and its broken versions, print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--render", type=Path, default=None, help="an existing demo render")
    parser.add_argument("--text", default=DEMO_TEXT)
    parser.add_argument("-o", "--output", type=Path, default=Path("out/bench-quality"))
    args = parser.parse_args()
    settings = Settings()
    args.output.mkdir(parents=True, exist_ok=True)
    render = args.render
    if render is None:
        render = args.output / "demo.mp4"
        run_demo(settings, render, args.text)
    store = build_storage(settings)
    avatar = store.local_path(avatar_prefix(USER, "demo"))
    voice = store.local_path(voice_prefix(USER, "demo"))
    cpu, wall = _clock(), time.perf_counter()
    cold = quality.evaluate_render(render, avatar, voice, args.text, "en")
    cold_cost = (time.perf_counter() - wall, _clock() - cpu)
    cases = make_cases(render, avatar, args.text, args.output)
    reports, warm_cost = {}, (0.0, 0.0)
    for case in CASES:
        cpu, wall = _clock(), time.perf_counter()
        reports[case] = quality.evaluate_render(cases[case], avatar, voice, args.text, "en")
        if case == "honest":
            warm_cost = (time.perf_counter() - wall, _clock() - cpu)
    seconds = cold["frames"] / cold["fps"]
    print(
        f"\nJayAvatar quality benchmark — {platform.processor() or platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores, demo clip {seconds:.1f} s "
        f"({cold['frames']} frames), offline engines (piper + landmark)\n"
    )
    print(
        "| case | sync @lag | aperture spread | voice (stock) | WER | background changed "
        "| blurry frames | flicker | closures | oo/ee width | flagged |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in CASES:
        print(row(case, reports[case]))
    print(
        f"\n| report cost | wall | CPU |\n|---|---|---|\n"
        f"| cold (models load) | {cold_cost[0]:.2f} s | {cold_cost[1]:.2f} s |\n"
        f"| warm | {warm_cost[0]:.2f} s | {warm_cost[1]:.2f} s |"
    )
    print(f"\nsummary of the demo: {reports['honest']['summary']}")


def _clock() -> float:
    """CPU seconds used by this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
