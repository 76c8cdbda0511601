"""Media I/O on PyAV (FFmpeg bundled in the wheel): stream frames in, stream an MP4 out.

Everything here works frame by frame, so memory stays bounded whatever the clip length.
Frames are RGB uint8 numpy arrays of shape (height, width, 3); audio is mono float32.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias

import av
import numpy as np
import numpy.typing as npt

from engines.media.guard import open_input

# Re-exported: callers holding only `media` loop clips with these.
from engines.media.pingpong import iter_pingpong as iter_pingpong
from engines.media.pingpong import pingpong_index as pingpong_index
from engines.media.probe import check_file, quarter_turns
from engines.media.probe import probe as probe  # re-exported: callers holding only `media` use it
from jayavatar.errors import BadInput, EngineError

#: The output's audio rate; AAC at 48 kHz is what every player expects.
OUTPUT_AUDIO_RATE = 48_000

#: Rate buffer of a bit-rate-capped encode, in seconds of video; smaller means a tighter cap.
VBV_S = 0.5

#: An RGB uint8 frame of shape (height, width, 3).
Image: TypeAlias = npt.NDArray[np.uint8]
#: Mono float32 samples.
Audio: TypeAlias = npt.NDArray[np.float32]


def even_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Scale (width, height) down so the long side is at most `max_side`; round both to even."""
    scale = min(1.0, max_side / max(width, height))
    w = max(2, round(width * scale / 2) * 2)
    h = max(2, round(height * scale / 2) * 2)
    return w, h


def iter_frames(
    path: Path, *, size: tuple[int, int] | None = None, fps: float | None = None
) -> Iterator[Image]:
    """Yield the video frames of `path` one at a time as RGB uint8 arrays.

    `size` (width, height) rescales each frame in FFmpeg. `fps` resamples to a constant frame
    rate by presentation time (frames are repeated or dropped), so variable-rate phone clips come
    out evenly timed. Raises `BadInput` if the data is corrupt before any frame decodes.
    """
    frames = _decode_timed(path, size)
    if fps is None:
        for _, image in frames:
            yield image
        return
    yield from _constant_rate(frames, fps)


def iter_frames_i420(
    path: Path, *, size: tuple[int, int] | None = None, fps: float | None = None
) -> Iterator[Image]:
    """`iter_frames`, but each frame as an I420 array ((3H/2) x W: Y, then U, then V planes).

    A 4:2:0 source at the requested size comes through untouched: no RGB round trip, whose
    chroma filtering would cost every later generation a little more (rotated sources are
    turned in RGB, their one conversion).
    """
    frames = _decode_timed(path, size, "yuv420p")
    if fps is None:
        for _, image in frames:
            yield image
        return
    yield from _constant_rate(frames, fps)


