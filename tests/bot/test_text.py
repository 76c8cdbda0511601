"""What the bot writes: progress lines, final messages, notes and request lines."""

from __future__ import annotations

import time
from typing import Any

from bot.text import (
    MAX_CONTENT,
    final_message,
    progress_message,
    request_line,
    stage_label,
    tag,
    too_large_note,
)
from jobs.records import Request

RID = "0123456789abcdef0123456789abcdef"


def render(**fields: Any) -> Request:
    """Return a render record with some fields set."""
    base: dict[str, Any] = {"id": RID, "kind": "render", "user": "discord-1", "text": "Hi there."}
    return Request(**(base | fields))


def test_stage_labels_follow_the_request() -> None:
    assert stage_label(render(), 3) == "Queued for voice #3 in line"
    assert stage_label(render(state="voice", running=True, progress=0.4), None) == "Voice 40%"
    assert stage_label(render(state="lipsync"), 1) == "Queued for lip-sync #1 in line"
    running = render(state="lipsync", running=True, progress=0.7, phase="render")
    assert stage_label(running, None) == "Lip-sync 70%"
    encoding = render(state="lipsync", running=True, progress=0.9, phase="encode")
    assert stage_label(encoding, None) == "Encoding 90%"
    enroll = Request(id=RID, kind="voice_enroll", user="discord-1", name="me", state="queued")
    assert stage_label(enroll, 2) == "Queued to check your voice (#2)"


def test_progress_quotes_the_text_and_final_messages_carry_the_tag() -> None:
    assert progress_message(render(), 1) == "⏳ Queued for voice #1 in line\n> Hi there."
    done = final_message(
        render(state="done", timings={"voice_stage_s": 1.2, "lipsync_stage_s": 2.0})
    )
    assert done.startswith("🎬 Done in 3 s\n> Hi there.")
    assert done.endswith(f"-# {tag(RID)} · AI-generated video")
    failed = final_message(render(state="failed", error="the engine failed"))
    assert failed.startswith("❌ Failed: the engine failed")
    enroll = Request(
        id=RID, kind="avatar_enroll", user="u", name="face", state="failed", error="no face"
    )
    assert final_message(enroll).startswith("❌ Your avatar `face` was not enrolled: no face")
    assert tag(RID) in final_message(enroll)


def test_long_text_is_shortened_to_fit_discord() -> None:
    message = final_message(render(state="done", text="word " * 1000), note="n" * 3000)
    assert len(message) <= MAX_CONTENT
    assert "…" in progress_message(render(text="x" * 900), 1)


def test_too_large_note_says_why() -> None:
    assert too_large_note(12 * 2**20, 10 * 2**20).startswith(
        "The video is 12.0 MiB, over the 10.0 MiB upload limit here"
    )
    assert too_large_note(50 * 1024, 10 * 2**20).startswith(
        "Discord refused the 50 KiB video as too large"
    )


def test_request_line_shows_state_age_and_text() -> None:
    old = render(state="failed", error="boom", created_at=time.time() - 180)
    assert request_line(old) == f"`{RID[:8]}` failed: boom · 3 min ago · Hi there."
