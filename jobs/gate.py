"""The one gate every upload passes, whichever front it came through (CLI, Discord, HTTP API).

1. `check_declared`: what the sender claims (size, media type), before a byte is read.
2. `receive`: the bytes, streamed to a file and cut off as soon as they pass the size cap.
3. `admit`: the content, sniffed by its first bytes against the kind's allow-list of
   containers; image sizes and WAV lengths read from headers. The file is then stored under the
   sniffed type's extension, never the user's name or extension (FFmpeg picks demuxers by name).

Refusals are `BadInput` naming the user's file, so the person who sent it knows which one.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engines.media.sniff import Sniffed, image_size, sniff, wav_header
from jayavatar.errors import BadInput
from jayavatar.settings import Settings

UploadKind = Literal["voice", "avatar"]


class TooLarge(BadInput):
    """The upload is bigger than its cap (the HTTP API answers 413)."""


@dataclass(frozen=True)
class Rules:
    """What one kind of upload may be."""

    what: str  # with its article: "a voice sample"
    containers: frozenset[str]
    media_types: tuple[str, ...]
    max_bytes: int


def rules_for(kind: UploadKind, settings: Settings) -> Rules:
    """Return the allow-list and cap of one kind of upload."""
    if kind == "voice":
        # Audio containers, and videos whose sound track is the sample.
        voice = frozenset({"wav", "flac", "mp3", "ogg", "mp4", "matroska"})
        return Rules("a voice sample", voice, ("audio/", "video/"), settings.max_sample_bytes)
    avatar = frozenset({"mp4", "matroska", "jpeg", "png", "webp"})
    cap = settings.max_avatar_bytes
    return Rules("an avatar video or photo", avatar, ("video/", "image/"), cap)


def size_text(count: int) -> str:
    """Return a byte count in whole MiB or KiB where it is one, else in bytes."""
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if count and count % size == 0:
            return f"{count // size} {unit}"
    return f"{count:,} bytes"


def check_declared(
    kind: UploadKind, settings: Settings, label: str, size: int | None, media_type: str | None
) -> None:
    """Refuse by the declared size and media type, before anything is downloaded or read."""
    rules = rules_for(kind, settings)
    declared = (media_type or "").split(";")[0].strip().lower()
    generic = ("", "application/octet-stream")
    if declared not in generic and not declared.startswith(rules.media_types):
        raise BadInput(f"{label} is {declared}, not {rules.what}")
    if size is not None and size > rules.max_bytes:
        raise TooLarge(f"{label} is {size_text(size)}; the limit is {size_text(rules.max_bytes)}")
    if size == 0:
        raise BadInput(f"{label} is empty (0 bytes)")


async def receive(chunks: AsyncIterable[bytes], dest: Path, cap: int, label: str) -> int:
    """Write streamed bytes to `dest`, stopping as soon as they pass `cap`; return the count."""
    received = 0
    with dest.open("wb") as out:
        async for chunk in chunks:
            received += len(chunk)
            if received > cap:
                raise TooLarge(f"{label} is larger than {size_text(cap)}, the limit")
            out.write(chunk)
    return received


def admit(kind: UploadKind, settings: Settings, path: Path, label: str) -> Sniffed:
    """Check a received file's size and content; return its sniffed container or refuse it."""
    rules = rules_for(kind, settings)
    if not path.is_file():
        raise BadInput(f"{label} was not found (no such file)")
    size = path.stat().st_size
    if size == 0:
        raise BadInput(f"{label} is empty (0 bytes)")
    if size > rules.max_bytes:
        raise TooLarge(f"{label} is {size_text(size)}; the limit is {size_text(rules.max_bytes)}")
    found = sniff(path)
    if found is None or found.name not in rules.containers:
        what = "unrecognised content" if found is None else f"{found.name} content"
        raise BadInput(f"{label} is not {rules.what} ({what})")
    if found.still:
        _check_image(path, found, label, settings)
    if found.name == "wav":
        _check_wav(path, label, settings)
    return found


def _check_image(path: Path, found: Sniffed, label: str, settings: Settings) -> None:
    """Refuse photos too big to decode, from their header (a few KB can promise gigabytes)."""
    size = image_size(path, found)
    if size is None:
        raise BadInput(f"{label} is not a readable {found.name} image (bad header)")
    width, height = size
    if width <= 0 or height <= 0 or width * height > settings.max_avatar_pixels:
        raise BadInput(
            f"{label} is {width}x{height}; at most {settings.max_avatar_pixels:,} pixels "
            "per frame are allowed"
        )


def _check_wav(path: Path, label: str, settings: Settings) -> None:
    """Refuse WAV files that are cut short or of the wrong length, from their header."""
    header = wav_header(path)
    if header is None:
        raise BadInput(f"{label} cannot be read as WAV: its header is damaged or cut off")
    seconds, riff = header
    # Streaming writers leave 0 or 0xFFFFFFFF when they could not know the size.
    if 8 < riff < 0xFFFFFFFF and path.stat().st_size < riff - 2:
        raise BadInput(f"{label} is truncated (shorter than its header says); export it again")
    if seconds and seconds < settings.min_sample_s:
        raise BadInput(
            f"{label} is {seconds:.1f} s long; at least {settings.min_sample_s:.0f} s needed"
        )
    if seconds > settings.max_sample_s:
        raise BadInput(
            f"{label} is {seconds:.0f} s long; at most {settings.max_sample_s:.0f} s allowed"
        )