def _decode_timed(
    path: Path, size: tuple[int, int] | None, pix_fmt: str = "rgb24"
) -> Iterator[tuple[float, Image]]:
    """Yield (seconds from the first frame, frame as `pix_fmt`) for each decoded frame."""
    check_file(path)
    kwargs: dict[str, Any] = {"format": pix_fmt}
    if size is not None:
        kwargs.update(width=size[0], height=size[1], interpolation="AREA")
    count = 0
    try:
        with open_input(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start: float | None = None
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else 0.0
                start = t if start is None else start
                count += 1
                yield t - start, _upright(frame, kwargs)
    except (av.FFmpegError, IndexError) as exc:
        if count == 0:
            raise BadInput(f"{path.name} is not a readable video or image") from exc
        # A truncated tail still leaves the frames before it usable.


def _upright(frame: Any, kwargs: dict[str, Any]) -> Image:
    """Convert a frame to RGB at the requested display size, turned as its tag says."""
    turns = quarter_turns(frame)
    if turns == 0:
        return np.asarray(frame.to_ndarray(**kwargs))
    if turns % 2 and "width" in kwargs:
        kwargs = {**kwargs, "width": kwargs["height"], "height": kwargs["width"]}
    if kwargs["format"] == "yuv420p":
        return _turn_i420(np.asarray(frame.to_ndarray(**kwargs)), turns)
    return np.ascontiguousarray(np.rot90(frame.to_ndarray(**kwargs), turns))


def _turn_i420(i420: Image, turns: int) -> Image:
    """Rotate an I420 array by quarter turns, plane by plane (lossless)."""
    width = i420.shape[1]
    height = i420.shape[0] * 2 // 3
    flat = i420.reshape(-1)
    area = width * height
    y = flat[:area].reshape(height, width)
    u = flat[area : area * 5 // 4].reshape(height // 2, width // 2)
    v = flat[area * 5 // 4 :].reshape(height // 2, width // 2)
    parts = [np.rot90(p, turns).reshape(-1) for p in (y, u, v)]
    out_width = height if turns % 2 else width
    return np.ascontiguousarray(np.concatenate(parts).reshape(-1, out_width))


def _constant_rate(frames: Iterable[tuple[float, Image]], fps: float) -> Iterator[Image]:
    """Resample timed frames to `fps`: output k shows the last frame shown at time k / fps."""
    k = 0
    prev: Image | None = None
    prev_t = 0.0
    step = 0.0
    for t, image in frames:
        # Output k belongs to the frame nearest its time, so half a period is the switch point.
        while prev is not None and (k + 0.5) / fps < t:
            yield prev
            k += 1
        step = t - prev_t if prev is not None else step
        prev, prev_t = image, t
    if prev is None:
        return
    end = prev_t + (step if step > 0 else 1.0 / fps)
    while (k + 0.5) / fps < end or k == 0:
        yield prev
        k += 1


def load_audio(path: Path, rate: int) -> Audio:
    """Decode any audio PyAV reads into mono float32 samples at `rate` Hz."""
    check_file(path)
    chunks: list[npt.NDArray[np.generic]] = []
    try:
        with open_input(path) as container:
            if not container.streams.audio:
                raise BadInput(f"{path.name} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(container.streams.audio[0]):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except av.FFmpegError as exc:
        if not chunks:
            raise BadInput(f"{path.name} is not a readable audio file") from exc
    if not chunks:
        raise BadInput(f"{path.name} holds no audio samples")
    return np.concatenate(chunks).astype(np.float32, copy=False)


def video_bitrate_for(cap_bytes: int, duration_s: float, audio_bitrate: int = 128_000) -> int:
    """Return a video bit rate (bit/s) that keeps an MP4 of `duration_s` under `cap_bytes`.

    Leaves 6 % for container overhead, and room for the encoder's rate buffer (VBV_S seconds
    at this rate), which x264 may spend on top of the average. Raises `BadInput` when even a
    very low rate cannot fit, so the caller can say why instead of uploading a failure.
    """
    duration_s = max(duration_s, 0.1)
    budget = (cap_bytes * 8 * 0.94 / duration_s - audio_bitrate) / (1 + VBV_S / duration_s)
    if budget < 50_000:
        raise BadInput(
            f"a {duration_s:.0f} s video cannot fit in {cap_bytes / 2**20:.1f} MiB; "
            "use shorter text"
        )
    return int(budget)


@functools.cache
def nvenc_available() -> bool:
    """Return whether FFmpeg can open an NVENC H.264 encoder here (driver and GPU present).

    Asked once per process: on a card without NVENC (H100, H200) the failing probe took 0.61 s,
    and every Wav2Lip render paid it in its encoder and muxer processes until the answer was
    kept (a warm 10 s 720p render on an H100: 1.27 s before, 0.42 s after).
    """
    if "h264_nvenc" not in av.codecs_available:
        return False
    try:
        ctx = av.CodecContext.create("h264_nvenc", "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.open()
    except (av.FFmpegError, ValueError):
        return False
    return True


def video_options(
    codec: str, fps: int, crf: int, preset: str, bitrate: int | None, tune: str | None = None
) -> dict[str, str]:
    """Encoder options: constant quality, or a capped bit rate; a keyframe every second."""
    options: dict[str, str]
    if codec == "h264_nvenc":
        options = {"preset": "p4", "rc": "vbr", "cq": str(crf)}
    else:
        # forced-idr: a keyframe asked for by a frame is an IDR, where a stream may be cut.
        options = {"preset": preset, "crf": str(crf), "forced-idr": "1"}
        if tune is not None:
            options["tune"] = tune
    # One keyframe a second keeps seeking (back-and-forth looping) cheap.
    options["g"] = str(fps)
    if bitrate is not None:
        options.pop("crf", None)
        options.pop("cq", None)
        options.update(maxrate=str(bitrate), bufsize=str(int(bitrate * VBV_S)))
    return options


class VideoWriter:
    """Streams RGB frames and mono audio into an H.264/AAC MP4 with `+faststart`.

    Audio is interleaved as video is written, then cut or padded to the video's length on
    `close`, so both streams last the same time. On an exception inside `with`, the partial
    file is removed.
    """

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: int,
        *,
        audio: npt.ArrayLike | None = None,
        audio_rate: int = OUTPUT_AUDIO_RATE,
        nvenc: bool = False,
        crf: int = 20,
        preset: str = "fast",
        bitrate: int | None = None,
        audio_bitrate: int = 128_000,
        metadata: dict[str, str] | None = None,
        tune: str | None = None,
    ) -> None:
        if width % 2 or height % 2:
            raise EngineError(f"H.264 yuv420p needs even sizes, got {width}x{height}")
        self.path = path
        self.fps = fps
        self.frames = 0
        self.audio = None if audio is None else np.asarray(audio, dtype=np.float32).reshape(-1)
        self.audio_rate = audio_rate
        self._audio_done = 0
        self.container: Any = av.open(
            str(path), "w", format="mp4", options={"movflags": "+faststart"}
        )
        for key, value in (metadata or {}).items():
            self.container.metadata[key] = value
        self.codec = "h264_nvenc" if nvenc and nvenc_available() else "libx264"
        self.video = self._add_video(width, height, crf, preset, bitrate, tune)
        self.audio_stream = None if self.audio is None else self._add_audio(audio_bitrate)

    def _add_video(
        self, width: int, height: int, crf: int, preset: str, bitrate: int | None, tune: str | None
    ) -> Any:
        """Add the H.264 stream with either constant quality or a capped bit rate."""
        options = video_options(self.codec, self.fps, crf, preset, bitrate, tune)
        stream = self.container.add_stream(self.codec, rate=self.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, self.fps)
        if bitrate is not None:
            stream.bit_rate = bitrate
        return stream

    def _add_audio(self, audio_bitrate: int) -> Any:
        """Add the AAC stream."""
        stream = self.container.add_stream("aac", rate=self.audio_rate, layout="mono")
        stream.bit_rate = audio_bitrate
        return stream

    def write(self, frame: Image) -> None:
        """Encode one RGB uint8 frame, then the audio up to the end of that frame."""
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.frames
        vf.time_base = Fraction(1, self.fps)
        self.container.mux(self.video.encode(vf))
        self.frames += 1
        self._write_audio_until(self.frames * self.audio_rate // self.fps)

    def write_i420(self, frame: Image) -> None:
        """Encode one I420 frame ((3H/2) x W uint8): the encoder's own layout, no conversion."""
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="yuv420p")
        vf.pts = self.frames
        vf.time_base = Fraction(1, self.fps)
        self.container.mux(self.video.encode(vf))
        self.frames += 1
        self._write_audio_until(self.frames * self.audio_rate // self.fps)

    def _write_audio_until(self, end: int) -> None:
        """Encode audio samples [done, end), padding with zeros past the end of the track."""
        if self.audio_stream is None or self.audio is None or end <= self._audio_done:
            return
        part = self.audio[self._audio_done : end]
        if len(part) < end - self._audio_done:
            part = np.pad(part, (0, end - self._audio_done - len(part)))
        af = av.AudioFrame.from_ndarray(part.reshape(1, -1), format="fltp", layout="mono")
        af.sample_rate = self.audio_rate
        af.pts = self._audio_done
        af.time_base = Fraction(1, self.audio_rate)
        self.container.mux(self.audio_stream.encode(af))
        self._audio_done = end

    def close(self) -> None:
        """Flush both encoders and finish the file."""
        if self.container is None:
            return
        self.container.mux(self.video.encode(None))
        if self.audio_stream is not None:
            self.container.mux(self.audio_stream.encode(None))
        self.container.close()
        self.container = None

    def abort(self) -> None:
        """Close without finishing and delete the partial file."""
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.close()
            self.container = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def frames_for_audio(samples: int, rate: int, fps: int) -> int:
    """Number of video frames that cover `samples` of audio, to the nearest frame (at least 1)."""
    return max(1, math.floor(samples * fps / rate + 0.5))
