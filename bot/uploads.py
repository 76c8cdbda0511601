"""Attachments for enrollment: checked and downloaded while the command runs (their URLs expire).

Checked here: the file type (extension, declared content type, then the first bytes), the size
(before downloading, and again while streaming in case the declared size lies) and, for WAV, the
duration. The worker then decodes the file for real: duration of other formats, speech present,
a face present for avatars.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import discord

from bot.text import mib
from jayavatar.errors import BadInput, TransientError
from jayavatar.settings import Settings

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Accepts:
    """What one kind of upload may be."""

    what: str  # with its article: "a voice sample"
    extensions: frozenset[str]
    mime_prefixes: tuple[str, ...]
    max_bytes: int
    # Containers the first bytes may announce (see `sniff`).
    containers: frozenset[str]


def voice_rules(settings: Settings) -> Accepts:
    """Voice samples: common audio formats, and video files whose audio track is used."""
    exts = frozenset(["wav", "mp3", "ogg", "oga", "opus", "flac", "m4a", "aac", "webm", "mp4"])
    kinds = frozenset(["wave", "mp3", "mpeg-audio", "ogg", "flac", "mp4", "matroska"])
    return Accepts("a voice sample", exts, ("audio/", "video/"), settings.max_sample_bytes, kinds)


def avatar_rules(settings: Settings) -> Accepts:
    """Avatars: a video or a photo of one face."""
    exts = frozenset(["mp4", "mov", "m4v", "webm", "mkv", "png", "jpg", "jpeg", "webp"])
    kinds = frozenset(["mp4", "matroska", "png", "jpeg", "webp"])
    limit = settings.max_avatar_bytes
    return Accepts("an avatar video or photo", exts, ("video/", "image/"), limit, kinds)


def check_declared(att: discord.Attachment, rules: Accepts) -> str:
    """Refuse by name, declared type and declared size, before any download; return the ext."""
    ext = att.filename.rsplit(".", 1)[-1].lower() if "." in att.filename else ""
    if ext not in rules.extensions:
        allowed = ", ".join(sorted(rules.extensions))
        raise BadInput(f"{att.filename!r} is not {rules.what}; send one of: {allowed}")
    declared = (att.content_type or "").lower()
    if declared and not declared.startswith(rules.mime_prefixes):
        raise BadInput(f"{att.filename!r} is {declared}, not {rules.what}")
    if att.size > rules.max_bytes:
        raise BadInput(
            f"{att.filename!r} is {mib(att.size)}; "
            f"the limit for {rules.what} is {mib(rules.max_bytes)}"
        )
    if att.size == 0:
        raise BadInput(f"{att.filename!r} is empty")
    return ext


async def download(
    session: aiohttp.ClientSession, att: discord.Attachment, dest: Path, cap: int
) -> None:
    """Stream an attachment to `dest`, stopping as soon as it passes `cap` bytes."""
    received = 0
    try:
        async with session.get(att.url) as response:
            if response.status != 200:
                raise BadInput(
                    f"could not download {att.filename!r} (HTTP {response.status}); attach it again"
                )
            with dest.open("wb") as out:
                async for chunk in response.content.iter_chunked(CHUNK):
                    received += len(chunk)
                    if received > cap:
                        raise BadInput(
                            f"{att.filename!r} is larger than it claimed; limit exceeded"
                        )
                    out.write(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(f"could not download {att.filename!r} from Discord") from exc


def sniff(head: bytes) -> str | None:
    """Return the container a file's first bytes announce, or None if unknown."""
    if head[:4] == b"RIFF":
        return {b"WAVE": "wave", b"WEBP": "webp"}.get(head[8:12])
    signatures = [
        (b"ID3", 0, "mp3"),
        (b"OggS", 0, "ogg"),
        (b"fLaC", 0, "flac"),
        (b"ftyp", 4, "mp4"),
        (b"\x1aE\xdf\xa3", 0, "matroska"),
        (b"\x89PNG", 0, "png"),
        (b"\xff\xd8\xff", 0, "jpeg"),
    ]
    for magic, offset, name in signatures:
        if head[offset : offset + len(magic)] == magic:
            return name
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2") or head[:2] == b"\xff\xf1":
        return "mpeg-audio"
    return None


def check_content(path: Path, rules: Accepts, settings: Settings) -> None:
    """Refuse files whose bytes are not media, and WAV samples of the wrong length."""
    with path.open("rb") as fh:
        head = fh.read(64)
    kind = sniff(head)
    if kind is None or kind not in rules.containers:
        found = "unrecognised content" if kind is None else f"{kind} content"
        raise BadInput(f"the file is not {rules.what} ({found})")
    if kind == "wave":
        check_wav_duration(path, settings)


def check_wav_duration(path: Path, settings: Settings) -> None:
    """Refuse WAV samples shorter or longer than the configured bounds."""
    try:
        with wave.open(str(path), "rb") as wav:
            seconds = wav.getnframes() / float(wav.getframerate() or 1)
    except (wave.Error, EOFError) as exc:
        reason = str(exc) or "it is truncated"
        raise BadInput(f"the WAV file cannot be read: {reason}") from exc
    if seconds < settings.min_sample_s:
        raise BadInput(
            f"the sample is {seconds:.1f} s long; at least {settings.min_sample_s:.0f} s needed"
        )
    if seconds > settings.max_sample_s:
        raise BadInput(
            f"the sample is {seconds:.0f} s long; at most {settings.max_sample_s:.0f} s allowed"
        )


async def fetch_upload(
    session: aiohttp.ClientSession,
    att: discord.Attachment,
    rules: Accepts,
    settings: Settings,
    folder: Path,
) -> Path:
    """Check an attachment, download it into `folder` and check its bytes; return the file."""
    ext = check_declared(att, rules)
    dest = folder / f"upload.{ext}"
    await download(session, att, dest, rules.max_bytes)
    check_content(dest, rules, settings)
    return dest
