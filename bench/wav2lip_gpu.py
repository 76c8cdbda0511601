"""Benchmark of the wav2lip engine on a GPU with random weights: each stage and whole renders.

    python bench/wav2lip_gpu.py [--quick] [--compare] [--out results.md]

Builds synthetic prepared avatars (a portrait drifting over a textured background, with a
synthetic face track, so no face detector is needed on the GPU machine), random generator
weights in the official checkpoint format, and a speech-like audio track. Then it times:
the generator alone (fp16/fp32, several batch sizes), decoding, compositing and encoding
alone, and end-to-end renders (10 s 720p25 and 60 s 1080p25) with per-stage busy time, GPU
memory and host RSS. Prints a Markdown report and writes it to --out. `--compare` runs only
the NumPy and torch compositing paths side by side (stages alone and renders).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.wav2lip_synth import FPS, make_audio, make_avatar, save_weights
from engines.lipsync import wav2lip_io
from engines.lipsync.facetrack import FaceTrack
from engines.lipsync.wav2lip import Wav2LipEngine, reference_boxes, tune_encoder
from engines.lipsync.wav2lip_audio import MelFrontEnd, gather_windows
from engines.lipsync.wav2lip_blend import composite_i420, face_crop_i420
from engines.lipsync.wav2lip_generator import Generator
from engines.lipsync.wav2lip_gpu_blend import TorchCompositor
from engines.lipsync.wav2lip_io import I420Writer
from engines.lipsync.wav2lip_model import Wav2Lip
from engines.media import video as media
from jayavatar.settings import Settings


def _children() -> dict[int, list[int]]:
    """Parent pid → child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _pss_mib(pid: int) -> float:
    """Proportional set size of one process (shared pages split among their users)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_pss_mib() -> float:
    """PSS of this process and all its descendants (the decoder and encoder processes too)."""
    tree, todo, total = _children(), [os.getpid()], 0.0
    while todo:
        pid = todo.pop()
        total += _pss_mib(pid)
        todo += tree.get(pid, [])
    return total


class PeakRss:
    """Samples resident memory in a thread; `peak` is the highest seen (MiB).

    Counts this process and its descendants by PSS, so the shared frame ring is counted
    once however many processes map it.
    """

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_pss_mib())
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def sync() -> None:
    """Wait for queued GPU work, so wall-clock timings are honest."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_generator(
    model: Wav2Lip, device: torch.device, batches: list[int], reps: int
) -> list[list[Any]]:
    """Frames/s of the generator stage (uint8 crops in/out, transfers included), and model only."""
    rows = []
    mel = MelFrontEnd(device).mel(np.random.default_rng(0).normal(0, 0.1, 16000 * 20))
    # fp16 convolutions on a CPU are an emulation, not a configuration anyone runs.
    for half in (True, False) if device.type == "cuda" else (False,):
        gen = Generator(copy.deepcopy(model), device, half)
        for batch in batches:
            crops = np.random.default_rng(1).integers(0, 255, (batch, 96, 96, 3), dtype=np.uint8)
            windows = gather_windows(mel, np.arange(batch) % (mel.shape[1] - 16))
            for _ in range(3):
                gen(crops, windows)
            sync()
            t = time.perf_counter()
            for _ in range(reps):
                gen(crops, windows)
            sync()
            stage = batch * reps / (time.perf_counter() - t)
            faces = torch.rand(batch, 6, 96, 96, device=device, dtype=gen.dtype)
            faces = faces.contiguous(memory_format=torch.channels_last)
            mels = windows.to(gen.dtype)
            with torch.inference_mode():
                for _ in range(3):
                    gen.model(mels, faces)
                sync()
                t = time.perf_counter()
                for _ in range(reps):
                    gen.model(mels, faces)
                sync()
            model_only = batch * reps / (time.perf_counter() - t)
            rows.append(["fp16" if half else "fp32", batch, f"{stage:,.0f}", f"{model_only:,.0f}"])
        del gen
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return rows


