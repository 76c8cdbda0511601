"""What the bot writes: progress lines, final messages, request lists. Pure functions only."""

from __future__ import annotations

import time

from jobs.records import Request

MAX_CONTENT = 2000
ECHO_CHARS = 300
KIND_LABEL = {"voice_enroll": "voice", "avatar_enroll": "avatar"}


def mib(size: int) -> str:
    """Return a byte count in MiB with one decimal (KiB below one MiB)."""
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 1024:.0f} KiB"


def echo(text: str) -> str:
    """Quote what the user typed, shortened; mentions in it never ping (allowed_mentions)."""
    short = text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "…"
    return "> " + short.replace("\n", " ")


def ago(ts: float, now: float | None = None) -> str:
    """Return a short age such as `42 s`, `3 min` or `2 h`."""
    seconds = max(0.0, (now if now is not None else time.time()) - ts)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def stage_label(req: Request, position: int | None) -> str:
    """Return the one-line state of a request in progress, e.g. `Lip-sync 70%`."""
    percent = f" {req.progress * 100:.0f}%" if req.running and req.progress > 0 else ""
    if req.kind != "render":
        kind = KIND_LABEL[req.kind]
        if req.state == "queued":
            return f"Queued to check your {kind}" + (f" (#{position})" if position else "")
        return f"Checking your {kind}{percent}"
    if req.state == "queued" or (req.state == "lipsync" and not req.running):
        where = f" #{position} in line" if position else ""
        step = "lip-sync" if req.state == "lipsync" else "voice"
        return f"Queued for {step}{where}"
    if req.state == "voice":
        return f"Voice{percent}"
    if req.phase.startswith("encod") or req.phase == "fit":
        return f"Encoding{percent}"
    return f"Lip-sync{percent}"


def progress_message(req: Request, position: int | None) -> str:
    """Return the content of a request's reply while it runs."""
    head = f"⏳ {stage_label(req, position)}"
    if req.kind == "render":
        return clip(f"{head}\n{echo(req.text)}")
    return clip(f"{head} — `{req.name}`")


def final_message(req: Request, note: str = "") -> str:
    """Return the content of a request's final message (the file, if any, goes alongside)."""
    if req.kind != "render":
        kind = KIND_LABEL[req.kind]
        if req.state == "done":
            text = f"✅ Your {kind} `{req.name}` is ready."
        elif req.state == "cancelled":
            text = f"Enrollment of {kind} `{req.name}` was cancelled."
        else:
            text = f"❌ Your {kind} `{req.name}` was not enrolled: {req.error or 'unknown error'}"
        return clip("\n".join([text, *([note] if note else []), f"-# {tag(req.id)}"]))
    if req.state == "done":
        seconds = sum(v for k, v in req.timings.items() if k.endswith("_stage_s"))
        head = f"🎬 Done in {seconds:.0f} s" if seconds else "🎬 Done"
    elif req.state == "cancelled":
        head = "Cancelled."
    else:
        head = f"❌ Failed: {req.error or 'unknown error'}"
    parts = [head, echo(req.text)]
    if note:
        parts.append(note)
    parts.append(f"-# {tag(req.id)} · AI-generated video")
    return clip("\n".join(parts))


def tag(rid: str) -> str:
    """Return the marker every final message carries; a replay looks for it before reposting."""
    return f"request `{rid[:12]}`"


def too_large_note(size: int, limit: int) -> str:
    """Explain why a finished video is not attached (over the limit, or refused by Discord)."""
    if size > limit:
        why = f"The video is {mib(size)}, over the {mib(limit)} upload limit here"
    else:
        why = f"Discord refused the {mib(size)} video as too large for this place"
    return f"{why}, so it is not attached; it is kept, and `/jobs` lists it."


def request_line(req: Request, position: int | None = None) -> str:
    """Return one line of `/jobs` or `/admin queue`."""
    if req.final:
        state = req.state + (f": {req.error}" if req.error and req.state == "failed" else "")
    else:
        state = stage_label(req, position)
    what = req.text if req.kind == "render" else f"{KIND_LABEL[req.kind]} {req.name}"
    what = what if len(what) <= 60 else what[:59] + "…"
    return f"`{req.id[:8]}` {state} · {ago(req.created_at)} ago · {what}"


def clip(text: str) -> str:
    """Keep a message within Discord's 2000 characters."""
    return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 1] + "…"
