"""The render's helper processes: one decoder, one or more encoders and one muxer.

Run as `python -m engines.media.children ROLE FD...` by `engines.lipsync.wav2lip_procs`, each child
serves one render per job message until its socket to the engine closes.

- The **decoder** plays the clip back and forth into the frame ring and sends each chunk's
  clip indices and 96×96 face crops to the render.
- The output is cut into runs of `Layout.segment` frames dealt round robin to the
  **encoders**, so encoding scales past one x264 instance. Each encoder numbers its frames
  on its own contiguous timeline, forces an IDR frame at the start of each run (x264 closes
  its GOPs, so no frame refers across a cut) and sends the packets, with times moved back
  onto the output's timeline, to the muxer.
- The **muxer** writes the runs in order into the MP4 and interleaves the audio. Its own
  video stream is opened with the encoders' options only to give the file the same codec
  header (SPS/PPS); it checks that they match.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, TypeAlias, TypeVar, cast

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from engines.media.frame_ring import WRITTEN, FrameRing
from engines.media.video import VideoWriter, nvenc_available, video_options
from jayavatar.errors import EngineError

U8: TypeAlias = NDArray[np.uint8]
#: (data, pts, dts, keyframe) of one encoded packet, on the output's timeline.
Packet: TypeAlias = tuple[bytes, int, int, bool]
#: How long the decoder sleeps while every slot still waits for its encoder.
WAIT_S = 0.001
#: Decoded frames the decoder's decoding thread may run ahead of its copying thread.
AHEAD = 8
T = TypeVar("T")


@dataclass(frozen=True)
class Layout:
    """How output frames are dealt to the encoders: runs of `segment` frames, round robin."""

    encoders: int
    segment: int

    def owner(self, i: int) -> int:
        """The encoder of output frame `i`."""
        return (i // self.segment) % self.encoders

    def local(self, i: int) -> int:
        """Frame `i`'s position on its encoder's own timeline."""
        run = i // self.segment // self.encoders
        return run * self.segment + i % self.segment

    def shift(self, local: int, encoder: int) -> int:
        """What to add to a time on `encoder`'s timeline to put it on the output's."""
        run = local // self.segment
        return (run * self.encoders + encoder - run) * self.segment


@dataclass(frozen=True)
class DecodeJob:
    """What the decoder needs: the clip, the output length and where the faces are."""

    clip: Path
    size: tuple[int, int]
    fps: float
    n_clip: int
    n_out: int
    chunk: int
    present: NDArray[np.bool_]
    boxes: NDArray[np.int32]


def decode(conn: Connection, ring: FrameRing, job: DecodeJob, layout: Layout) -> None:
    """Decode the clip into the ring; send (start, clip indices, crops) chunks, then the end."""
    from engines.lipsync.wav2lip_blend import face_crop_i420
    from engines.lipsync.wav2lip_io import copy_i420, iter_pingpong_frames

    busy, start, t = 0.0, 0, time.perf_counter()
    index: list[int] = []
    crops: list[U8] = []
    frames = iter_pingpong_frames(job.clip, job.n_clip, job.n_out, job.fps)
    for i, (clip_index, frame) in enumerate(in_thread(frames, AHEAD)):
        busy += time.perf_counter() - t
        old = i - ring.slots  # the frame whose slot this one takes
        while old >= 0 and ring.counters[layout.owner(old)] <= old:
            if conn.poll():  # the render sends nothing mid-render: this is its end
                raise EOFError("the render went away")
            time.sleep(WAIT_S)
        t = time.perf_counter()
        slot = ring.frame(i)
        copy_i420(frame, slot)
        index.append(clip_index)
        if job.present[clip_index]:
            crops.append(face_crop_i420(slot, job.boxes[clip_index], job.size))
        if len(index) == job.chunk:
            busy += time.perf_counter() - t
            conn.send((start, index, _stack(crops)))
            start, index, crops, t = i + 1, [], [], time.perf_counter()
    busy += time.perf_counter() - t
    if index:
        conn.send((start, index, _stack(crops)))
    conn.send(("end", busy))


def in_thread(items: Iterator[T], depth: int) -> Iterator[T]:
    """Yield `items` as a thread of their own produces them, at most `depth` ahead.

    PyAV decodes without holding the GIL, so the next frames decode while this thread
    copies and crops the last ones. Errors in the producer are raised here; leaving the
    loop early stops the producer and closes `items`.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(items, q, stop), name="decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _produce(items: Iterator[T], q: queue.Queue[tuple[str, Any]], stop: threading.Event) -> None:
    """Feed `items` into `q` until they end, fail, or `stop` is set; then close them."""

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                q.put(entry, timeout=WAIT_S * 100)
                return True
        return False

    try:
        for item in items:
            if not put(("item", item)):
                return
        put(("end", None))
    except BaseException as exc:
        put(("error", exc))
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _stack(crops: list[U8]) -> U8:
    """Crops as one array (possibly empty), which pickles as a single buffer."""
    return np.stack(crops) if crops else np.zeros((0, 96, 96, 3), np.uint8)


