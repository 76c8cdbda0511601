"""Benchmark of the wav2lip engine on a GPU with random weights: each stage and whole renders.

    python bench/wav2lip_gpu.py [--quick] [--out results.md]

Builds synthetic prepared avatars (a portrait drifting over a textured background, with a
synthetic face track, so no face detector is needed on the GPU machine), random generator
weights in the official checkpoint format, and a speech-like audio track. Then it times:
the generator alone (fp16/fp32, several batch sizes), decoding, compositing and encoding
alone, and end-to-end renders (10 s 720p25 and 60 s 1080p25) with per-stage busy time, GPU
memory and host RSS. Prints a Markdown report and writes it to --out.
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
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines import media, wav2lip_io
from engines.facetrack import FACE_OVAL, MOUTH_LEFT, MOUTH_RIGHT, NOSE_BASE, FaceTrack
from engines.wav2lip import Wav2LipEngine, reference_boxes, tune_encoder
from engines.wav2lip_audio import MelFrontEnd, gather_windows
from engines.wav2lip_blend import composite_i420, face_crop_i420
from engines.wav2lip_io import I420Writer
from engines.wav2lip_model import Wav2Lip
from engines.wav2lip_pipeline import Generator
from jayavatar.settings import Settings

FPS = 25
NO_FACE_S = (4.0, 4.4)  # a stretch of each clip whose track says "no face" (pass-through)


def synthetic_landmarks(cx: float, cy: float, rx: float, ry: float) -> NDArray[np.float32]:
    """A 478-point face: the FaceMesh points the engine uses, placed on an ellipse face."""
    points = np.tile(np.array([cx, cy], np.float32), (478, 1))
    angles = -np.pi / 2 + 2 * np.pi * np.arange(len(FACE_OVAL)) / len(FACE_OVAL)
    points[list(FACE_OVAL), 0] = cx + rx * np.cos(angles)
    points[list(FACE_OVAL), 1] = cy + ry * np.sin(angles)
    points[MOUTH_LEFT] = (cx - 0.35 * rx, cy + 0.45 * ry)
    points[MOUTH_RIGHT] = (cx + 0.35 * rx, cy + 0.45 * ry)
    points[NOSE_BASE] = (cx, cy + 0.2 * ry)
    return points


def portrait(side: int) -> NDArray[np.uint8]:
    """The public-domain astronaut portrait if scikit-image is here, else a drawn face."""
    try:
        from skimage import data

        photo = data.astronaut()  # type: ignore[no-untyped-call]
        image = np.ascontiguousarray(photo[0:288, 80:368])
        return np.asarray(cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA))
    except ImportError:
        face = np.full((side, side, 3), 90, np.uint8)
        cv2.ellipse(
            face, (side // 2, side // 2), (side // 3, side * 2 // 5), 0, 0, 360, (200, 160, 140), -1
        )
        return face


def make_avatar(out: Path, width: int, height: int, seconds: float) -> Path:
    """Write a prepared avatar (clip.mp4, track.npz, avatar.json) with a synthetic track."""
    out.mkdir(parents=True, exist_ok=True)
    n = round(seconds * FPS)
    side = int(height * 0.6)
    face = portrait(side)
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([(xx // 3) % 200, (yy // 2) % 220, ((xx + yy) // 5) % 180], -1)
    background = background.astype(np.uint8)
    landmarks = np.zeros((n, 478, 2), np.float32)
    with media.VideoWriter(out / "clip.mp4", width, height, FPS, crf=16, preset="veryfast") as w:
        for i in range(n):
            dx = int(0.02 * width * math.sin(2 * math.pi * i / (4 * FPS)))
            dy = int(0.01 * height * math.sin(2 * math.pi * i / (3 * FPS)))
            x0, y0 = (width - side) // 2 + dx, (height - side) // 2 + dy
            frame = background.copy()
            frame[y0 : y0 + side, x0 : x0 + side] = face
            w.write(frame)
            landmarks[i] = synthetic_landmarks(
                x0 + side / 2, y0 + side * 0.45, side * 0.3, side * 0.4
            )
    present = np.ones(n, bool)
    present[int(NO_FACE_S[0] * FPS) : int(NO_FACE_S[1] * FPS)] = False
    boxes = np.concatenate([landmarks.min(1), landmarks.max(1)], 1).round().astype(np.int32)
    boxes[~present] = 0
    FaceTrack(FPS, width, height, present, boxes, landmarks).save(out / "track.npz")
    meta = {
        "frames": n,
        "fps": FPS,
        "width": width,
        "height": height,
        "duration_s": n / FPS,
        "face_frames": int(present.sum()),
        "source": "video",
    }
    (out / "avatar.json").write_text(json.dumps(meta), encoding="utf-8")
    return out


def make_audio(path: Path, seconds: float) -> Path:
    """Write a 16 kHz mono WAV of syllable-like bursts (never exact silence)."""
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * f * t) for f in (150, 300, 600, 1200, 2400)) / 5
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    noise = np.random.default_rng(0).normal(0, 0.003, t.size)
    pcm = np.clip(0.4 * voice * envelope + noise, -1, 1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((pcm * 32767).astype("<i2").tobytes())
    return path


def save_weights(models_dir: Path) -> Path:
    """Random generator weights in the official format (DataParallel keys, state_dict)."""
    torch.manual_seed(0)
    path = models_dir / "wav2lip" / "wav2lip_gan.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"module.{k}": v for k, v in Wav2Lip().state_dict().items()}
    torch.save({"state_dict": state, "global_step": 0, "global_epoch": 0}, path)
    return path


class PeakRss:
    """Samples this process's resident memory in a thread; `peak` is the highest seen (MiB)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page / 2**20
            self.peak = max(self.peak, rss)
            time.sleep(0.02)

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
    width, height = size
    for preset in presets:
        with tempfile.TemporaryDirectory() as tmp:
            writer = I420Writer(Path(tmp) / "e.mp4", width, height, FPS, preset=preset)
            tune_encoder(writer)
            t = time.perf_counter()
            with writer:
                for k in range(300):
                    writer.write(kept[k % len(kept)][1])
            rows.append(
                [f"encode {writer.codec} {preset}", f"{300 / (time.perf_counter() - t):,.0f}"]
            )
    return rows


