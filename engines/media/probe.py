"""Probing media files on PyAV: what a file holds, proven by decoding its first frame.

Rejects what is not real media (missing, empty, text, junk data) with a `BadInput` that says why.
Files are opened through `engines.media.guard`; with `limits`, sizes, duration and the work a
file promises are checked from its headers before the first frame is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av

from engines.media.guard import Limits, open_input, sniffed
from jayavatar.errors import BadInput

#: Still-image codecs; a single-frame stream in one of these is a photo, not a video.
STILL_CODECS = frozenset({"mjpeg", "png", "webp", "bmp", "tiff", "jpeg2000", "qoi"})
#: Demuxers that never hold real media (FFmpeg's "tty" shows any text file as ANSI art).
REJECTED_FORMATS = frozenset({"tty", "ansi", "txt", "lrc", "srt", "ass", "webvtt", "sub"})

MediaKind = Literal["video", "image", "audio"]


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` learned about a media file."""

    kind: MediaKind
    duration_s: float
    width: int
    height: int
    fps: float
    frames: int
    has_audio: bool
    audio_rate: int
    video_codec: str
    audio_codec: str
    format_name: str


def probe(path: Path, limits: Limits | None = None) -> MediaInfo:
    """Inspect `path` and decode its first frame; raise `BadInput` unless it is real media.

    With `limits`, a photo's size is read from its header before FFmpeg sees it, and a video's
    size, duration and frame count before its first frame is decoded.
    """
    check_file(path)
    found = sniffed(path)
    if found.still and limits is not None:
        limits.check_still(path, found)
    try:
        with open_input(path, found) as container:
            return _probe_open(path, container, limits)
    except av.FFmpegError as exc:
        raise BadInput(f"{path.name} is not a readable video, image or audio file") from exc
    except MemoryError:
        raise BadInput(f"{path.name} needs more memory to decode than is allowed") from None


def check_file(path: Path) -> None:
    """Reject missing and empty files before FFmpeg guesses at them."""
    if not path.is_file():
        raise BadInput(f"{path.name} does not exist")
    if path.stat().st_size == 0:
        raise BadInput(f"{path.name} is empty (0 bytes)")


def quarter_turns(frame: Any) -> int:
    """Counter-clockwise quarter turns that show a decoded frame upright (its display matrix)."""
    return round(float(getattr(frame, "rotation", 0) or 0) / 90) % 4


def _probe_open(path: Path, container: Any, limits: Limits | None) -> MediaInfo:
    """Build a MediaInfo from an open input container."""
    fmt = container.format.name
    if fmt in REJECTED_FORMATS:
        raise BadInput(f"{path.name} is not a video, image or audio file")
    videos = [s for s in container.streams.video if s.codec_context.name not in REJECTED_FORMATS]
    audios = list(container.streams.audio)
    if not videos and not audios:
        raise BadInput(f"{path.name} has no video or audio stream")
    audio = audios[0] if audios else None
    if not videos:
        return _audio_info(path, container, audio)
    stream = videos[0]
    if limits is not None:
        _check_header(path, container, stream, limits)
    first = _first_frame(path, container, stream)
    width, height = first.width, first.height
    if quarter_turns(first) % 2:
        width, height = height, width  # phones store portrait video sideways plus a tag
    codec = stream.codec_context.name
    is_still = codec in STILL_CODECS and (stream.frames or 1) <= 1 and not audios
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)
    duration = _duration_s(container, stream)
    if is_still:
        fps, duration = 0.0, 0.0
    frames = 1 if is_still else int(stream.frames or round(duration * fps))
    return MediaInfo(
        kind="image" if is_still else "video",
        duration_s=duration,
        width=width,
        height=height,
        fps=fps,
        frames=frames,
        has_audio=audio is not None,
        audio_rate=int(audio.rate) if audio is not None else 0,
        video_codec=codec,
        audio_codec=audio.codec_context.name if audio is not None else "",
        format_name=fmt,
    )


def _check_header(path: Path, container: Any, stream: Any, limits: Limits) -> None:
    """Check what the headers promise before a frame is decoded."""
    ctx = stream.codec_context
    if stream.codec_context.name in STILL_CODECS and (stream.frames or 1) <= 1:
        limits.check_size(path, ctx.width, ctx.height)
        return
    limits.check_video(
        path, ctx.width, ctx.height, _duration_s(container, stream), int(stream.frames or 0)
    )


def _audio_info(path: Path, container: Any, audio: Any) -> MediaInfo:
    """Describe an audio-only file, decoding one frame to prove it is audio."""
    try:
        next(iter(container.decode(audio)))
    except StopIteration:
        raise BadInput(f"{path.name} holds no decodable audio") from None
    return MediaInfo(
        kind="audio",
        duration_s=_duration_s(container, audio),
        width=0,
        height=0,
        fps=0.0,
        frames=0,
        has_audio=True,
        audio_rate=int(audio.rate),
        video_codec="",
        audio_codec=audio.codec_context.name,
        format_name=container.format.name,
    )


def _first_frame(path: Path, container: Any, stream: Any) -> Any:
    """Decode the first video frame: a file with a valid header but junk data fails here."""
    try:
        return next(iter(container.decode(stream)))
    except StopIteration:
        raise BadInput(f"{path.name} holds no decodable video frame") from None


def _duration_s(container: Any, stream: Any) -> float:
    """Best duration estimate: the stream's own, else the container's."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / float(av.time_base)
    return 0.0
