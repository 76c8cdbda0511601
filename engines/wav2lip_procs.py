"""Decoding and encoding in their own processes, so the render is not capped by one GIL.

In one process the decoder's frame copies and crop conversions, the compositor's packing
and the encoder's Python side take turns on one interpreter lock: with the GPU doing the
heavy work, that capped a 720p render near 300 frames/s on a 16-core host. Here a decoder
process and an encoder process do their parts beside the render's own threads. Frames live
in a shared `FrameRing`, so only slot numbers and the small 96×96 generator crops cross the
sockets; the decoder reuses a slot only once the encoder has written the frame that held it.

The children are plain interpreters (`python -m engines.wav2lip_procs ROLE FD`), started once
per engine and reused render after render; a render that fails kills them, and the next one
starts new ones. A child exits when its socket to the engine closes, which also happens when
the engine's process is killed. (multiprocessing does not fit: the engine already runs in a
daemonic process, which may not start children, and a forkserver would re-import the
engine's main module in every child.)
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from engines.frame_ring import FrameRing
from jayavatar.errors import EngineError

U8: TypeAlias = NDArray[np.uint8]
#: A decoded chunk: first output frame, its frames (ring views), clip indices, face crops.
Chunk: TypeAlias = tuple[int, list[U8], list[int], U8]
ROLES = ("decoder", "encoder")
#: How long the decoder sleeps while every slot still waits to be encoded.
WAIT_S = 0.001
#: How often the render's receiving thread looks at its stop flag and at the encoder.
POLL_S = 0.1


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


def decode(conn: Connection, ring: FrameRing, job: DecodeJob) -> None:
    """Decode the clip back and forth into the ring; send (start, clip indices, crops)."""
    from engines.wav2lip_blend import face_crop_i420
    from engines.wav2lip_io import iter_pingpong

    busy, start, t = 0.0, 0, time.perf_counter()
    index: list[int] = []
    crops: list[U8] = []
    for i, (clip_index, frame) in enumerate(
        iter_pingpong(job.clip, job.n_clip, job.n_out, job.fps)
    ):
        busy += time.perf_counter() - t
        while i - ring.encoded >= ring.slots:  # wait for the encoder to free the slot
            time.sleep(WAIT_S)
        t = time.perf_counter()
        np.copyto(ring.frame(i), frame.reshape(ring.shape))
        index.append(clip_index)
        if job.present[clip_index]:
            crops.append(face_crop_i420(frame, job.boxes[clip_index], job.size))
        if len(index) == job.chunk or i == job.n_out - 1:
            busy += time.perf_counter() - t
            conn.send((start, index, _stack(crops)))
            start, index, crops, t = i + 1, [], [], time.perf_counter()
    busy += time.perf_counter() - t
    if index:
        conn.send((start, index, _stack(crops)))
    conn.send(("end", busy))


def _stack(crops: list[U8]) -> U8:
    """Crops as one array (possibly empty), which pickles as a single buffer."""
    return np.stack(crops) if crops else np.zeros((0, 96, 96, 3), np.uint8)


def encode(conn: Connection, ring: FrameRing, writer: dict[str, Any]) -> None:
    """Encode ring frames as (start, count) messages name them; close the file on None."""
    from engines.wav2lip_io import I420Writer

    busy, t = 0.0, time.perf_counter()
    with I420Writer(**writer) as out:
        if out.codec == "libx264":
            # PyAV opens encoders with slice threads; x264's frame threads are much faster.
            out.video.codec_context.thread_type = "FRAME"
        while (msg := conn.recv()) is not None:
            t = time.perf_counter()
            start, count = msg
            for i in range(start, start + count):
                out.write(ring.frame(i))
                ring.counter[0] = i + 1
            busy += time.perf_counter() - t
        t = time.perf_counter()
    conn.send(("end", busy + time.perf_counter() - t, out.codec))


def serve(role: str, conn: Connection) -> None:
    """A child's loop: one render per job message, until the engine closes the socket."""
    while True:
        try:
            ring_name, size, slots, spec = conn.recv()
        except (EOFError, OSError):
            return
        ring = FrameRing(size, slots, ring_name)
        try:
            if role == "decoder":
                decode(conn, ring, spec)
            else:
                encode(conn, ring, spec)
        except (EOFError, OSError):
            return  # the engine went away
        except BaseException:
            lines = traceback.format_exc().strip().splitlines()
            with contextlib.suppress(OSError):
                conn.send(("error", lines[-1]))
            return  # the engine discards a child that failed
        finally:
            ring.close()


