"""Where and how the finished video is posted, with real workers on the offline engines.

The reply is edited with the MP4 in a server, in a DM and as a user install in a server without
the bot; a forbidden channel (403) falls back to a DM; a file Discord refuses (413) becomes a
clear message; an upload limit below the render's size gets an encode that fits; a 429 is waited
out; an expired token (401) is never used again.
"""

from __future__ import annotations

import pytest

from tests.bot.harness import (
    BotProcess,
    People,
    delivered_soon,
    enroll_demo_assets,
    final_reply,
    frozen,
    hold_in_stage,
    queued_reply,
    request_of,
    rid_of,
    thaw,
    user_key,
)
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import Interaction, Message, World
from tests.support.stack import Stack

pytestmark = pytest.mark.timeout(300)
TEXT = "Hello there."
SIXTEEN_MINUTES = 16 * 60


@pytest.fixture(scope="module")
def stack(worker_stack: Stack) -> Stack:
    """Redis and real workers."""
    return worker_stack


@pytest.fixture(scope="module", autouse=True)
def assets(stack: Stack, people: People) -> None:
    """Alice's voice `me` and avatar `face`."""
    enroll_demo_assets(stack, people.alice)


def video_of(fake: FakeDiscord, message: Message) -> bytes:
    """Return the bytes of the one video attached to a message."""
    [att] = message.attachments
    return fake.call(lambda w: w.attachments[att].data)


def token_requests(fake: FakeDiscord, interaction: Interaction) -> list[int]:
    """Return the statuses of every request made with an interaction's token."""
    return fake.call(lambda w: [p.status for p in w.posts if interaction.token in p.path])


