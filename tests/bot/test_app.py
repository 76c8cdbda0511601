"""The real bot process against the fake Discord, with Redis but no workers (requests stay queued).

Covers: command sync for every context, /say acknowledging at once and showing the queue, the
refusals (non-admin /admin, someone else's voice without a share, over quota, paused) each as an
ephemeral line with nothing enqueued, the admin commands, autocomplete and consent, gateway
RECONNECT and INVALID_SESSION, and a burst of /say where every interaction is acknowledged.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import time
from typing import Any

import pytest

from tests.bot.harness import (
    BOT_COMMAND,
    EPHEMERAL,
    BotProcess,
    People,
    notice,
    queued_reply,
    rid_of,
    run_async,
    user_key,
)
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import User, World
from tests.support.stack import ROOT, Stack, env_python

pytestmark = pytest.mark.timeout(240)
BURST = 30


@pytest.fixture(scope="module")
def stack(redis_stack: Stack) -> Stack:
    """Redis only: nothing renders in this module."""
    return redis_stack


def register(stack: Stack, owner: User, kind: str, name: str) -> None:
    """Record an asset directly (no worker needed: refusals happen before any work)."""
    run_async(stack, lambda c: c.accounts.register(kind, user_key(owner), name, {}))


def queued_ids(stack: Stack, user: User) -> list[str]:
    """Return the ids of a user's requests."""

    async def work(client: Any) -> list[str]:
        return [r.id for r in await client.list_requests(user_key(user))]

    return list(run_async(stack, work))


def queue_length(stack: Stack) -> int:
    """Return how many jobs wait on the voice queue."""
    settings: Any = stack.settings()
    return int(run_async(stack, lambda c: c.redis.zcard(settings.voice_queue)))


def test_commands_are_synced_for_servers_dms_and_user_installs(
    bot: BotProcess, fake: FakeDiscord
) -> None:
    commands = {c["name"]: c for c in fake.world.global_commands}
    assert set(commands) == {"say", "voice", "avatar", "jobs", "share", "unshare", "admin"}
    for command in commands.values():
        assert command["integration_types"] == [0, 1], command["name"]
        assert command["contexts"] == [0, 1, 2], command["name"]
    assert str(commands["admin"]["default_member_permissions"]) == "8"
    voice_subs = {o["name"] for o in commands["voice"]["options"]}
    assert voice_subs == {"add", "list", "remove", "default"}


