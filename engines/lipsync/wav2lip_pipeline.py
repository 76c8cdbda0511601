"""Wav2Lip's streaming render: decode → generate → composite → encode, overlapped in threads.

Each stage runs in its own thread and hands chunks of frames to the next through bounded
queues, so decoding, GPU work, compositing and encoding overlap while memory holds a fixed
number of frames, whatever the clip length. The generator gathers chunks into full batches
(after a first, small one that gets the later stages going). PyAV, OpenCV and torch release
the GIL in their heavy calls.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import numpy as np
import torch
from numpy.typing import NDArray

from engines.lipsync import wav2lip_io
from engines.lipsync.wav2lip_audio import gather_windows
from engines.lipsync.wav2lip_blend import composite_i420, face_crop_i420
from engines.lipsync.wav2lip_gpu_blend import TorchCompositor
from engines.lipsync.wav2lip_procs import FrameProcesses
from jayavatar.errors import EngineError, JayAvatarError

U8: TypeAlias = NDArray[np.uint8]
#: (B, 96, 96, 3) RGB crops and their (B, 1, 80, 16) mel windows → generated RGB crops.
GenerateFn: TypeAlias = Callable[[NDArray[np.uint8], torch.Tensor], NDArray[np.uint8]]


class FrameSink(Protocol):
    """Where finished frames go, in order (`media.VideoWriter` in a render)."""

    def write(self, frame: NDArray[np.uint8]) -> None:
        """Take the next frame."""


@dataclass
class Batch:
    """Consecutive output frames travelling through the stages together."""

    start: int
    clip_index: list[int] = field(default_factory=list)
    frames: list[U8] = field(default_factory=list)
    crops: list[U8] = field(default_factory=list)
    generated: U8 | None = None

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class RenderPlan:
    """Everything a render needs besides the generator, all read from the prepared avatar."""

    clip: Path
    size: tuple[int, int]  # width, height of the clip (frames are I420 arrays)
    fps: float
    n_clip: int
    n_out: int
    present: NDArray[np.bool_]
    boxes: NDArray[np.int32]  # (n_clip, 4) x1, y1, x2, y2 generator crops
    landmarks: NDArray[np.float32]  # (n_clip, 478, 2)
    mel: torch.Tensor  # (80, T) on the generator's device
    starts: NDArray[np.int64]  # (n_out,) first mel frame of each output frame
    batch: int
    workers: int = 4
    chunk: int = 32  # frames handed between stages; the generator batches several
    #: Blends each chunk in batched torch work (GPU) instead of per frame in NumPy (CPU).
    compositor: TorchCompositor | None = None


@dataclass
class StageClock:
    """Busy seconds of each stage, and when each phase of the render was first reached."""

    busy: dict[str, float] = field(default_factory=dict)
    #: Seconds from `origin` to the first time each phase was reached (see `mark`).
    marks: dict[str, float] = field(default_factory=dict)
    origin: float = field(default_factory=time.perf_counter)

    def add(self, stage: str, since: float) -> None:
        """Charge the time since `since` to `stage`."""
        self.busy[stage] = self.busy.get(stage, 0.0) + time.perf_counter() - since

    def mark(self, phase: str, *, last: bool = False) -> None:
        """Note when `phase` was first reached (`last`: each time, keeping the latest).

        A short render is mostly fixed cost; the marks say where it goes (pipeline fill,
        the encoders' flush, the mux) without a profiler.
        """
        if last or phase not in self.marks:
            self.marks[phase] = time.perf_counter() - self.origin


class _Flow:
    """Queues with a shared stop flag, so one failing stage stops the others instead of hanging."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.encoded = 0  # frames written so far; read by the main thread for progress

    def put(self, q: queue.Queue[Any], item: Any) -> None:
        """Put `item`, giving up once the flow is stopped."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def items(self, q: queue.Queue[Any]) -> Iterator[Any]:
        """Yield items until the end marker (None) or a stop."""
        while not self.stop.is_set():
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                return
            yield item

    def run(self, target: Callable[[], None]) -> threading.Thread:
        """Start `target` in a daemon thread that records its failure and stops the flow."""

        def guarded() -> None:
            try:
                target()
            except BaseException as exc:
                self.error = self.error or exc
                self.stop.set()

        thread = threading.Thread(target=guarded, daemon=True, name=target.__name__)
        thread.start()
        return thread


def render_stream(
    plan: RenderPlan,
    generator: GenerateFn,
    writer: FrameSink | FrameProcesses,
    progress: Callable[[int], None],
    clock: StageClock | None = None,
) -> StageClock:
    """Run the four stages over the whole plan; return each stage's busy time.

    With `FrameProcesses` as the writer, decoding and encoding run in its child processes
    and the threads here only pass their messages on. The generator runs in the calling
    thread, which is also the only one calling `progress` (with frames encoded so far).
    `clock` carries on the marks of a render already under way.
    """
    flow = _Flow()
    clock = clock or StageClock()
    per_batch = max(1, plan.batch // plan.chunk)
    # Decoding may run a batch ahead while the generator gathers one; the generator may hand
    # a whole batch downstream at once.
    decoded: queue.Queue[Batch | None] = queue.Queue(maxsize=per_batch + 1)
    generated: queue.Queue[Batch | None] = queue.Queue(maxsize=per_batch)
    composed: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
    first, last = _ends(plan, writer, flow, clock, decoded, composed)
    clock.mark("started")
    threads = [
        flow.run(first),
        flow.run(lambda: _composite(plan, flow, clock, generated, composed)),
        flow.run(last),
    ]
    try:
        _generate(plan, generator, flow, clock, decoded, generated, progress)
    except BaseException as exc:
        flow.error = flow.error or exc
        flow.stop.set()
    _finish(threads, flow, progress)
    if isinstance(writer, FrameProcesses):
        clock.busy.update(writer.busy)
    return clock


def _ends(
    plan: RenderPlan,
    writer: FrameSink | FrameProcesses,
    flow: _Flow,
    clock: StageClock,
    decoded: queue.Queue[Batch | None],
    composed: queue.Queue[Batch | None],
) -> tuple[Callable[[], None], Callable[[], None]]:
    """The decoding and encoding ends: relays to the child processes, or threads here."""
    if isinstance(writer, FrameProcesses):
        procs = writer
        return (
            lambda: _receive(procs, flow, clock, decoded),
            lambda: _send(procs, flow, clock, composed),
        )
    sink = writer
    return (
        lambda: _decode(plan, flow, clock, decoded),
        lambda: _encode(flow, clock, composed, sink),
    )


def _finish(threads: list[threading.Thread], flow: _Flow, progress: Callable[[int], None]) -> None:
    """Wait for the stage threads (reporting progress meanwhile); raise the first error."""
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)
            progress(flow.encoded)
    if flow.error is not None:
        if isinstance(flow.error, JayAvatarError | MemoryError | KeyboardInterrupt):
            raise flow.error
        raise EngineError(f"wav2lip render failed: {flow.error}") from flow.error


def _receive(
    procs: FrameProcesses, flow: _Flow, clock: StageClock, out: queue.Queue[Batch | None]
) -> None:
    """Pass the decoder process's chunks on as batches whose frames are ring slots."""
    for start, frames, index, crops in procs.chunks(flow.stop.is_set):
        if flow.stop.is_set():
            return
        clock.mark("decoded")
        flow.put(out, Batch(start, index, frames, list(crops)))
    clock.mark("decoded_all")
    flow.put(out, None)


def _send(
    procs: FrameProcesses, flow: _Flow, clock: StageClock, inbox: queue.Queue[Batch | None]
) -> None:
    """Hand composited batches to the encoder process; let it finish the file at the end."""
    for batch in flow.items(inbox):
        procs.write(batch.start, len(batch))
        flow.encoded = procs.encoded
    if not flow.stop.is_set():
        clock.mark("flushing")
        procs.finish()
        clock.mark("muxed")
        flow.encoded = procs.encoded


def _decode(
    plan: RenderPlan, flow: _Flow, clock: StageClock, out: queue.Queue[Batch | None]
) -> None:
    """Decode the clip back and forth, cutting each frame's generator crop."""
    chunk = Batch(0)
    t = time.perf_counter()
    frames = wav2lip_io.iter_pingpong(plan.clip, plan.n_clip, plan.n_out, plan.fps)
    for i, (index, frame) in enumerate(frames):
        if flow.stop.is_set():
            return
        chunk.clip_index.append(index)
        chunk.frames.append(frame)
        if plan.present[index]:
            chunk.crops.append(face_crop_i420(frame, plan.boxes[index], plan.size))
        if len(chunk) == plan.chunk:
            clock.add("decode", t)
            clock.mark("decoded")
            flow.put(out, chunk)
            chunk, t = Batch(i + 1), time.perf_counter()
    clock.add("decode", t)
    clock.mark("decoded_all")
    if len(chunk):
        flow.put(out, chunk)
    flow.put(out, None)


def _generate(
    plan: RenderPlan,
    generator: GenerateFn,
    flow: _Flow,
    clock: StageClock,
    inbox: queue.Queue[Batch | None],
    out: queue.Queue[Batch | None],
    progress: Callable[[int], None],
) -> None:
    """Gather chunks into batches and run the generator on their crops and mel windows."""
    pending: list[Batch] = []
    first = True
    for chunk in flow.items(inbox):
        pending.append(chunk)
        # The first batch is one chunk, so compositing and encoding start early.
        if first or sum(len(c) for c in pending) >= plan.batch:
            _run_batch(plan, generator, clock, pending)
            first = False
            for done in pending:
                flow.put(out, done)
            pending = []
            progress(flow.encoded)
    if pending and not flow.stop.is_set():
        _run_batch(plan, generator, clock, pending)
        for done in pending:
            flow.put(out, done)
    flow.put(out, None)


def _run_batch(
    plan: RenderPlan, generator: GenerateFn, clock: StageClock, chunks: list[Batch]
) -> None:
    """Generate the mouths of every face crop in `chunks` in one call; share out the results."""
    t = time.perf_counter()
    crops = [crop for c in chunks for crop in c.crops]
    if crops:
        faces = [
            c.start + k
            for c in chunks
            for k, index in enumerate(c.clip_index)
            if plan.present[index]
        ]
        windows = gather_windows(plan.mel, plan.starts[faces])
        generated = generator(np.stack(crops), windows)
        offset = 0
        for c in chunks:
            c.generated = generated[offset : offset + len(c.crops)]
            offset += len(c.crops)
            c.crops = []
    clock.add("generate", t)
    clock.mark("generated")


def _composite(
    plan: RenderPlan,
    flow: _Flow,
    clock: StageClock,
    inbox: queue.Queue[Batch | None],
    out: queue.Queue[Batch | None],
) -> None:
    """Blend generated mouths into their frames, several frames at a time."""
    with ThreadPoolExecutor(max_workers=plan.workers, thread_name_prefix="composite") as pool:
        for batch in flow.items(inbox):
            t = time.perf_counter()
            if batch.generated is not None:
                if plan.compositor is None:
                    _composite_each(plan, batch, pool)
                else:
                    _composite_batch(plan, plan.compositor, batch, pool)
            batch.generated = None
            clock.add("composite", t)
            clock.mark("composited")
            flow.put(out, batch)
    clock.mark("composited_all")
    flow.put(out, None)


def _faces(plan: RenderPlan, batch: Batch) -> list[int]:
    """Positions in `batch` of the frames with a face (and so a generated crop), in order."""
    return [pos for pos, index in enumerate(batch.clip_index) if plan.present[index]]


def _composite_each(plan: RenderPlan, batch: Batch, pool: ThreadPoolExecutor) -> None:
    """The NumPy path: one blend per frame, spread over the pool."""
    assert batch.generated is not None
    jobs = []
    for k, pos in enumerate(_faces(plan, batch)):
        index = batch.clip_index[pos]
        args = (batch.frames[pos], batch.generated[k], plan.boxes[index])
        jobs.append((pos, pool.submit(composite_i420, *args, plan.landmarks[index], plan.size)))
    for pos, job in jobs:
        batch.frames[pos] = job.result()


def _composite_batch(
    plan: RenderPlan, compositor: TorchCompositor, batch: Batch, pool: ThreadPoolExecutor
) -> None:
    """The torch path: the whole chunk in one batch; masks are computed on the pool."""
    assert batch.generated is not None
    positions = _faces(plan, batch)
    indices = [batch.clip_index[pos] for pos in positions]
    frames = [batch.frames[pos] for pos in positions]
    compositor.composite(
        frames, batch.generated, plan.boxes[indices], plan.landmarks[indices], pool.map
    )


def _encode(
    flow: _Flow,
    clock: StageClock,
    inbox: queue.Queue[Batch | None],
    writer: FrameSink,
) -> None:
    """Encode frames in order, interleaving the audio."""
    for batch in flow.items(inbox):
        t = time.perf_counter()
        for frame in batch.frames:
            writer.write(frame)
        clock.add("encode", t)
        flow.encoded = batch.start + len(batch)
    clock.mark("flushing")