def test_reply_in_a_server_gets_the_video_with_provenance(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    interaction = fake.slash(people.alice, "say", fake.channel_of(people.home), text=TEXT)
    rid = rid_of(queued_reply(fake, interaction))
    reply = final_reply(fake, interaction)
    assert reply.content.startswith("🎬 Done")
    assert reply.components == []  # the Cancel button is gone
    [name] = fake.call(lambda w: [w.attachments[a].filename for a in reply.attachments])
    assert name == f"{rid}.mp4"
    video = video_of(fake, reply)
    assert video[4:8] == b"ftyp"
    assert b"AI-generated" in video and user_key(people.alice).encode() in video
    assert any(content.startswith("⏳") for content, _files in reply.history)
    assert delivered_soon(stack, rid) == "edit"


def test_reply_follows_the_request_through_its_stages(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    text = "Each stage of this request shows in the reply. Then the video arrives."
    interaction = fake.slash(people.alice, "say", fake.channel_of(people.home), text=text)
    rid = rid_of(queued_reply(fake, interaction))
    for kind, line in (("voice", "⏳ Voice"), ("lipsync", "⏳ Lip-sync")):
        hold_in_stage(stack, kind, rid, kind)
        try:
            fake.wait_original(interaction, lambda m, line=line: m.content.startswith(line), line)
        finally:
            thaw(stack, kind)
    assert final_reply(fake, interaction).content.startswith("🎬 Done")


def test_reply_in_a_dm_gets_the_video(bot: BotProcess, fake: FakeDiscord, people: People) -> None:
    interaction = fake.slash(people.alice, "say", fake.dm_channel(people.alice), text=TEXT)
    reply = final_reply(fake, interaction)
    assert len(reply.attachments) == 1 and reply.content.startswith("🎬 Done")


def test_user_install_in_a_server_without_the_bot_gets_the_video(
    bot: BotProcess, fake: FakeDiscord, people: People
) -> None:
    channel = fake.channel_of(people.elsewhere)
    interaction = fake.slash(people.alice, "say", channel, user_install=True, text=TEXT)
    reply = final_reply(fake, interaction)
    assert len(reply.attachments) == 1
    channel_posts = fake.call(
        lambda w: [p for p in w.posts if p.path.endswith(f"/channels/{channel.id}/messages")]
    )
    assert channel_posts == []


def test_user_install_after_token_expiry_falls_back_to_a_dm(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    channel = fake.channel_of(people.elsewhere)
    with frozen(stack, "voice"):
        interaction = fake.slash(people.alice, "say", channel, user_install=True, text=TEXT)
        rid = rid_of(queued_reply(fake, interaction))
        fake.advance(SIXTEEN_MINUTES)
    [message] = fake.wait_for(lambda w: w.messages_with_file(f"{rid}.mp4"), "a DM", timeout=90)
    assert message.channel_id == fake.dm_channel(people.alice).id
    assert delivered_soon(stack, rid) == "dm"
    posts_there = fake.call(lambda w: [p for p in w.posts if f"/channels/{channel.id}/" in p.path])
    assert posts_there == []  # the bot is not in that server: it does not even try


def test_forbidden_channel_after_token_expiry_falls_back_to_a_dm(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    channel = fake.channel_of(people.home)
    fake.call(lambda w: setattr(w.channels[channel.id], "forbidden", True))
    try:
        with frozen(stack, "voice"):
            interaction = fake.slash(people.alice, "say", channel, text=TEXT)
            rid = rid_of(queued_reply(fake, interaction))
            fake.advance(SIXTEEN_MINUTES)

        def in_dm(world: World) -> list[Message]:
            return world.messages_with_file(f"{rid}.mp4")

        [message] = fake.wait_for(in_dm, "the video in a DM", timeout=90)
    finally:
        fake.call(lambda w: setattr(w.channels[channel.id], "forbidden", False))
    assert message.channel_id == fake.dm_channel(people.alice).id
    assert delivered_soon(stack, rid) == "dm"
    statuses = token_requests(fake, interaction)
    assert statuses.count(401) == 1 and statuses[-1] == 401  # a dead token is never retried
    refused = fake.call(
        lambda w: [p.status for p in w.posts if p.path.endswith(f"/channels/{channel.id}/messages")]
    )
    assert refused == [403]


def test_file_refused_as_too_large_becomes_a_clear_message(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    with frozen(stack, "voice"):
        interaction = fake.slash(people.alice, "say", fake.channel_of(people.home), text=TEXT)
        rid = rid_of(queued_reply(fake, interaction))
        # Discord's limit turned out lower than the interaction said (e.g. a boost ended).
        fake.call(lambda w: setattr(w.interactions[interaction.id], "size_limit", 1000))
    reply = final_reply(fake, interaction)
    assert reply.attachments == []
    assert "Discord refused the" in reply.content and "`/jobs` lists it" in reply.content
    assert 413 in token_requests(fake, interaction)
    assert request_of(stack, rid).state == "done"  # the file is kept
    assert delivered_soon(stack, rid) == "edit-too-large"


def test_render_is_encoded_to_fit_a_small_upload_limit(
    bot: BotProcess, fake: FakeDiscord, people: People
) -> None:
    first = final_reply(
        fake, fake.slash(people.alice, "say", fake.dm_channel(people.alice), text=TEXT)
    )
    natural = len(video_of(fake, first))
    limit = int(natural * 0.8)
    fake.call(lambda w: setattr(w.guilds[people.home.id], "upload_limit", limit))
    try:
        interaction = fake.slash(people.alice, "say", fake.channel_of(people.home), text=TEXT)
        reply = final_reply(fake, interaction)
    finally:
        fake.call(lambda w: setattr(w.guilds[people.home.id], "upload_limit", 10 * 2**20))
    assert len(reply.attachments) == 1
    assert len(video_of(fake, reply)) <= limit


def test_rate_limit_is_waited_out(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    with frozen(stack, "voice"):
        interaction = fake.slash(people.alice, "say", fake.channel_of(people.home), text=TEXT)
        queued_reply(fake, interaction)
        fake.rate_limit("PATCH", f"/webhooks/[0-9]+/{interaction.token}/messages/", 1.0, times=1)
    reply = final_reply(fake, interaction)
    assert len(reply.attachments) == 1
    assert fake.faults.rate_limits.limited == 1
    assert fake.faults.rate_limits.early == []  # nothing came back before retry_after