def bench_stages(avatar: Path, n_out: int, workers: int, presets: list[str]) -> list[list[Any]]:
    """Frames/s of decode (+ crop), composite (1 thread and a pool) and encode, each alone.

    Frames are I420 arrays, as in a render; one row decodes to RGB for comparison.
    """
    track = FaceTrack.load(avatar / "track.npz")
    boxes = reference_boxes(track.boxes, track.present, track.width, track.height)
    size = (track.width, track.height)
    rows: list[list[Any]] = []
    t = time.perf_counter()
    kept: list[tuple[int, NDArray[np.uint8]]] = []
    clip = avatar / "clip.mp4"
    for k, (index, frame) in enumerate(wav2lip_io.iter_pingpong(clip, len(track), n_out, FPS)):
        if track.present[index]:
            face_crop_i420(frame, boxes[index], size)
        if k < 100:
            kept.append((index, frame))
    rows.append(["decode + crop (I420)", f"{n_out / (time.perf_counter() - t):,.0f}"])
    t = time.perf_counter()
    for _ in media.iter_pingpong(clip, len(track), n_out, FPS):
        pass
    rows.append(
        ["decode to RGB (media.iter_pingpong)", f"{n_out / (time.perf_counter() - t):,.0f}"]
    )
    generated = np.random.default_rng(2).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    faces = [(i, frame) for i, frame in kept if track.present[i]]

    def blend_one(k: int) -> None:
        i, frame = faces[k % len(faces)]
        composite_i420(frame.copy(), generated, boxes[i], track.landmarks[i], size)

    for threads in (1, workers):
        t = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(blend_one, range(200)))
        rows.append([f"composite, {threads} threads", f"{200 / (time.perf_counter() - t):,.0f}"])
    rows += bench_torch_composite(faces, boxes, track, size, workers)
    width, height = size
    for preset in presets:
        with tempfile.TemporaryDirectory() as tmp:
            writer = I420Writer(Path(tmp) / "e.mp4", width, height, FPS, preset=preset)
            tune_encoder(writer)
            t = time.perf_counter()
            with writer:
                for k in range(300):
                    writer.write(kept[k % len(kept)][1])
            speed = 300 / (time.perf_counter() - t)
            psnr, kbytes = encode_quality(Path(tmp) / "e.mp4", [f for _, f in kept], height)
            name = (
                f"encode {writer.codec} {preset} (luma PSNR {psnr:.2f} dB, {kbytes:.0f} kB/frame)"
            )
            rows.append([name, f"{speed:,.0f}"])
    return rows


