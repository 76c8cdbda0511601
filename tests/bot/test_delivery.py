"""Exactly-once delivery across bot crashes, with real workers on the offline engines.

The bot is SIGKILLed while a request is in the voice stage, and again in the lip-sync stage,
then restarted 16 simulated minutes later: the token is dead, and the video arrives once, as a
channel message. It is also killed between Discord taking a post and the bot recording it (the
fake holds the answer): the restarted bot finds the post and does not post again. A Cancel
button pressed after a restart cancels the running request; its Retry button renders again.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.bot.harness import (
    BotProcess,
    People,
    delivered,
    enroll_demo_assets,
    final_reply,
    frozen,
    hold_in_stage,
    notice,
    queued_reply,
    record,
    rid_of,
    thaw,
    wait_ready,
)
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import Interaction, Message, World
from tests.support.stack import Stack

pytestmark = pytest.mark.timeout(300)
SIXTEEN_MINUTES = 16 * 60
LONG_TEXT = "This sentence keeps the workers busy for a little while. And so does this one."


@pytest.fixture(scope="module")
def stack(worker_stack: Stack) -> Stack:
    """Redis and real workers."""
    return worker_stack


@pytest.fixture(scope="module", autouse=True)
def assets(stack: Stack, people: People) -> None:
    """Alice's voice `me` and avatar `face`."""
    enroll_demo_assets(stack, people.alice)


def restart(bot: BotProcess, fake: FakeDiscord) -> None:
    """Start the bot again and wait until it holds a fresh gateway session."""
    identifies = fake.gateway.stats.identifies
    bot.start()
    wait_ready(fake, bot, identifies=identifies + 1)


def deliveries(fake: FakeDiscord, rid: str, timeout: float = 90) -> list[Message]:
    """Wait for the video of `rid` to be posted; return every message that carries it."""

    def posted(world: World) -> list[Message]:
        return world.messages_with_file(f"{rid}.mp4")

    fake.wait_for(posted, f"the video of {rid}", timeout)
    return fake.call(posted)


def wait_recorded(stack: Stack, rid: str, timeout: float = 60) -> str:
    """Wait until the bot recorded the delivery of `rid`; return how."""
    deadline = time.monotonic() + timeout
    while (how := delivered(stack, rid)) is None:
        assert time.monotonic() < deadline, f"the delivery of {rid} was never recorded"
        time.sleep(0.05)
    return how


def token_statuses(fake: FakeDiscord, interaction: Interaction) -> list[int]:
    """Return the statuses of all requests made with an interaction's token, in order."""
    return fake.call(lambda w: [p.status for p in w.posts if interaction.token in p.path])


@pytest.mark.parametrize(("kind", "state"), [("voice", "voice"), ("lipsync", "lipsync")])
def test_killed_mid_stage_and_back_16_minutes_later_delivers_once_in_the_channel(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack, kind: str, state: str
) -> None:
    channel = fake.channel_of(people.home)
    interaction = fake.slash(people.alice, "say", channel, text=LONG_TEXT)
    rid = rid_of(queued_reply(fake, interaction))
    hold_in_stage(stack, kind, rid, state)
    try:
        bot.kill(signal.SIGKILL)
        fake.advance(SIXTEEN_MINUTES)
        restart(bot, fake)
    finally:
        thaw(stack, kind)
    [message] = deliveries(fake, rid)
    video = f"{rid}.mp4"
    assert message.channel_id == channel.id and message.webhook_id is None
    assert message.content.startswith(f"<@{people.alice.id}> 🎬 Done")
    assert wait_recorded(stack, rid) == "channel"
    # A slow answer may make the bot send again with the same nonce; Discord then returns the
    # same message, so there can be more than one accepted post but only one message (above).
    posts = fake.call(lambda w: [p for p in w.posts if p.status == 200 and video in p.files_named])
    assert posts and all(p.path.endswith(f"/channels/{channel.id}/messages") for p in posts)
    assert len({p.json.get("nonce") for p in posts}) == 1
    post = posts[0]
    # Only the requester is pinged; text echoed from the request pings no one.
    assert post.json["allowed_mentions"] == {"parse": [], "users": [people.alice.id]}
    original = fake.original(interaction)
    assert original is not None and original.attachments == []
    statuses = token_statuses(fake, interaction)
    assert statuses.count(401) == 1 and statuses[-1] == 401  # the dead token is never retried


def test_killed_after_channel_post_before_recording_it_posts_once(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    channel = fake.channel_of(people.home)
    with frozen(stack, "voice"):
        interaction = fake.slash(people.alice, "say", channel, text="Once only.")
        rid = rid_of(queued_reply(fake, interaction))
        fake.advance(SIXTEEN_MINUTES)
        stall = fake.stall("POST", f"/channels/{channel.id}/messages$", files_only=True)
    assert stall.reached.wait(90), "the bot never posted the video"
    bot.kill(signal.SIGKILL)  # Discord has the message; the bot never heard back
    stall.release()
    assert delivered(stack, rid) is None
    restart(bot, fake)
    assert wait_recorded(stack, rid) == "channel"
    assert len(deliveries(fake, rid)) == 1


def test_killed_after_reply_edit_before_recording_it_posts_once(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    with frozen(stack, "voice"):
        interaction = fake.slash(people.alice, "say", fake.channel_of(people.home), text="Once.")
        rid = rid_of(queued_reply(fake, interaction))
        stall = fake.stall("PATCH", f"/webhooks/[0-9]+/{interaction.token}/", files_only=True)
    assert stall.reached.wait(90), "the bot never delivered the video"
    bot.kill(signal.SIGKILL)
    stall.release()
    restart(bot, fake)
    assert wait_recorded(stack, rid) == "edit"
    [message] = deliveries(fake, rid)
    assert message.interaction_id == interaction.id
    patches = fake.call(
        lambda w: [p for p in w.posts if p.method == "PATCH" and f"{rid}.mp4" in p.files_named]
    )
    assert len(patches) == 1  # found on replay, not sent again


def test_cancel_button_after_restart_cancels_the_running_request_and_retry_renders(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    channel = fake.channel_of(people.home)
    interaction = fake.slash(people.alice, "say", channel, text=LONG_TEXT)
    rid = rid_of(queued_reply(fake, interaction))
    hold_in_stage(stack, "voice", rid, "voice")
    try:
        bot.kill(signal.SIGKILL)
        restart(bot, fake)
        reply = fake.original(interaction)
        assert reply is not None
        press = fake.click(people.alice, reply, f"job:cancel:{rid}")
        assert notice(fake, press).content.startswith(f"Cancelled: `{rid[:8]}`")
        assert record(stack, rid)["state"] == "cancelled"
    finally:
        thaw(stack, "voice")
    cancelled = final_reply(fake, interaction)
    assert cancelled.content.startswith("Cancelled.")
    assert wait_recorded(stack, rid) == "edit"

    retry = fake.click(people.alice, cancelled, f"job:retry:{rid}")
    assert fake.wait_acked(retry).ack_type == 5
    again = final_reply(fake, retry)
    assert again.content.startswith("🎬 Done") and len(again.attachments) == 1
    assert again.id != cancelled.id