def open_encoder(
    width: int, height: int, fps: int, preset: str = "fast", nvenc: bool = False, crf: int = 20
) -> Any:
    """An H.264 encoder with the options `VideoWriter` gives its stream, headers global."""
    codec = "h264_nvenc" if nvenc and nvenc_available() else "libx264"
    ctx: Any = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base, ctx.framerate = Fraction(1, fps), Fraction(fps)
    ctx.options = video_options(codec, fps, crf, preset, None)
    ctx.flags |= av.codec.context.Flags.global_header
    if codec == "libx264":
        ctx.thread_type = "FRAME"  # x264's frame threads; PyAV would pick slice threads
    ctx.open()
    return ctx


def encode(
    conn: Connection, mux: Connection, ring: FrameRing, k: int, layout: Layout, spec: dict[str, Any]
) -> None:
    """Encode the frames the render names, as (start, count), until None; then flush."""
    ctx = open_encoder(**spec)
    mux.send(("header", k, bytes(ctx.extradata or b"")))
    busy = 0.0
    while (msg := conn.recv()) is not None:
        t = time.perf_counter()
        start, count = msg
        for i in range(start, start + count):
            frame = av.VideoFrame.from_ndarray(ring.frame(i), format="yuv420p")
            frame.pts, frame.time_base = layout.local(i), ctx.time_base
            if i % layout.segment == 0:
                frame.pict_type = av.video.frame.PictureType.I
            packets = ctx.encode(frame)
            ring.counters[k] = i + 1  # the encoder holds its own copy: the slot is free
            _send_packets(mux, k, layout, packets)
        busy += time.perf_counter() - t
    t = time.perf_counter()
    _send_packets(mux, k, layout, ctx.encode(None))
    mux.send(("end", k, busy + time.perf_counter() - t))


def _send_packets(mux: Connection, k: int, layout: Layout, packets: list[Any]) -> None:
    """Send packets to the muxer with their times on the output's timeline."""
    if packets:
        out = [
            (
                bytes(p),
                p.pts + layout.shift(p.pts, k),
                p.dts + layout.shift(p.pts, k),
                p.is_keyframe,
            )
            for p in packets
        ]
        mux.send(("packets", k, out))


