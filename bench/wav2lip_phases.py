"""Where a short Wav2Lip render's time goes: the phase marks of warm renders, per set-up.

    PYTHONPATH=. python3 bench/wav2lip_phases.py [--seconds 10] [--renders 5] [--out F]

A warm engine (random weights, synthetic 720p avatar, as bench/wav2lip_gpu.py builds them)
renders the same audio several times per set-up; the table gives the median seconds from the
render's call to each phase (`StageClock.mark`): the generator loaded, the avatar's track
and the audio read, the mel, the plan made, the helper processes told, the first chunk
decoded, generated and composited, the last frame composited, the encoders flushed and the
file muxed, the file in place. Set-ups are passed as NAME=KEY:VALUE,... (engine options;
`segment:S` sets the seconds of output per encoder run instead).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.wav2lip_synth import make_audio, make_avatar, save_weights
from engines.lipsync import wav2lip_procs
from engines.lipsync.wav2lip import Wav2LipEngine
from jayavatar.settings import Settings

PHASES = (
    "loaded", "track", "audio", "mel", "planned", "opened", "started", "decoded", "generated",
    "composited", "decoded_all", "composited_all", "flushing", "muxed", "done",
)  # fmt: skip
DEFAULT_SETUPS = (
    "default=",
    "ultrafast=preset:ultrafast",
    "1 encoder=encoders:1",
)


def parse_setup(text: str) -> tuple[str, dict[str, Any]]:
    """NAME=KEY:VALUE,... → (name, engine options); integers and booleans are converted."""
    name, _, spec = text.partition("=")
    options: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition(":")
        options[key] = (
            int(value) if value.isdigit() else {"true": True, "false": False}.get(value, value)
        )
    return name, options


def phases_of(
    engine: Wav2LipEngine, avatar: Path, audio: Path, renders: int
) -> list[dict[str, Any]]:
    """Two untimed renders, then `renders` timed ones; each render's phase marks and wall."""
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(renders + 2):
            t = time.perf_counter()
            stats = engine.render(avatar, audio, Path(tmp) / "out.mp4", lambda f, p: None, {})
            wall = time.perf_counter() - t
            if k >= 2:
                out.append({**stats["phases_s"], "wall": wall, "frames": stats["frames"]})
    return out


def table(rows: list[tuple[str, list[dict[str, Any]]]]) -> str:
    """A Markdown table: one column per set-up, one row per phase (median seconds)."""
    lines = [
        "| phase | " + " | ".join(name for name, _ in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for phase in (*PHASES, "wall"):
        cells = []
        for _, runs in rows:
            values = [r[phase] for r in runs if phase in r]
            cells.append(f"{statistics.median(values):.3f}" if values else "-")
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    spread = [f"{min(r['wall'] for r in runs):.3f}–{max(r['wall'] for r in runs):.3f}"
              for _, runs in rows]  # fmt: skip
    lines.append("| wall, range | " + " | ".join(spread) + " |")
    return "\n".join(lines)


def main() -> None:
    """Render with each set-up and print the phase table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="speech length")
    parser.add_argument("--renders", type=int, default=5)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--out", type=Path)
    parser.add_argument("setups", nargs="*", default=list(DEFAULT_SETUPS))
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    card = torch.cuda.get_device_name() if cuda else platform.processor() or "CPU"
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="w2lphases-"))
    settings = Settings(models_dir=work / "models", device="cuda" if cuda else "cpu")
    save_weights(settings.models_dir)
    avatar = make_avatar(work / "avatar", width, height, 10.0)
    audio = make_audio(work / "speech.wav", args.seconds)
    rows = []
    segment = wav2lip_procs.SEGMENT_S
    for text in args.setups:
        name, options = parse_setup(text)
        wav2lip_procs.SEGMENT_S = options.pop("segment", segment)
        engine = Wav2LipEngine(settings, **options)
        engine.load()
        rows.append((name, phases_of(engine, avatar, audio, args.renders)))
        engine.close()
        print(f"{name}: {[round(r['wall'], 3) for r in rows[-1][1]]}", flush=True)
    report = (
        f"### {card}: {args.size}, {args.seconds:g} s of speech, "
        f"{rows[0][1][0]['frames']} frames, median of {args.renders} warm renders (s)\n\n"
        + table(rows)
    )
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
