"""Decoding and encoding in processes of their own, so the render is not capped by one GIL.

In one process the decoder's frame copies and crop conversions, the compositor's packing
and the encoder's Python side take turns on one interpreter lock: with the GPU doing the
heavy work, that capped a 720p render near 280 frames/s on a 16-core host. Here a decoder,
one or more encoders and a muxer (`engines.media.children`) do that work beside the
render's own threads. Frames live in a shared `FrameRing`, so only slot numbers and the
small 96×96 generator crops cross the sockets.

The children are plain interpreters started once per engine and reused render after
render; a render that fails kills them, and the next one starts new ones. A child exits
when its socket to the engine closes, which also happens when the engine's process is
killed. (multiprocessing does not fit: the engine already runs in a daemonic process,
which may not start children, and a forkserver would re-import the engine's main module in
every child.)
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from engines.media.children import DecodeJob, Layout
from engines.media.frame_ring import MAX_ENCODERS, FrameRing
from jayavatar.errors import EngineError

U8: TypeAlias = NDArray[np.uint8]
#: A decoded chunk: first output frame, its frames (ring views), clip indices, face crops.
Chunk: TypeAlias = tuple[int, list[U8], list[int], U8]
#: How often the render's receiving thread looks at its stop flag and at the muxer.
POLL_S = 0.1
#: Seconds of output per encoder run: whole keyframe intervals (one a second).
SEGMENT_S = 2
#: Encoder settings the encoders take from the writer's options; the rest go to the muxer.
ENCODER_KEYS = ("width", "height", "fps", "preset", "nvenc", "crf")

__all__ = ["DecodeJob", "FrameProcesses", "MediaWorkers"]


def _socketpair() -> tuple[Connection, socket.socket]:
    """A connection for this side and the socket to hand a child."""
    ours, theirs = socket.socketpair()
    return Connection(ours.detach()), theirs


class MediaWorkers:
    """An engine's decoder, encoders and muxer, and the frame ring they share."""

    def __init__(self, encoders: int = 1) -> None:
        if not 1 <= encoders <= MAX_ENCODERS:
            raise EngineError(f"encoder processes must be 1 to {MAX_ENCODERS}, not {encoders}")
        self.encoders = encoders
        self._procs: list[subprocess.Popen[bytes]] = []
        self.conns: dict[str, Connection] = {}
        self.ring: FrameRing | None = None

    @property
    def pids(self) -> list[int]:
        """Process ids of the running children."""
        return [proc.pid for proc in self._procs]

    def start(self) -> None:
        """Start the children unless all run (their imports take a moment: do it at load)."""
        if self._procs and all(proc.poll() is None for proc in self._procs):
            return
        self.stop()
        links = [socket.socketpair() for _ in range(self.encoders)]
        self._spawn("decoder", [])
        for k, (enc_side, _) in enumerate(links):
            self._spawn(f"encoder{k}", [enc_side])
        self._spawn("muxer", [mux_side for _, mux_side in links])

    def _spawn(self, name: str, links: list[socket.socket]) -> None:
        """Start one child with its socket to the engine and its links to other children."""
        conn, theirs = _socketpair()
        socks = [theirs, *links]
        fds = [s.fileno() for s in socks]
        role = name.rstrip("0123456789")
        proc = subprocess.Popen(
            [sys.executable, "-m", "engines.media.children", role, *map(str, fds)],
            cwd=Path(__file__).resolve().parents[1],
            pass_fds=fds,
        )
        for s in socks:
            s.close()
        self._procs.append(proc)
        self.conns[name] = conn

    def prepare(self, size: tuple[int, int], slots: int) -> FrameRing:
        """Make sure the children run and the ring fits; zero its counters."""
        self.start()
        ring = self.ring
        if ring is None or ring.size != size or ring.slots != slots:
            if ring is not None:
                ring.close()
            self.ring = ring = FrameRing(size, slots)
        ring.counters[:] = 0
        return ring

    def stop(self) -> None:
        """Kill the children (after a failure they may be mid-message)."""
        for conn in self.conns.values():
            conn.close()
        for proc in self._procs:
            proc.kill()
            proc.wait()
        self._procs, self.conns = [], {}

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
        self.ring = workers.prepare(job.size, slots)
        self.layout = Layout(workers.encoders, SEGMENT_S * int(writer["fps"]))
        head = (self.ring.name, job.size, slots)
        conns = workers.conns
        self._dec, self._mux = conns["decoder"], conns["muxer"]
        self._encs = [conns[f"encoder{k}"] for k in range(workers.encoders)]
        spec = {key: writer[key] for key in ENCODER_KEYS if key in writer}
        self._dec.send((*head, (job, self.layout)))
        for k, enc in enumerate(self._encs):
            enc.send((*head, (k, self.layout, spec)))
        self._mux.send((*head, (writer, self.layout)))

    @property
    def encoded(self) -> int:
        """Frames written to the file so far."""
        return self.ring.written

    def chunks(self, stopped: Callable[[], bool]) -> Iterator[Chunk]:
        """Yield (start, frames as ring views, clip indices, crops) as the decoder sends them.

        Returns early once `stopped()`; raises as soon as a child fails or dies (the muxer
        says nothing before `finish` unless something failed).
        """
        while not stopped():
            if self._mux.poll():
                self._recv(self._mux, "muxer")
                raise EngineError("wav2lip muxer process stopped early")
            if not self._dec.poll(POLL_S):
                continue
            msg = self._recv(self._dec, "decoder")
            if msg[0] == "end":
                self.busy["decode"] = float(msg[1])
                return
            start, index, crops = msg
            yield start, [self.ring.frame(start + k) for k in range(len(index))], index, crops

    def write(self, start: int, count: int) -> None:
        """Hand frames start..start+count-1 (composited in their slots) to their encoders."""
        i, end, run = start, start + count, self.layout.segment
        while i < end:
            stop = min(end, (i // run + 1) * run)
            self._encs[self.layout.owner(i)].send((i, stop - i))
            i = stop

    def finish(self) -> None:
        """Let the encoders flush and the muxer close the file; raise if any of them failed."""
        for enc in self._encs:
            enc.send(None)
        msg = self._recv(self._mux, "muxer")
        self.busy["mux"], self.busy["encode"], self.codec = float(msg[1]), float(msg[2]), msg[3]
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
