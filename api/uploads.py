"""Receiving uploaded files: the size cap is enforced while the body streams in, not after."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from starlette.requests import ClientDisconnect, Request

from jayavatar.errors import BadInput

# Extensions the workers can sniff; anything else is stored as ".bin" and rejected there.
_BY_TYPE = {
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "audio/mp4": ".m4a",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class TooLarge(BadInput):
    """The upload is bigger than the cap; answered with 413."""


def upload_name(filename: str | None, content_type: str | None, default_stem: str) -> str:
    """Pick a safe file name for storage, keeping the extension the worker sniffs."""
    if filename:
        name = _SAFE_NAME.sub("_", Path(filename).name).strip("._")
        if name:
            return name[-100:]
    media = (content_type or "").split(";")[0].strip().lower()
    return default_stem + _BY_TYPE.get(media, ".bin")


def _declared_length(request: Request) -> int | None:
    """Return the Content-Length the client declared, if any and valid."""
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        return max(int(raw), 0)
    except ValueError:
        raise BadInput("Content-Length is not a number") from None


async def receive_upload(request: Request, cap: int, dest_dir: Path, name: str) -> Path:
    """Stream the request body into `dest_dir/name`; stop reading as soon as it passes `cap`."""
    declared = _declared_length(request)
    if declared is not None and declared > cap:
        raise TooLarge(f"file is {declared} bytes; the limit is {cap} bytes")
    dest = dest_dir / name
    received = 0
    try:
        with dest.open("wb") as out:
            async for chunk in request.stream():
                received += len(chunk)
                if received > cap:
                    raise TooLarge(f"file is over the limit of {cap} bytes")
                out.write(chunk)
    except ClientDisconnect:
        raise BadInput("the upload was interrupted") from None
    if received == 0:
        raise BadInput("the request body is empty: send the file's bytes as the body")
    return dest


def upload_dir() -> tempfile.TemporaryDirectory[str]:
    """Return a temporary directory for one upload, removed when the request ends."""
    return tempfile.TemporaryDirectory(prefix="jayavatar-upload-")