def test_say_acknowledges_publicly_and_shows_queue_position(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    register(stack, people.alice, "voice", "me")
    register(stack, people.alice, "avatar", "face")
    channel = fake.channel_of(people.home)
    interaction = fake.slash(people.alice, "say", channel, text="hi @everyone", voice="me")
    acked = fake.wait_acked(interaction)
    assert acked.ack_type == 5
    assert not int(acked.ack_data.get("flags") or 0) & EPHEMERAL
    reply = queued_reply(fake, interaction)
    assert reply.content.startswith("⏳ Queued for voice #1 in line")
    assert "> hi @everyone" in reply.content
    rid = rid_of(reply)
    assert queued_ids(stack, people.alice) == [rid]
    edits = [p for p in fake.world.posts if p.method == "PATCH" and interaction.token in p.path]
    assert edits and all(p.json["allowed_mentions"] == {"parse": []} for p in edits)


def test_refusals_are_ephemeral_one_liners_and_enqueue_nothing(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    channel = fake.channel_of(people.home)
    before = queue_length(stack)

    denied = fake.slash(people.bob, "admin queue", channel)
    assert notice(fake, denied).content == "⚠️ only JayAvatar admins can use /admin"

    alice = user_key(people.alice)
    borrowed = fake.slash(
        people.bob, "say", channel, text="hello", voice=f"{alice}/me", avatar=f"{alice}/face"
    )
    text = notice(fake, borrowed).content
    assert text == f"⚠️ unknown voice '{alice}/me', or not shared with you"
    assert fake.original(borrowed) is None  # the public "thinking" message was taken back

    register(stack, people.bob, "voice", "mine")
    register(stack, people.bob, "avatar", "mine")
    run_async(stack, lambda c: c.accounts.set_quota(user_key(people.bob), 0, 3))
    over = fake.slash(people.bob, "say", channel, text="hello", voice="mine", avatar="mine")
    assert notice(fake, over).content == "⚠️ daily limit reached (0 renders); try again tomorrow"

    # Administrator of a server that only user-installed the app is not an admin here.
    elsewhere = fake.channel_of(people.elsewhere)
    sneaky = fake.slash(people.alice, "admin queue", elsewhere, user_install=True)
    assert notice(fake, sneaky).content == "⚠️ only JayAvatar admins can use /admin"

    assert queued_ids(stack, people.bob) == []
    assert queue_length(stack) == before


def test_autocomplete_offers_only_what_the_user_may_use_until_shared(
    bot: BotProcess, fake: FakeDiscord, people: People
) -> None:
    channel = fake.channel_of(people.home)

    def suggestions(user: User) -> list[str]:
        interaction = fake.autocomplete(user, "say", channel, "voice", text="x", voice="")
        acked = fake.wait_acked(interaction)
        assert acked.ack_type == 8
        return [c["value"] for c in acked.ack_data["choices"]]

    alice = user_key(people.alice)
    assert f"{alice}/me" not in suggestions(people.bob)
    share = fake.slash(people.alice, "share", channel, kind="voice", name="me", user=people.bob)
    assert "may now use your voice `me`" in notice(fake, share).content
    assert f"{alice}/me" in suggestions(people.bob)
    assert "me" in suggestions(people.alice)


def test_admin_commands(bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack) -> None:
    channel = fake.channel_of(people.home)
    admin = people.admin

    def run(command: str, **values: Any) -> str:
        return notice(fake, fake.slash(admin, command, channel, **values)).content

    assert run("admin pause").startswith("Paused")
    paused = fake.slash(people.alice, "say", channel, text="hi", voice="me", avatar="face")
    assert notice(fake, paused).content == "⚠️ rendering is paused by an admin; try again later"
    assert run("admin resume").startswith("Resumed")

    [rid] = queued_ids(stack, people.alice)
    assert rid[:8] in run("admin queue")
    # A worker's presence key, as a lip-sync worker on another host writes it.
    from jobs.hosts import Beacon

    settings: Any = stack.settings()
    named = settings.model_copy(update={"worker_name": "gpu-box", "device": "cpu"})
    beacon = Beacon(named, "lipsync")
    run_async(stack, lambda c: beacon.busy(c.redis, "lipsync:abc:1"))
    stats = run("admin stats")
    assert "renders" in stats and "workers (1):" in stats
    assert "gpu-box · lipsync/landmark · GPU none · busy (lipsync:abc:1)" in stats
    assert run("admin quota", user=people.bob, daily=5, concurrent=2).endswith("2 at a time.")
    limits = run_async(stack, lambda c: c.accounts.quota(user_key(people.bob)))
    assert tuple(limits) == (5, 2)
    assert run("admin deny", user=people.bob).endswith("may no longer render.")
    assert not run_async(stack, lambda c: c.accounts.is_allowed(user_key(people.bob)))
    assert run("admin allow", user=people.bob).endswith("may render.")

    assert run("admin cancel", request_id=rid[:10]).startswith(f"Cancelled: `{rid[:8]}`")
    state = run_async(stack, lambda c: c.get(rid))
    assert state.state == "cancelled"
    again = fake.slash(admin, "admin retry", channel, request_id=rid)
    new_rid = rid_of(queued_reply(fake, again))
    retried = run_async(stack, lambda c: c.get(new_rid))
    assert (retried.retry_of, retried.user, retried.text) == (rid, state.user, state.text)
    run_async(stack, lambda c: c.cancel(new_rid, "local"))
    assert "voices" in run("admin purge", user=people.bob)
    assert run_async(stack, lambda c: c.accounts.owned("voice", user_key(people.bob))) == []


def test_assets_can_be_listed_and_removed(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    channel = fake.channel_of(people.home)
    register(stack, people.alice, "avatar", "old")
    listing = notice(fake, fake.slash(people.alice, "avatar list", channel)).content
    assert "• `face`" in listing and "• `old`" in listing
    removed = fake.slash(people.alice, "avatar remove", channel, name="old")
    assert notice(fake, removed).content.startswith("Removed avatar `old`")
    listing = notice(fake, fake.slash(people.alice, "avatar list", channel)).content
    assert "`old`" not in listing
    missing = fake.slash(people.alice, "avatar remove", channel, name="old")
    assert notice(fake, missing).content == "⚠️ you have no avatar named 'old'"


def test_server_administrator_may_use_admin_commands(
    bot: BotProcess, fake: FakeDiscord, people: People
) -> None:
    channel = fake.channel_of(people.home)
    fake.call(lambda w: w.guilds[people.home.id].admins.add(people.bob.id))
    try:
        answer = notice(fake, fake.slash(people.bob, "admin stats", channel)).content
    finally:
        fake.call(lambda w: w.guilds[people.home.id].admins.discard(people.bob.id))
    assert answer.startswith("day · renders")


def test_gateway_reconnect_resumes_and_invalid_session_reidentifies(
    bot: BotProcess, fake: FakeDiscord, people: People
) -> None:
    channel = fake.channel_of(people.home)
    identifies = fake.gateway.stats.identifies

    fake.send_reconnect()
    fake.wait_for(lambda w: fake.gateway.stats.resumes >= 1, "a RESUME")
    assert fake.gateway.stats.resume_urls[-1].endswith("/gateway-resume")
    fake.wait_connected()
    assert notice(fake, fake.slash(people.alice, "jobs", channel)).content.startswith("`")

    fake.invalidate_session()
    fake.wait_for(
        lambda w: fake.gateway.stats.identifies == identifies + 1 and fake.gateway.connected(),
        "a fresh IDENTIFY after the invalid session",
    )
    assert notice(fake, fake.slash(people.alice, "jobs", channel)).content.startswith("`")


def test_burst_of_say_is_acknowledged_every_time(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    run_async(stack, lambda c: c.accounts.set_quota(user_key(people.alice), 10_000, BURST))
    before = len(queued_ids(stack, people.alice))
    channel = fake.channel_of(people.home)
    sent = [
        fake.slash(people.alice, "say", channel, text=f"burst {i}", voice="me", avatar="face")
        for i in range(BURST)
    ]
    for interaction in sent:
        queued_reply(fake, interaction, timeout=120)

    def latencies(world: World) -> list[float]:
        return [world.interactions[i.id].ack_latency_s or 0.0 for i in sent]

    measured = sorted(fake.call(latencies))
    assert all(fake.call(lambda w: [w.interactions[i.id].ack_type == 5 for i in sent]))
    assert fake.world.late_acks == []
    print(
        f"burst of {BURST}: ack p50 {statistics.median(measured) * 1000:.0f} ms, "
        f"max {measured[-1] * 1000:.0f} ms"
    )
    assert len(queued_ids(stack, people.alice)) == before + BURST


def test_jobs_lists_requests_with_buttons(
    bot: BotProcess, fake: FakeDiscord, people: People
) -> None:
    listing = notice(fake, fake.slash(people.alice, "jobs", fake.channel_of(people.home)))
    assert listing.content.count("\n") == 9  # the latest ten
    ids = [c["custom_id"] for row in listing.components for c in row["components"]]
    assert sum(i.startswith("job:cancel:") for i in ids) == 5


def test_health_check_and_clean_stop(bot: BotProcess, stack: Stack) -> None:
    def check() -> int:
        cmd = [str(env_python("core")), *BOT_COMMAND, "--check"]
        return subprocess.run(cmd, env=bot.env, cwd=ROOT, timeout=60).returncode

    deadline = time.monotonic() + 30
    while check() != 0:
        assert time.monotonic() < deadline, "the bot never reported in"
    bot.kill(signal.SIGTERM)
    assert bot.proc is not None and bot.proc.returncode == 0
    assert "Traceback" not in bot.log()
