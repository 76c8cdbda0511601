"""`/voice add` and `/avatar add` from uploaded attachments, then `/say` with what was enrolled.

Attachments are checked and downloaded while the command runs: wrong type, declared size over
the cap (refused without downloading), bytes that are not media, a WAV too short, and an
expired URL are refused at once with one ephemeral line and nothing queued; a photo without a
face goes to the worker, which refuses it, and the reply says why.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.bot.harness import (
    EPHEMERAL,
    BotProcess,
    People,
    final_reply,
    notice,
    queued_reply,
    run_async,
    user_key,
    voice_sample,
)
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import User
from tests.support.assets import face_clip, garbage, png, wav
from tests.support.stack import Stack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(worker_stack: Stack) -> Stack:
    """Redis and real workers."""
    return worker_stack


def request_count(stack: Stack, user: User) -> int:
    """Return how many requests a user ever made."""
    return len(run_async(stack, lambda c: c.list_requests(user_key(user))))


def test_enroll_voice_and_avatar_from_uploads_then_say(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    channel = fake.channel_of(people.home)
    sample = fake.upload("me.wav", "audio/wav", voice_sample(stack.folder).read_bytes())
    enroll = fake.slash(people.bob, "voice add", channel, sample=sample, name="Mine")
    assert int(fake.wait_acked(enroll).ack_data.get("flags") or 0) & EPHEMERAL
    assert "your voice" in queued_reply(fake, enroll).content
    assert final_reply(fake, enroll).content.startswith("✅ Your voice `mine` is ready.")

    clip = fake.upload("face.mp4", "video/mp4", face_clip().read_bytes())
    enroll = fake.slash(people.bob, "avatar add", channel, media=clip, name="face")
    assert final_reply(fake, enroll).content.startswith("✅ Your avatar `face` is ready.")

    listing = notice(fake, fake.slash(people.bob, "voice list", channel)).content
    assert "`mine`" in listing
    chosen = fake.slash(people.bob, "voice default", channel, name="mine")
    assert notice(fake, chosen).content == "Your default voice is now `mine`."

    say = fake.slash(people.bob, "say", channel, text="Made from my uploads.")
    reply = final_reply(fake, say)
    assert reply.content.startswith("🎬 Done") and len(reply.attachments) == 1


def test_bad_uploads_are_refused_while_handling_the_command(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    channel = fake.channel_of(people.home)
    folder = stack.folder
    before = request_count(stack, people.alice)

    def refusal(command: str, **values: Any) -> str:
        return notice(fake, fake.slash(people.alice, command, channel, **values)).content

    text = fake.upload("notes.txt", "text/plain", b"not audio")
    answer = refusal("voice add", sample=text, name="x")
    assert answer == "⚠️ 'notes.txt' is text/plain, not a voice sample"

    huge = fake.upload("long.wav", "audio/wav", bytes(26 * 2**20))
    answer = refusal("voice add", sample=huge, name="x")
    assert answer == "⚠️ 'long.wav' is 26 MiB; the limit is 25 MiB"
    assert huge.id not in fake.call(lambda w: list(w.fetches))  # refused before downloading

    junk = fake.upload("sample.wav", "audio/wav", garbage(folder / "junk.wav").read_bytes())
    answer = refusal("voice add", sample=junk, name="x")
    assert answer == "⚠️ 'sample.wav' is not a voice sample (unrecognised content)"

    short = fake.upload("short.wav", "audio/wav", wav(folder / "short.wav", 1.0).read_bytes())
    answer = refusal("voice add", sample=short, name="x")
    assert answer == "⚠️ 'short.wav' is 1.0 s long; at least 2 s needed"

    audio = fake.upload("voice.ogg", "audio/ogg", b"OggS" + bytes(200))
    answer = refusal("avatar add", media=audio, name="x")
    assert answer == "⚠️ 'voice.ogg' is audio/ogg, not an avatar video or photo"
    audio = fake.upload("voice.ogv", "video/ogg", b"OggS" + bytes(200))  # the type may lie
    answer = refusal("avatar add", media=audio, name="x")
    assert answer == "⚠️ 'voice.ogv' is not an avatar video or photo (ogg content)"

    stale = fake.upload("late.wav", "audio/wav", voice_sample(folder).read_bytes())
    fake.advance(25 * 3600)  # signed attachment URLs expire
    answer = refusal("voice add", sample=stale, name="x")
    assert answer.startswith("⚠️ could not download 'late.wav' (HTTP 404)")

    assert request_count(stack, people.alice) == before

    flat = fake.upload("flat.png", "image/png", png(folder / "flat.png").read_bytes())
    enroll = fake.slash(people.alice, "avatar add", channel, media=flat, name="flat")
    answer = final_reply(fake, enroll).content
    assert answer.startswith("❌ Your avatar `flat` was not enrolled:")