def bench_render(settings: Settings, avatar: Path, audio: Path, **options: Any) -> dict[str, Any]:
    """One end-to-end render; returns its statistics plus GPU and host memory peaks."""
    engine = Wav2LipEngine(settings, **options)
    engine.load()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp, PeakRss() as rss:
        stats = engine.render(avatar, audio, Path(tmp) / "out.mp4", lambda f, p: None, {})
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


def sweep(settings: Settings, work: Path, card: str, scale: float) -> str:
    """720p renders of 60 s audio over compositing threads and the GIL's switch interval."""
    avatar = make_avatar(work / "sweep720p", 1280, 720, max(2.0, 10.0 * scale))
    audio = make_audio(work / "sweep.wav", max(4.0, 60.0 * scale))
    rows = []
    default = sys.getswitchinterval()
    for interval in (default, 0.0005):
        sys.setswitchinterval(interval)
        for workers in (2, 4, 8):
            stats = bench_render(settings, avatar, audio, workers=workers)
            rows.append(render_row(f"{workers} threads, switch {interval * 1000:g} ms", stats))
            print(json.dumps(stats), flush=True)
    sys.setswitchinterval(default)
    head = ["render", "dtype", "batch", "frames", "end to end", "decode", "generate",
            "composite", "encode", "GPU MiB", "RSS MiB"]  # fmt: skip
    return f"## {card}: 720p, 10 s clip, 60 s audio\n\n{table(head, rows)}\n"


def main() -> None:
    """Run every section and print (and save) the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small clips, for a smoke run")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--sweep", action="store_true", help="only 720p renders over compositing threads and GIL"
    )
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    card = torch.cuda.get_device_name() if cuda else platform.processor() or "CPU"
    work = args.workdir or Path(tempfile.mkdtemp(prefix="w2lbench-"))
    settings = Settings(models_dir=work / "models", device="cuda" if cuda else "cpu")
    save_weights(settings.models_dir)
    scale = 0.1 if args.quick else 1.0
    if args.sweep:
        text = sweep(settings, work, card, scale)
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
