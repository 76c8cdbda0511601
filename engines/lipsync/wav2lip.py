"""Lip-sync engine "wav2lip": Wav2Lip-GAN on the avatar's own video, only the mouth regenerated.

`prepare` runs once per avatar: the shared preparation (clip, FaceMesh track, poster), then the
generator crops framed like the reference's (face box padded 10 px at the bottom, smoothed
over time with a centred filter, so no lag) into ``wav2lip.npz``. With S3FD weights present
the face boxes come from S3FD, as in the reference. `render` never runs a detector: it streams
the clip through the generator and the compositor (see `engines.lipsync.wav2lip_pipeline`).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from engines import models
from engines.base import ProgressFn
from engines.lipsync.avatar_prep import prepare_avatar
from engines.lipsync.facetrack import FaceTrack, segments
from engines.lipsync.wav2lip_audio import SAMPLE_RATE, MelFrontEnd, pad_to_window, window_starts
from engines.lipsync.wav2lip_generator import Generator
from engines.lipsync.wav2lip_gpu_blend import TorchCompositor
from engines.lipsync.wav2lip_io import I420Writer
from engines.lipsync.wav2lip_model import load_wav2lip
from engines.lipsync.wav2lip_pipeline import GenerateFn, RenderPlan, StageClock, render_stream
from engines.lipsync.wav2lip_procs import DecodeJob, FrameProcesses, MediaWorkers
from engines.media import video as media
from engines.media.frame_ring import fits_in_shm
from jayavatar.cores import usable_cores
from jayavatar.errors import BadInput, EngineError, ModelMissing

if TYPE_CHECKING:
    from jayavatar.settings import Settings

#: The reference's face-box pads in pixels: top, bottom, left, right.
PADS = (0, 10, 0, 0)
#: Centred Gaussian (frames) applied to detector boxes; FaceMesh boxes come smoothed already.
BOX_SIGMA = 2.0
CROPS_FILE = "wav2lip.npz"
#: Checkpoints in order of preference (GAN first: sharper mouths).
CHECKPOINTS = ("wav2lip_gan", "wav2lip")
CUDA_BATCH = 128
CPU_BATCH = 16
#: Frames handed between pipeline stages at a time (at most one batch).
CHUNK = 32
#: Host cores per encoder process of a split render. Once the decoder no longer held the
#: render back, two encoders beat one on a 16-core host (460 vs 394 frames/s at 720p).
CORES_PER_ENCODER = 8
MAX_SPLIT_ENCODERS = 3
#: cuDNN's autotuner: it took about 3 s of every worker's start on an H100 (each fixed batch
#: shape tuned), for a generator that is busy 1-3 % of a render. Off: cuDNN's heuristics.
CUDNN_BENCHMARK = False
#: Compositing paths: batched torch work, or per-frame NumPy; "auto" is torch on CUDA only.
BLENDS = ("auto", "torch", "numpy")


def pick_device(setting: str) -> torch.device:
    """Resolve `settings.device` ("auto", "cpu", "cuda") to a torch device."""
    if setting == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if setting == "cuda":
        raise EngineError("JAYAVATAR_DEVICE is cuda but no CUDA device is visible")
    return torch.device("cpu")


def split_encoders() -> int:
    """Encoder processes for a split render on this host (see CORES_PER_ENCODER)."""
    return max(1, min(MAX_SPLIT_ENCODERS, usable_cores() // CORES_PER_ENCODER))


def tune_encoder(writer: media.VideoWriter) -> None:
    """Let libx264 thread across frames before it opens.

    PyAV opens encoders with slice threads, which on a many-core machine encodes several
    times slower than x264's own frame threading.
    """
    if writer.codec == "libx264":
        writer.video.codec_context.thread_type = "FRAME"


def reference_boxes(
    boxes: NDArray[np.int32], present: NDArray[np.bool_], width: int, height: int
) -> NDArray[np.int32]:
    """Apply the reference's pads to face boxes, clipped to the frame; zeros where no face."""
    top, bottom, left, right = PADS
    out = boxes.astype(np.int64) + np.array([-left, -top, right, bottom])
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    # A crop needs at least a few pixels each way to be resized to 96×96.
    usable = present & (out[:, 2] - out[:, 0] >= 8) & (out[:, 3] - out[:, 1] >= 8)
    out[~usable] = 0
    padded: NDArray[np.int32] = out.astype(np.int32)
    return padded