class PacketWriter(VideoWriter):
    """`VideoWriter` fed packets encoded elsewhere; its own encoder only supplies the header."""

    def write_packet(self, packet: Packet) -> None:
        """Mux one video packet, then the audio up to the end of the frames so far."""
        data, pts, dts, key = packet
        p = av.Packet(data)
        p.pts, p.dts, p.time_base = pts, dts, Fraction(1, self.fps)
        p.stream, p.is_keyframe = self.video, key
        self.container.mux(p)
        self.frames += 1
        self._write_audio_until(self.frames * self.audio_rate // self.fps)


def mux(
    ring: FrameRing, encoders: list[Connection], writer: dict[str, Any], layout: Layout
) -> tuple[float, float, str]:
    """Write the encoders' runs in output order; return (mux busy, encode busy, codec)."""
    queues: list[deque[Packet]] = [deque() for _ in encoders]
    ended: dict[int, float] = {}
    busy, run = 0.0, 0
    out = PacketWriter(**writer)
    with out:
        out.container.start_encoding()
        header = bytes(out.video.codec_context.extradata or b"")
        while True:
            live = [c for k, c in enumerate(encoders) if k not in ended]
            if not live and not any(queues):
                break
            for conn in wait(live) if live else []:
                kind, k, body = _recv_from_encoder(cast(Connection, conn))
                if kind == "header" and body != header:
                    raise EngineError("encoder processes disagree on the H.264 header")
                if kind == "packets":
                    queues[k].extend(body)
                if kind == "end":
                    ended[k] = body
            t = time.perf_counter()
            run = _write_ready(out, queues, ended, layout, run)
            ring.counters[WRITTEN] = out.frames
            busy += time.perf_counter() - t
        t = time.perf_counter()
    busy += time.perf_counter() - t
    return busy, max(ended.values(), default=0.0), out.codec


def _recv_from_encoder(conn: Connection) -> tuple[str, int, Any]:
    """The next message from an encoder; its failure or death ends the render."""
    try:
        msg = conn.recv()
    except (EOFError, OSError) as exc:
        raise EngineError("wav2lip encoder process died") from exc
    if msg[0] == "error":
        raise EngineError(f"wav2lip encoder failed: {msg[1]}")
    kind, k, body = msg
    return str(kind), int(k), body


def _write_ready(
    out: PacketWriter,
    queues: list[deque[Packet]],
    ended: dict[int, float],
    layout: Layout,
    run: int,
) -> int:
    """Write every packet whose run is next in output order; return the run now waited for."""
    while True:
        k = run % layout.encoders
        queue = queues[k]
        while queue and queue[0][1] // layout.segment == run:
            out.write_packet(queue.popleft())
        # A run is complete once its encoder has moved on to its next run or has ended.
        if queue or k in ended:
            if not queue and all(not q for q in queues):
                return run
            run += 1
            continue
        return run


#: A child's peer went away: the render ended or was killed.
GONE = (EOFError, BrokenPipeError, ConnectionResetError)


def serve(role: str, conn: Connection, links: list[Connection]) -> None:
    """A child's loop: one render per job message, until the engine closes the socket."""
    while True:
        try:
            ring_name, size, slots, payload = conn.recv()
        except GONE:
            return
        ring = FrameRing(size, slots, ring_name)
        report = links[0] if role == "encoder" else conn
        try:
            if role == "decoder":
                decode(conn, ring, *payload)
            elif role == "encoder":
                encode(conn, links[0], ring, *payload)
            else:
                conn.send(("end", *mux(ring, links, *payload)))
        except GONE:
            return
        except BaseException:
            lines = traceback.format_exc().strip().splitlines()
            with contextlib.suppress(OSError):
                report.send(("error", lines[-1]))
            return  # the engine replaces a child that failed
        finally:
            ring.close()


def main() -> None:
    """Entry point: `python -m engines.media.children decoder|encoder|muxer FD [FD...]`."""
    role, fds = sys.argv[1], [int(fd) for fd in sys.argv[2:]]
    if role not in ("decoder", "encoder", "muxer") or not fds:
        raise SystemExit("usage: python -m engines.media.children decoder|encoder|muxer FD...")
    # OpenCV would spread each small crop conversion over a thread per core, whose spinning
    # cost the decoder about 2.7 CPU ms a 720p frame on a 16-core host for no gain.
    cv2.setNumThreads(1)
    serve(role, Connection(fds[0]), [Connection(fd) for fd in fds[1:]])


if __name__ == "__main__":
    main()
