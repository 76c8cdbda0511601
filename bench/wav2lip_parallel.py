"""How many 10 s Wav2Lip renders a minute one GPU host gives with N engines side by side.

    PYTHONPATH=. python3 bench/wav2lip_parallel.py --engines 4 --pin 3 [--mps] [--seconds 60]

The lip-sync stage alone, as a lip-sync worker runs it: each engine is a process of its own
(random weights, the synthetic 720p avatar of bench/wav2lip_synth.py), pinned to `--pin`
cores of its own when asked, with its decoder, encoder and muxer processes. After two warm
renders each, all engines start together and render the same 10 s of speech over and over
for `--seconds`; the table gives renders a minute (completed renders × 60 / wall), the median
render, and the host's CPU use. `--mps` runs NVIDIA's MPS daemon around the run (root).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def engine_main(work: Path, index: int, options: dict[str, Any]) -> None:
    """One engine: warm up, say so, read the deadline (the start), render until it; report."""
    import torch

    from engines.lipsync.wav2lip import Wav2LipEngine
    from jayavatar.settings import Settings

    device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = Settings(models_dir=work / "models", device=device)
    engine = Wav2LipEngine(settings, **options)
    engine.load()
    out = work / f"out{index}.mp4"
    for _ in range(2):
        engine.render(work / "avatar", work / "speech.wav", out, lambda f, p: None, {})
    print("ready", flush=True)
    until = float(sys.stdin.readline())
    seconds = []
    while time.time() < until:
        t = time.perf_counter()
        engine.render(work / "avatar", work / "speech.wav", out, lambda f, p: None, {})
        seconds.append(time.perf_counter() - t)
    engine.close()
    print(json.dumps({"renders": seconds, "ended": time.time()}), flush=True)


def run(
    work: Path, engines: int, pin: int, seconds: float, options: dict[str, Any]
) -> dict[str, Any]:
    """Start the engines, release them together, and gather their renders."""
    procs = []
    for k in range(engines):
        cmd = [sys.executable, __file__, "--engine", str(k), "--work", str(work)]
        cmd += ["--options", json.dumps(options)]
        cpus = set(range(k * pin, (k + 1) * pin)) if pin else None
        procs.append(
            subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stdin=subprocess.PIPE,
                preexec_fn=(lambda c=cpus: os.sched_setaffinity(0, c)) if cpus else None,
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise SystemExit("an engine failed to start")
    busy0, total0 = cpu_times()
    start = time.time()
    until = start + seconds
    for proc in procs:  # the deadline is the start signal
        assert proc.stdin is not None
        proc.stdin.write(f"{until}\n".encode())
        proc.stdin.close()
    results = []
    for proc in procs:
        assert proc.stdout is not None
        results.append(json.loads(proc.stdout.read().decode().strip().splitlines()[-1]))
        proc.wait()
    busy1, total1 = cpu_times()
    wall = max(r["ended"] for r in results) - start
    renders = [s for r in results for s in r["renders"]]
    return {
        "engines": engines,
        "pin": pin,
        "renders": len(renders),
        "wall": wall,
        "per_min": len(renders) * 60 / wall,
        "p50": statistics.median(renders),
        "max": max(renders),
        "cpu_busy": (busy1 - busy0) / max(1.0, total1 - total0),
    }


def main() -> None:
    """Parse arguments; run one engine (internal) or the whole measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, nargs="+", default=[4])
    parser.add_argument("--pin", type=int, default=3, help="cores per engine (0: no pinning)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--mps", action="store_true")
    parser.add_argument("--preset", default="")
    parser.add_argument("--size", default="1280x720", help="avatar size (small for a smoke run)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--engine", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine is not None:
        engine_main(args.work, args.engine, json.loads(args.options))
        return
    import torch

    from bench.wav2lip_synth import make_audio, make_avatar, save_weights

    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="w2lpar-"))
    save_weights(work / "models")
    make_avatar(work / "avatar", width, height, 10.0)
    make_audio(work / "speech.wav", 10.0)
    options = {"preset": args.preset} if args.preset else {}
    if args.mps:
        subprocess.run(["nvidia-cuda-mps-control", "-d"], check=True)
    rows = []
    try:
        for n in args.engines:
            row = run(work, n, args.pin, args.seconds, options)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if args.mps:
            subprocess.run(["nvidia-cuda-mps-control"], input=b"quit\n", check=False)
    lines = [
        f"### {card}, {os.cpu_count()} cores: 10 s {args.size} renders side by side"
        + (", MPS" if args.mps else "")
        + (f", preset {args.preset}" if args.preset else ""),
        "",
        "| engines | cores each | renders | wall s | renders/min | render p50 s | max s "
        "| CPU busy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engines']} | {r['pin'] or 'all'} | {r['renders']} | {r['wall']:.1f} | "
            f"{r['per_min']:.1f} | {r['p50']:.2f} | {r['max']:.2f} | {r['cpu_busy']:.0%} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