def smooth_boxes(boxes: NDArray[np.float64], present: NDArray[np.bool_]) -> NDArray[np.int32]:
    """Smooth per-frame detector boxes with a centred Gaussian inside each face run."""
    from scipy.ndimage import gaussian_filter1d

    out = boxes.astype(np.float64).copy()
    for a, b in segments(present):
        if b - a > 1:
            out[a:b] = gaussian_filter1d(out[a:b], BOX_SIGMA, axis=0, mode="nearest")
    return np.round(out).astype(np.int32)


class Wav2LipEngine:
    """Wav2Lip-GAN lip sync: batched fp16 generation on CUDA, streamed, feathered blend."""

    name = "wav2lip"

    def __init__(
        self,
        settings: Settings,
        *,
        batch: int | None = None,
        half: bool | None = None,
        preset: str | None = None,
        workers: int | None = None,
        chunk: int = CHUNK,
        blend: str = "auto",
        split: bool | None = None,
        encoders: int | None = None,
        generator: GenerateFn | None = None,
    ) -> None:
        """Configure from `settings`; keyword options override batch, precision, blend, encoding.

        `split` runs decoding and encoding in their own processes (default: on CUDA, where
        the CPU side is the limit; see `engines.lipsync.wav2lip_procs`), with `encoders` encoder
        processes (default on CUDA: one per CORES_PER_ENCODER host cores, at most 3).

        `generator` replaces the network (benchmarks and tests of the pipeline alone).
        """
        self.settings = settings
        self.device = pick_device(settings.device)
        cuda = self.device.type == "cuda"
        self.batch = batch or (CUDA_BATCH if cuda else CPU_BATCH)
        self.half = cuda if half is None else half
        self.preset = preset or settings.wav2lip_preset
        self.workers = workers or min(8, usable_cores())
        self.chunk = max(1, min(chunk, self.batch))
        if blend not in BLENDS:
            raise EngineError(f"wav2lip blend must be one of {', '.join(BLENDS)}, not {blend!r}")
        self.blend = ("torch" if cuda else "numpy") if blend == "auto" else blend
        self.split = cuda if split is None else split
        self.media_workers = MediaWorkers(encoders or (split_encoders() if cuda else 1))
        self.mel = MelFrontEnd(self.device)
        self._generator: GenerateFn | None = generator
        if cuda:
            torch.backends.cudnn.benchmark = CUDNN_BENCHMARK

    @property
    def weights_dir(self) -> Path:
        """Where the generator checkpoints live."""
        return self.settings.models_dir / "wav2lip"

    def load(self) -> GenerateFn:
        """Load the generator once (GAN weights preferred), strictly; later calls reuse it.

        The worker calls this at start, so a missing or broken file stops it there; S3FD
        weights, when present, are checked too.
        """
        if self._generator is None:
            # Renders on CUDA ask whether NVENC exists; on a card without it the failing probe
            # takes 0.6 s, which the first render after every start paid. Ask beside the load.
            probe = None
            if self.device.type == "cuda":
                probe = threading.Thread(target=media.nvenc_available, daemon=True)
                probe.start()
            name, path = self._checkpoint()
            model = load_wav2lip(path, fix=f"; fix: {models.get(name).how_to_get}")
            sizes = (self.chunk, self.batch) if self.device.type == "cuda" else ()
            generator = Generator(model, self.device, self.half, sizes)
            generator.warm_up()
            if probe is not None:
                probe.join()
            self._generator = generator
            if self.s3fd_path.is_file():
                from engines.lipsync.s3fd import verify_weights

                verify_weights(self.s3fd_path, f"; fix: {models.get('s3fd').how_to_get}")
        if self.split:
            self.media_workers.start()
        return self._generator

    def close(self) -> None:
        """Stop the decoder and encoder processes and free their frame ring."""
        self.media_workers.close()

    @property
    def s3fd_path(self) -> Path:
        """Where the optional S3FD face detector weights live."""
        return self.settings.models_dir / "s3fd" / "s3fd.pth"

    def _checkpoint(self) -> tuple[str, Path]:
        """Return the first checkpoint present, or raise `ModelMissing` naming file and fix."""
        for name in CHECKPOINTS:
            path = self.weights_dir / f"{name}.pth"
            if path.is_file():
                return name, path
        wanted = self.weights_dir / "wav2lip_gan.pth"
        raise ModelMissing(
            f"Wav2Lip weights not found at {wanted}; fix: {models.get(CHECKPOINTS[0]).how_to_get}"
        )

    def prepare(self, media_path: Path, out_dir: Path) -> dict[str, Any]:
        """Prepare an avatar (shared data plus this engine's generator crops)."""
        meta = prepare_avatar(media_path, out_dir, self.settings)
        track = FaceTrack.load(out_dir / "track.npz")
        boxes, source = self._face_boxes(out_dir / "clip.mp4", track)
        crops = reference_boxes(boxes, track.present, track.width, track.height)
        tmp = out_dir / (CROPS_FILE + ".tmp.npz")
        np.savez_compressed(tmp, boxes=crops, box_source=np.array(source))
        tmp.replace(out_dir / CROPS_FILE)
        meta["wav2lip_boxes"] = source
        return meta

    def _face_boxes(self, clip: Path, track: FaceTrack) -> tuple[NDArray[np.int32], str]:
        """Return per-frame face boxes: S3FD's if its weights are here, else FaceMesh's."""
        s3fd_path = self.s3fd_path
        if not s3fd_path.is_file():
            return track.boxes, "facemesh"
        from engines.lipsync.s3fd import detect_clip_boxes

        detected = detect_clip_boxes(s3fd_path, clip, track, self.device)
        return smooth_boxes(detected, track.present), "s3fd"

    def crop_boxes(self, avatar_dir: Path, track: FaceTrack) -> NDArray[np.int32]:
        """Return the stored generator crops, or derive them from the track (no detection)."""
        path = avatar_dir / CROPS_FILE
        if path.is_file():
            with np.load(path) as data:
                boxes: NDArray[np.int32] = data["boxes"].astype(np.int32)
            if len(boxes) == len(track):
                return boxes
        return reference_boxes(track.boxes, track.present, track.width, track.height)

    def render(
        self,
        avatar_dir: Path,
        audio: Path,
        out_mp4: Path,
        progress: ProgressFn,
        metadata: dict[str, str],
        text: str = "",
        language: str = "",
    ) -> dict[str, Any]:
        """Write an MP4 of the prepared avatar speaking `audio`; return render statistics."""
        clock = StageClock()
        generator = self.load()
        clock.mark("loaded")
        plan, wav48, meta = self.plan(avatar_dir, audio, clock)
        tmp = out_mp4.with_name(out_mp4.name + ".tmp.mp4")
        options: dict[str, Any] = {
            "path": tmp,
            "width": meta["width"],
            "height": meta["height"],
            "fps": round(plan.fps),
            "audio": wav48,
            "nvenc": self.device.type == "cuda" and media.nvenc_available(),
            "preset": self.preset,
            "metadata": metadata,
        }
        try:
            codec, split = self._stream(plan, generator, options, progress, clock)
            tmp.replace(out_mp4)
        finally:
            tmp.unlink(missing_ok=True)
        progress(1.0, "render")
        clock.mark("done")
        return self._stats(plan, clock, time.perf_counter() - clock.origin, codec, split)

    def _stats(
        self, plan: RenderPlan, clock: StageClock, seconds: float, codec: str, split: bool
    ) -> dict[str, Any]:
        """The render's statistics, as the worker records them."""
        return {
            "engine": self.name,
            "frames": plan.n_out,
            "fps": plan.fps,
            "duration_s": round(plan.n_out / plan.fps, 3),
            "face_frames": int(plan.present[_clip_indices(plan)].sum()),
            "seconds": round(seconds, 3),
            "frames_per_s": round(plan.n_out / max(seconds, 1e-9), 1),
            "stage_seconds": {k: round(v, 3) for k, v in clock.busy.items()},
            "phases_s": {k: round(v, 3) for k, v in clock.marks.items()},
            "device": str(self.device),
            "dtype": "float16" if self.half else "float32",
            "batch": plan.batch,
            "blend": self.blend,
            "encoder": codec,
            "split": split,
        }

    def _stream(
        self,
        plan: RenderPlan,
        generator: GenerateFn,
        options: dict[str, Any],
        progress: ProgressFn,
        clock: StageClock,
    ) -> tuple[str, bool]:
        """Run the render here or beside decoder and encoder processes; say which it was."""

        def report(frames: int) -> None:
            progress(min(1.0, frames / plan.n_out), "render")

        slots = 2 * plan.batch + 4 * plan.chunk
        if self.split and fits_in_shm(plan.size, slots):
            with FrameProcesses(decode_job(plan), options, slots, self.media_workers) as procs:
                clock.mark("opened")
                render_stream(plan, generator, procs, report, clock)
            return procs.codec, True
        writer = I420Writer(**options)
        tune_encoder(writer)
        with writer:
            clock.mark("opened")
            render_stream(plan, generator, writer, report, clock)
        clock.mark("muxed")
        return writer.codec, False

    def plan(
        self, avatar_dir: Path, audio: Path, clock: StageClock | None = None
    ) -> tuple[RenderPlan, NDArray[np.float32], dict[str, Any]]:
        """Read the prepared avatar and the audio into a render plan (`clock` marks its steps)."""
        clock = clock or StageClock()
        meta_path = avatar_dir / "avatar.json"
        if not meta_path.is_file():
            raise BadInput(f"avatar {avatar_dir.name} is not prepared (no avatar.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        track = FaceTrack.load(avatar_dir / "track.npz")
        fps = float(meta["fps"])
        clock.mark("track")
        wav16 = media.load_audio(audio, SAMPLE_RATE)
        wav48 = media.load_audio(audio, media.OUTPUT_AUDIO_RATE)
        clock.mark("audio")
        n_out = media.frames_for_audio(len(wav16), SAMPLE_RATE, round(fps))
        mel = pad_to_window(self.mel.mel(wav16))
        clock.mark("mel")
        plan = RenderPlan(
            clip=avatar_dir / "clip.mp4",
            size=(int(meta["width"]), int(meta["height"])),
            fps=fps,
            n_clip=len(track),
            n_out=n_out,
            present=track.present,
            boxes=self.crop_boxes(avatar_dir, track),
            landmarks=track.landmarks,
            mel=mel,
            starts=window_starts(n_out, fps, mel.shape[1]),
            batch=self.batch,
            workers=self.workers,
            chunk=self.chunk,
        )
        plan.present = plan.present & (plan.boxes[:, 2] > plan.boxes[:, 0])
        if self.blend == "torch":
            plan.compositor = TorchCompositor(self.device, plan.size)
        clock.mark("planned")
        return plan, wav48, meta


def decode_job(plan: RenderPlan, clip: Path | None = None) -> DecodeJob:
    """What the decoder process needs of a plan (`clip` replaces the plan's, for tests)."""
    fields = (plan.size, plan.fps, plan.n_clip, plan.n_out, plan.chunk, plan.present, plan.boxes)
    return DecodeJob(clip or plan.clip, *fields)


def _clip_indices(plan: RenderPlan) -> NDArray[np.int64]:
    """The clip frame shown at each output frame (back-and-forth looping)."""
    idx = [media.pingpong_index(i, plan.n_clip) for i in range(plan.n_out)]
    return np.asarray(idx, dtype=np.int64)
