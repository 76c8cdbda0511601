"""Storage keys: the only way names from users become paths.

A key is a relative, slash-separated path whose every segment matches `SEGMENT`; nothing
absolute, no `..`, no hidden or empty segments, so no key can escape the storage root.
"""

from __future__ import annotations

import re

from jayavatar.errors import BadInput

# Always used with `fullmatch`: `match` with `$` would accept a trailing newline.
SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
USER_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ASSET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
UPLOAD_EXT = re.compile(r"[a-z0-9]{1,5}")
MAX_KEY_CHARS = 512


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative storage key, else raise `BadInput`."""
    if not key or len(key) > MAX_KEY_CHARS or "\\" in key or "\x00" in key:
        raise BadInput(f"invalid storage key {key[:80]!r}")
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", "..") or not SEGMENT.fullmatch(part) or part.endswith("."):
            raise BadInput(f"invalid storage key {key[:80]!r}")
    return key


def validate_user(user: str) -> str:
    """Return a valid user id or raise `BadInput`."""
    if not isinstance(user, str) or not USER_ID.fullmatch(user):
        raise BadInput(f"invalid user id {user[:80]!r}")
    return user


def validate_name(name: str) -> str:
    """Return a case-folded voice/avatar name or raise `BadInput` saying what is allowed."""
    folded = name.strip().casefold()
    if not ASSET_NAME.fullmatch(folded):
        raise BadInput(
            f"invalid name {name[:40]!r}: use 1-32 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return folded


def validate_request_id(rid: str) -> str:
    """Return a well-formed request id or raise `BadInput`."""
    if not isinstance(rid, str) or not REQUEST_ID.fullmatch(rid):
        raise BadInput(f"invalid request id {rid[:40]!r}")
    return rid


def voice_prefix(owner: str, name: str) -> str:
    """Return the folder key of a voice."""
    return f"voices/{validate_user(owner)}/{validate_name(name)}"


def avatar_prefix(owner: str, name: str) -> str:
    """Return the folder key of an avatar."""
    return f"avatars/{validate_user(owner)}/{validate_name(name)}"


def render_key(user: str, rid: str) -> str:
    """Return the key of a finished render."""
    return f"renders/{validate_user(user)}/{validate_request_id(rid)}.mp4"


def quality_plot_key(user: str, rid: str) -> str:
    """Return the key of a finished render's quality picture (beside its report)."""
    return f"renders/{validate_user(user)}/{validate_request_id(rid)}.quality.png"


def speech_key(rid: str) -> str:
    """Return the key of a request's synthesized speech (the voice stage's output)."""
    return f"work/{validate_request_id(rid)}/speech.wav"


def upload_key(rid: str, ext: str) -> str:
    """Return the key of an uploaded enrollment file, named by its sniffed type's extension."""
    if not UPLOAD_EXT.fullmatch(ext):
        raise BadInput(f"invalid upload extension {ext[:20]!r}")
    return f"uploads/{validate_request_id(rid)}/source.{ext}"
