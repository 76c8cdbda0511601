"""Where a warm split wav2lip render spends host CPU: core-ms per output frame, per process.

A 720p avatar (10 s clip) renders 60 s of audio, once untimed to start the decoder, encoder
and muxer processes, then timed, for several x264 presets and encoder counts. Prints one
line per configuration: frames/s of the render, how busy the host was, and CPU time per
frame in the render's process and in each child.

    python -m bench.wav2lip_cpu [--scale 0.1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psutil
import torch

from bench.wav2lip_synth import make_audio, make_avatar, save_weights
from engines.lipsync.wav2lip import Wav2LipEngine
from jayavatar.settings import Settings

CONFIGS = [("veryfast", 2), ("superfast", 2), ("ultrafast", 2), ("veryfast", 1)]


def cpu_seconds(me: psutil.Process) -> dict[str, float]:
    """User + system CPU seconds of this process and of each child, by role."""
    out = {"render": sum(me.cpu_times()[:2])}
    for child in me.children(recursive=True):
        args = child.cmdline()
        role = next((a for a in args if a in ("decoder", "encoder", "muxer")), "other")
        out[f"{role} {child.pid}"] = sum(child.cpu_times()[:2])
    return out


def main() -> None:
    """Render each configuration warm and print its CPU line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="shorter clip and audio")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="w2lcpu-"))
    cuda = torch.cuda.is_available()
    settings = Settings(models_dir=work / "models", device="cuda" if cuda else "cpu")
    save_weights(settings.models_dir)
    avatar = make_avatar(work / "avatar", 1280, 720, max(2.0, 10.0 * args.scale))
    audio = make_audio(work / "speech.wav", max(2.0, 60.0 * args.scale))
    me = psutil.Process()
    for preset, encoders in CONFIGS:
        engine = Wav2LipEngine(settings, split=True, encoders=encoders, preset=preset)
        engine.load()
        engine.render(avatar, audio, work / "warm.mp4", lambda f, p: None, {})
        before = cpu_seconds(me)
        psutil.cpu_percent()
        t = time.perf_counter()
        stats = engine.render(avatar, audio, work / "out.mp4", lambda f, p: None, {})
        wall = time.perf_counter() - t
        busy = psutil.cpu_percent()
        after = cpu_seconds(me)
        engine.close()
        n = stats["frames"]
        parts = {k: (v - before.get(k, 0.0)) * 1e3 / n for k, v in after.items()}
        each = ", ".join(f"{k.split()[0]} {v:.2f}" for k, v in parts.items() if v > 0)
        print(
            f"{preset}, {encoders} encoder(s): {n / wall:.0f} frames/s, host busy {busy:.0f}%, "
            f"{sum(parts.values()):.2f} core-ms/frame ({each})",
            flush=True,
        )


if __name__ == "__main__":
    main()
