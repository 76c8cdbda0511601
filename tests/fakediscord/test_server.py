"""The fake Discord acts like Discord where the bot relies on it, checked with discord.py.

A plain discord.py client, in this process, is pointed at the fake the same way the bot is.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import Interaction

pytestmark = pytest.mark.timeout(60)


class Probe(discord.Client):
    """A client with one command, /ping, that defers and then edits its reply."""

    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.none(), guild_ready_timeout=0.1)
        self.tree = app_commands.CommandTree(self)
        self.seen: list[discord.Interaction] = []

    async def setup_hook(self) -> None:
        """Register /ping and sync it."""

        @self.tree.command(name="ping", description="ping")
        async def ping(interaction: discord.Interaction, text: str) -> None:
            self.seen.append(interaction)
            await interaction.response.defer(thinking=True)
            await interaction.edit_original_response(content=f"pong {text}")

        await self.tree.sync()


@pytest.fixture
async def setup() -> AsyncIterator[tuple[FakeDiscord, Probe]]:
    """A fake Discord with one guild, and a connected probe client."""
    fake = await asyncio.to_thread(lambda: FakeDiscord().start())
    saved = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
    Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = fake.api_base, yarl.URL(fake.gateway_url)
    client = Probe()
    task = asyncio.create_task(client.start(fake.world.bot_token))
    try:
        await asyncio.to_thread(fake.wait_connected)
        await client.wait_until_ready()
        yield fake, client
    finally:
        # Let discord.py's post-READY task (guild_ready_timeout) end before the loop does.
        await asyncio.sleep(0.3)
        await client.close()
        task.cancel()
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved
        await asyncio.to_thread(fake.stop)


async def ping(fake: FakeDiscord, text: str) -> Interaction:
    """Send /ping from a new user in a new guild and wait for the answer."""
    user = await asyncio.to_thread(fake.add_user, "u")
    guild = await asyncio.to_thread(fake.add_guild, "g", user)
    channel = await asyncio.to_thread(fake.channel_of, guild)
    interaction = await asyncio.to_thread(fake.slash, user, "ping", channel, text=text)
    await asyncio.to_thread(
        fake.wait_original, interaction, lambda m: m.content == f"pong {text}", "pong"
    )
    return interaction


async def test_slash_command_defer_and_edit(setup: tuple[FakeDiscord, Probe]) -> None:
    fake, _client = setup
    interaction = await ping(fake, "hi")
    acked = fake.call(lambda w: w.interactions[interaction.id])
    assert acked.ack_type == 5 and acked.ack_latency_s is not None


async def test_token_expires_after_15_simulated_minutes(setup: tuple[FakeDiscord, Probe]) -> None:
    fake, client = setup
    await ping(fake, "a")
    [seen] = client.seen
    await asyncio.to_thread(fake.advance, 15 * 60 + 1)
    with pytest.raises(discord.HTTPException) as refused:
        await seen.edit_original_response(content="late")
    assert (refused.value.status, refused.value.code) == (401, 50027)


async def test_enforce_nonce_returns_the_first_message(setup: tuple[FakeDiscord, Probe]) -> None:
    fake, client = setup
    interaction = await ping(fake, "b")
    channel = client.get_partial_messageable(interaction.channel_id)
    first = await channel.send("once", nonce="n-1")
    second = await channel.send("once", nonce="n-1")
    assert first.id == second.id
    stored = fake.call(lambda w: [m for m in w.messages.values() if m.content == "once"])
    assert len(stored) == 1
    await asyncio.to_thread(fake.advance, 6 * 60)  # outside Discord's dedup window
    third = await channel.send("once", nonce="n-1")
    assert third.id != first.id


async def test_uploads_over_the_limit_get_413_and_files_are_served(
    setup: tuple[FakeDiscord, Probe],
) -> None:
    fake, client = setup
    interaction = await ping(fake, "c")
    channel = client.get_partial_messageable(interaction.channel_id)
    fake.call(lambda w: setattr(w.guilds[interaction.guild_id or 0], "upload_limit", 10))
    with pytest.raises(discord.HTTPException) as refused:
        await channel.send(file=discord.File(io.BytesIO(b"x" * 11), filename="big.bin"))
    assert (refused.value.status, refused.value.code) == (413, 40005)
    sent = await channel.send(file=discord.File(io.BytesIO(b"y" * 10), filename="ok.bin"))
    async with aiohttp.ClientSession() as session, session.get(sent.attachments[0].url) as got:
        assert await got.read() == b"y" * 10
    await asyncio.to_thread(fake.advance, 25 * 3600)
    async with aiohttp.ClientSession() as session, session.get(sent.attachments[0].url) as got:
        assert got.status == 404


async def test_429_is_waited_out_by_discord_py(setup: tuple[FakeDiscord, Probe]) -> None:
    fake, client = setup
    interaction = await ping(fake, "d")
    await asyncio.to_thread(fake.rate_limit, "POST", "/channels/[0-9]+/messages$", 0.5)
    await client.get_partial_messageable(interaction.channel_id).send("after the wait")
    assert fake.faults.rate_limits.limited == 1
    assert fake.faults.rate_limits.early == []


async def test_reconnect_resumes_and_invalid_session_identifies(
    setup: tuple[FakeDiscord, Probe],
) -> None:
    fake, _client = setup
    await asyncio.to_thread(fake.send_reconnect)
    await asyncio.to_thread(fake.wait_for, lambda w: fake.gateway.stats.resumes == 1, "resume")
    await ping(fake, "after-resume")
    await asyncio.to_thread(fake.invalidate_session)
    await asyncio.to_thread(
        fake.wait_for,
        lambda w: fake.gateway.stats.identifies == 2 and fake.gateway.connected(),
        "identify",
    )
    await ping(fake, "after-identify")
