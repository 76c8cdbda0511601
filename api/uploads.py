"""Receiving uploaded files through the upload gate: capped while the body streams in.

The declared length and type are checked before a byte is read, the size again while the body
streams; the file is saved under a fixed name (the gate names it by its content later).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from starlette.requests import ClientDisconnect, Request

from jayavatar.errors import BadInput
from jayavatar.settings import Settings
from jobs.gate import TooLarge, UploadKind, check_declared, receive, rules_for

__all__ = ["TooLarge", "declared_length", "receive_upload", "upload_dir"]


def declared_length(request: Request) -> int | None:
    """Return the Content-Length the client declared, if any."""
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise BadInput("Content-Length is not a number")
    return int(raw)


async def receive_upload(
    request: Request, kind: UploadKind, settings: Settings, dest_dir: Path, label: str
) -> Path:
    """Stream the request body into `dest_dir`; stop reading as soon as it passes the cap."""
    size = declared_length(request)
    check_declared(kind, settings, label, size, request.headers.get("content-type"))
    dest = dest_dir / "upload"
    try:
        received = await receive(request.stream(), dest, rules_for(kind, settings).max_bytes, label)
    except ClientDisconnect:
        raise BadInput("the upload was interrupted") from None
    if received == 0:
        raise BadInput("the request body is empty: send the file's bytes as the body")
    return dest


def upload_dir() -> tempfile.TemporaryDirectory[str]:
    """Return a temporary directory for one upload, removed when the request ends."""
    return tempfile.TemporaryDirectory(prefix="jayavatar-upload-")