class MediaWorkers:
    """The engine's decoder and encoder processes, and the frame ring they share."""

    def __init__(self) -> None:
        self._procs: dict[str, tuple[subprocess.Popen[bytes], Connection]] = {}
        self.ring: FrameRing | None = None

    @property
    def pids(self) -> list[int]:
        """Process ids of the running children."""
        return [proc.pid for proc, _ in self._procs.values()]

    def start(self) -> None:
        """Start whichever child is not running (imports take a moment; done at engine load)."""
        root = Path(__file__).resolve().parents[1]
        for role in ROLES:
            if role in self._procs and self._procs[role][0].poll() is None:
                continue
            ours, theirs = socket.socketpair()
            proc = subprocess.Popen(
                [sys.executable, "-m", __name__, role, str(theirs.fileno())],
                cwd=root,
                pass_fds=[theirs.fileno()],
            )
            theirs.close()
            self._procs[role] = (proc, Connection(ours.detach()))

    def connections(self, size: tuple[int, int], slots: int) -> tuple[Connection, Connection]:
        """Make sure both children run and the ring fits; return their sockets."""
        self.start()
        ring = self.ring
        if ring is None or ring.size != size or ring.slots != slots:
            if ring is not None:
                ring.close()
            self.ring = ring = FrameRing(size, slots)
        ring.counter[0] = 0
        return self._procs["decoder"][1], self._procs["encoder"][1]

    def stop(self) -> None:
        """Kill both children (after a failure they may be mid-message)."""
        for proc, conn in self._procs.values():
            conn.close()
            proc.kill()
            proc.wait()
        self._procs.clear()

    def close(self) -> None:
        """Stop the children and free the ring."""
        self.stop()
        if self.ring is not None:
            self.ring.close()
            self.ring = None


class FrameProcesses:
    """One render's use of `MediaWorkers`: what `render_stream` reads from and writes to."""

    def __init__(
        self, job: DecodeJob, writer: dict[str, Any], slots: int, workers: MediaWorkers
    ) -> None:
        self.workers, self.writer = workers, writer
        self.busy: dict[str, float] = {}
        self.codec = ""
        self._done = False
        self._dec, self._enc = workers.connections(job.size, slots)
        assert workers.ring is not None
        self.ring = workers.ring
        self._dec.send((self.ring.name, job.size, slots, job))
        self._enc.send((self.ring.name, job.size, slots, writer))

    @property
    def encoded(self) -> int:
        """Frames the encoder has written so far."""
        return self.ring.encoded

    def chunks(self, stopped: Callable[[], bool]) -> Iterator[Chunk]:
        """Yield (start, frames as ring views, clip indices, crops) as the decoder sends them.

        Returns early once `stopped()`; raises as soon as either child fails or dies (the
        encoder says nothing before `finish` unless it failed).
        """
        while not stopped():
            if self._enc.poll():
                self._recv(self._enc, "encoder")
                raise EngineError("wav2lip encoder process stopped early")
            if not self._dec.poll(POLL_S):
                continue
            msg = self._recv(self._dec, "decoder")
            if msg[0] == "end":
                self.busy["decode"] = float(msg[1])
                return
            start, index, crops = msg
            yield start, [self.ring.frame(start + k) for k in range(len(index))], index, crops

    def write(self, start: int, count: int) -> None:
        """Hand frames start..start+count-1 (composited in their slots) to the encoder."""
        self._enc.send((start, count))

    def finish(self) -> None:
        """Let the encoder flush and close the file; raise if it failed."""
        self._enc.send(None)
        msg = self._recv(self._enc, "encoder")
        self.busy["encode"], self.codec = float(msg[1]), str(msg[2])
        self._done = True

    def _recv(self, conn: Connection, who: str) -> Any:
        """The next message from a child, turning its failure or death into EngineError."""
        try:
            msg = conn.recv()
        except (EOFError, OSError) as exc:
            raise EngineError(f"wav2lip {who} process died") from exc
        if isinstance(msg, tuple) and msg and msg[0] == "error":
            raise EngineError(f"wav2lip {who} failed: {msg[1]}")
        return msg

    def __enter__(self) -> FrameProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        """After a failure the children may be mid-render: replace them, drop the partial file."""
        if not self._done:
            self.workers.stop()
            Path(self.writer["path"]).unlink(missing_ok=True)


def main() -> None:
    """Entry point of a child: `python -m engines.wav2lip_procs decoder|encoder FD`."""
    role, fd = sys.argv[1], int(sys.argv[2])
    if role not in ROLES:
        raise SystemExit(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    serve(role, Connection(fd))


if __name__ == "__main__":
    main()
