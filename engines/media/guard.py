"""Opening untrusted media: one demuxer, local files only, and work bounded before it starts.

FFmpeg picks a demuxer from a file's content and name, and some demuxers open other files: an
HLS playlist names segments by path, a concat script lists files, an MP4 may reference external
data. So every read of stored media (uploads, prepared clips, speech, renders) goes through
`open_input`: the container is sniffed from its first bytes (`engines.media.sniff`), FFmpeg is told
to use that demuxer and no other (`format_whitelist`), to read through the `file` protocol only
(`protocol_whitelist`), and to follow no external references.

A few KB can also promise gigabytes or minutes of decoding (a 16000x16000 PNG, two hours of 4K
black). `Limits` are checked against the headers before any frame is decoded, and `Budget`
stops a decode whose work outgrows what a file of its size can honestly hold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from engines.media.sniff import Sniffed, image_size, sniff
from jayavatar.errors import BadInput

#: Decoded pixels (frames x width x height) a file may cost per byte of input. Real camera
#: video holds well under 5,000; flat frames compress far beyond it.
PX_PER_BYTE = 20_000
#: Work every file may cost whatever its size: about 20 s of 1080p at 25 frames/s.
FREE_PX = 1_000_000_000
#: Wall time a decode (with the work done on each frame) may take: a base plus so much per MiB.
BASE_S = 30.0
S_PER_MIB = 60.0


def demuxer_options() -> dict[str, str]:
    """Format-context options for untrusted input: local files only, no external references."""
    return {"protocol_whitelist": "file", "enable_drefs": "0", "use_absolute_path": "0"}


def sniffed(path: Path) -> Sniffed:
    """Return the container of stored media, or refuse it (the worker does not trust names)."""
    if not path.is_file():
        raise BadInput(f"{path.name} does not exist")
    if path.stat().st_size == 0:
        raise BadInput(f"{path.name} is empty (0 bytes)")
    found = sniff(path)
    if found is None:
        raise BadInput(f"{path.name} is not a video, image or audio file of a supported type")
    return found


def open_input(path: Path, found: Sniffed | None = None) -> Any:
    """Open stored media for reading with the demuxer its bytes announce, and only that one."""
    found = found or sniffed(path)
    options = {**demuxer_options(), "format_whitelist": found.demuxer}
    try:
        return av.open(str(path), format=found.demuxer, container_options=options)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path.name} is not a readable {found.name} file") from exc


@dataclass(frozen=True)
class Limits:
    """What a video or photo may be, checked from its headers before any decode."""

    max_pixels: int
    max_seconds: float
    fps: float  # the rate frames are produced at downstream (resampling repeats frames)

    def check_still(self, path: Path, found: Sniffed) -> None:
        """Refuse a photo whose header promises too many pixels, before it is opened."""
        size = image_size(path, found)
        if size is None:
            raise BadInput(f"{path.name} is not a readable {found.name} image (bad header)")
        self.check_size(path, *size)

    def check_size(self, path: Path, width: int, height: int) -> None:
        """Refuse frames of more than `max_pixels` (or of no size at all)."""
        if width <= 0 or height <= 0:
            raise BadInput(f"{path.name} has no picture size in its header")
        if width * height > self.max_pixels:
            raise BadInput(
                f"{path.name} is {width}x{height}; at most {self.max_pixels:,} pixels "
                "per frame are allowed"
            )

    def check_video(self, path: Path, width: int, height: int, seconds: float, frames: int) -> None:
        """Refuse a video too large, too long, or promising more work than its size can hold."""
        self.check_size(path, width, height)
        if seconds > self.max_seconds:
            raise BadInput(
                f"{path.name} lasts {seconds:.1f} s; avatars may last at most "
                f"{self.max_seconds:.0f} s"
            )
        work = max(frames, seconds * self.fps) * width * height
        if work > allowance(path.stat().st_size):
            raise BadInput(
                f"{path.name} is {seconds:.0f} s of {width}x{height} video in only "
                f"{path.stat().st_size:,} bytes; that is too much decoding for so small a file"
            )


def allowance(size_bytes: int) -> float:
    """Return the decoded pixels a file of `size_bytes` may cost."""
    return FREE_PX + PX_PER_BYTE * float(size_bytes)


class Budget:
    """Counts decoded pixels and wall time; refuses the file once either runs out."""

    def __init__(self, path: Path) -> None:
        size = path.stat().st_size
        self.name = path.name
        self.pixels = allowance(size)
        self.deadline = time.monotonic() + BASE_S + S_PER_MIB * size / 2**20

    def spend(self, pixels: int) -> None:
        """Count one decoded frame of `pixels`; raise `BadInput` once the budget is spent."""
        self.pixels -= pixels
        if self.pixels < 0:
            raise BadInput(f"{self.name} decodes to far more video than its size allows")
        if time.monotonic() > self.deadline:
            raise BadInput(f"{self.name} takes too long to decode for its size")