def bench_torch_composite(
    faces: list[tuple[int, NDArray[np.uint8]]],
    boxes: NDArray[np.int32],
    track: FaceTrack,
    size: tuple[int, int],
    workers: int,
) -> list[list[Any]]:
    """Frames/s of the torch compositor on this machine's device, 32-frame batches as rendered."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    compositor = TorchCompositor(device, size)
    generated = np.random.default_rng(2).integers(0, 255, (32, 96, 96, 3), dtype=np.uint8)
    picks = [faces[k % len(faces)] for k in range(32)]
    index = [i for i, _ in picks]
    rows = []
    with ThreadPoolExecutor(workers) as pool:
        for name, map_fn in (("1 thread", map), (f"masks on {workers} threads", pool.map)):
            compositor.composite([f.copy() for _, f in picks], generated, boxes[index],
                                 track.landmarks[index], map_fn)  # fmt: skip
            t = time.perf_counter()
            for _ in range(10):
                frames = [f.copy() for _, f in picks]
                compositor.composite(
                    frames, generated, boxes[index], track.landmarks[index], map_fn
                )
            rows.append([f"composite torch ({device.type}), {name}",
                         f"{320 / (time.perf_counter() - t):,.0f}"])  # fmt: skip
    return rows


def encode_quality(
    path: Path, sources: list[NDArray[np.uint8]], height: int
) -> tuple[float, float]:
    """Luma PSNR (dB) of an encode of `sources` played in a loop, and its kB per frame."""
    errors = []
    with av.open(str(path)) as container:
        for k, frame in enumerate(container.decode(video=0)):
            got = frame.to_ndarray(format="yuv420p")[:height].astype(np.float32)
            errors.append(float(np.mean((got - sources[k % len(sources)][:height]) ** 2)))
    mse = max(float(np.mean(errors)), 1e-9)
    return 10 * math.log10(255**2 / mse), path.stat().st_size / 1024 / max(1, len(errors))


def bench_render(
    settings: Settings, avatar: Path, audio: Path, warm: bool = False, **options: Any
) -> dict[str, Any]:
    """One end-to-end render; returns its statistics plus GPU and host memory peaks.

    With `warm`, an untimed render goes first, as in a worker that has rendered before.
    """
    engine = Wav2LipEngine(settings, **options)
    engine.load()
    with tempfile.TemporaryDirectory() as tmp:
        if warm:
            engine.render(avatar, audio, Path(tmp) / "warm.mp4", lambda f, p: None, {})
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        with PeakRss() as rss:
            stats = engine.render(avatar, audio, Path(tmp) / "out.mp4", lambda f, p: None, {})
    engine.close()
    stats["gpu_mib"] = (
        torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    )
    stats["rss_mib"] = rss.peak
    return stats


def render_row(name: str, stats: dict[str, Any]) -> list[Any]:
    """A table row: configuration, end-to-end frames/s, per-stage frames/s, memory."""
    n = stats["frames"]
    busy = stats["stage_seconds"]
    per_stage = [
        f"{n / busy[s]:,.0f}" if busy.get(s) else "-"
        for s in ("decode", "generate", "composite", "encode")
    ]
    return [
        name,
        stats["dtype"],
        stats["batch"],
        n,
        f"{stats['frames_per_s']:,.0f}",
        *per_stage,
        f"{stats['gpu_mib']:,.0f}",
        f"{stats['rss_mib']:,.0f}",
    ]


def table(head: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def compare(settings: Settings, work: Path, card: str, scale: float) -> str:
    """The NumPy and torch compositing paths side by side: stages alone, then renders."""
    cases = [("720p", 1280, 720, 10.0, [10.0, 60.0]), ("1080p", 1920, 1080, 60.0, [60.0])]
    head = ["render", "dtype", "batch", "frames", "end to end", "decode", "generate",
            "composite", "encode", "GPU MiB", "RSS MiB"]  # fmt: skip
    text = [f"## {card}: NumPy vs torch compositing", ""]
    for label, width, height, clip_s, audio_lengths in cases:
        avatar = make_avatar(work / f"cmp{label}", width, height, max(2.0, clip_s * scale))
        stage_rows = bench_stages(
            avatar,
            round(max(2.0, audio_lengths[-1] * scale) * FPS),
            min(8, os.cpu_count() or 1),
            ["veryfast", "superfast", "ultrafast"],
        )
        rows = []
        for audio_s in audio_lengths:
            audio = make_audio(work / f"cmp{audio_s:.0f}.wav", max(2.0, audio_s * scale))
            configs: list[tuple[str, dict[str, Any]]] = [
                ("numpy blend", {"blend": "numpy"}),
                ("torch blend", {"blend": "torch"}),
                ("torch blend, ultrafast", {"blend": "torch", "preset": "ultrafast"}),
            ]
            for name, options in configs:
                stats = bench_render(settings, avatar, audio, **options)
                rows.append(render_row(f"{label} {audio_s:.0f} s audio, {name}", stats))
                print(json.dumps(stats), flush=True)
        text += [
            f"### {label}, {clip_s * scale:.0f} s clip",
            "",
            "Stages alone (frames/s):",
            "",
            table(["stage", "frames/s"], stage_rows),
            "",
            "End-to-end renders (frames/s; per stage = frames / that stage's busy time):",
            "",
            table(head, rows),
            "",
        ]
        print("\n".join(text[-9:]), flush=True)
    return "\n".join(text)


def processes(settings: Settings, work: Path, card: str, scale: float) -> str:
    """Renders with decoding and encoding in this process vs in their own processes."""
    cases = [("720p", 1280, 720, 10.0, [10.0, 60.0]), ("1080p", 1920, 1080, 60.0, [60.0])]
    head = ["render", "dtype", "batch", "frames", "end to end", "decode", "generate",
            "composite", "encode", "GPU MiB", "PSS MiB"]  # fmt: skip
    text = [
        f"## {card}: decode and encode in the render's process vs their own",
        "",
        "Each row is an engine's second render (the first, untimed, starts the processes",
        "and touches the frame ring).",
        "",
    ]
    for label, width, height, clip_s, audio_lengths in cases:
        avatar = make_avatar(work / f"proc{label}", width, height, max(2.0, clip_s * scale))
        rows = []
        for audio_s in audio_lengths:
            audio = make_audio(work / f"proc{audio_s:.0f}.wav", max(2.0, audio_s * scale))
            for name, options in [
                ("one process", {"split": False}),
                ("split, 1 encoder", {"split": True, "encoders": 1}),
                ("split, 2 encoders", {"split": True, "encoders": 2}),
                ("split, 3 encoders", {"split": True, "encoders": 3}),
                (
                    "split, 2 encoders, ultrafast",
                    {"split": True, "encoders": 2, "preset": "ultrafast"},
                ),
            ]:
                stats = bench_render(settings, avatar, audio, warm=True, **options)
                assert stats["split"] == options["split"], "split render fell back"
                rows.append(render_row(f"{label} {audio_s:.0f} s audio, {name}", stats))
                print(json.dumps(stats), flush=True)
        text += [f"### {label}, {clip_s * scale:.0f} s clip", "", table(head, rows), ""]
        print("\n".join(text[-4:]), flush=True)
    return "\n".join(text)


def main() -> None:
    """Run every section and print (and save) the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small clips, for a smoke run")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--compare", action="store_true", help="only the NumPy and torch compositing paths"
    )
    parser.add_argument(
        "--processes", action="store_true", help="only one-process vs split renders"
    )
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    card = torch.cuda.get_device_name() if cuda else platform.processor() or "CPU"
    work = args.workdir or Path(tempfile.mkdtemp(prefix="w2lbench-"))
    settings = Settings(models_dir=work / "models", device="cuda" if cuda else "cpu")
    save_weights(settings.models_dir)
    scale = 0.1 if args.quick else 1.0
    if args.compare or args.processes:
        run = processes if args.processes else compare
        text = run(settings, work, card, scale)
        print(text)
        if args.out:
            args.out.write_text(text, encoding="utf-8")
        return
    report = [
        f"# wav2lip engine benchmark: {card}",
        "",
        f"torch {torch.__version__}, PyAV {av.__version__}, {os.cpu_count()} CPU cores, "
        f"python {platform.python_version()}; random weights; NVENC available: "
        f"{media.nvenc_available()}",
        "",
    ]
    model = Wav2Lip().eval()
    batches = [32, 64, 128, 256, 512] if cuda else [8, 16]
    rows = bench_generator(model, device, batches, reps=20 if cuda else 2)
    report += [
        "## Generator stage (frames/s)",
        "",
        table(["dtype", "batch", "stage (uint8 in/out, H2D+D2H)", "model only"], rows),
        "",
    ]
    print("\n".join(report), flush=True)
    cases = [("720p", 1280, 720, 10.0, 10.0), ("1080p", 1920, 1080, 60.0, 60.0)]
    head = [
        "render",
        "dtype",
        "batch",
        "frames",
        "end to end",
        "decode",
        "generate",
        "composite",
        "encode",
        "GPU MiB",
        "RSS MiB",
    ]
    for label, width, height, clip_s, audio_s in cases:
        t = time.perf_counter()
        avatar = make_avatar(work / f"avatar{label}", width, height, max(2.0, clip_s * scale))
        audio = make_audio(work / f"audio{label}.wav", max(2.0, audio_s * scale))
        made = time.perf_counter() - t
        n_out = round(max(2.0, audio_s * scale) * FPS)
        stage_rows = bench_stages(
            avatar, n_out, min(8, os.cpu_count() or 1), ["veryfast", "superfast", "ultrafast"]
        )
        section = [
            f"## {label}: {clip_s * scale:.0f} s clip, {audio_s * scale:.0f} s audio "
            f"(synthetic avatar built in {made:.1f} s)",
            "",
            "Stages alone (frames/s):",
            "",
            table(["stage", "frames/s"], stage_rows),
            "",
        ]
        renders = []
        configs: list[tuple[str, dict[str, Any]]] = [("default (veryfast)", {})]
        if label == "720p":
            configs += [
                ("superfast", {"preset": "superfast"}),
                ("ultrafast", {"preset": "ultrafast"}),
                ("fp32", {"half": False}),
                ("batch 64", {"batch": 64}),
                ("batch 256", {"batch": 256}),
            ]
        else:
            configs += [("ultrafast", {"preset": "ultrafast"})]
        for name, options in configs:
            stats = bench_render(settings, avatar, audio, **options)
            renders.append(render_row(f"{label} {name}", stats))
            print(json.dumps(stats), flush=True)
        if label == "720p":
            # Steady state: 60 s of audio over the same clip, played back and forth.
            long_audio = make_audio(work / "audio720p_60s.wav", max(4.0, 60.0 * scale))
            for name, options in [
                ("60 s audio, veryfast", {}),
                ("60 s audio, ultrafast", {"preset": "ultrafast"}),
            ]:
                stats = bench_render(settings, avatar, long_audio, **options)
                renders.append(render_row(f"{label} {name}", stats))
                print(json.dumps(stats), flush=True)
        section += [
            "End-to-end renders (frames/s; per stage = frames / that stage's busy time):",
            "",
            table(head, renders),
            "",
        ]
        print("\n".join(section), flush=True)
        report += section
    text = "\n".join(report) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the whole run: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
