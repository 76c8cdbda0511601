"""The Discord bot: a `commands.Bot` built once from Settings, with one cog per feature.

discord.py is pointed at `discord_api_base` and `discord_gateway_url` through the two class
attributes it reads for every request and (re)connection: `Route.BASE` for REST, interaction
callbacks and webhooks, and `DiscordWebSocket.DEFAULT_GATEWAY` for the first connection and for
re-identifying after an invalid session (resumes use READY's `resume_gateway_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from discord.http import Route
from redis.exceptions import RedisError

from bot.delivery import Deliverer
from bot.errors import on_tree_error
from bot.memory import BotMemory
from bot.origin import Origin, user_id
from bot.progress import Tracker
from bot.replies import REPLY_ID
from bot.text import progress_message
from bot.views import CancelButton, RetryButton, cancel_view
from jayavatar import ids
from jayavatar.errors import Misconfigured, TransientError
from jayavatar.settings import Settings
from jobs.client import JobClient
from jobs.records import Request

log = logging.getLogger(__name__)
# Admin actions by a server Administrator who is not in the configured admin list run as the
# deployment's operator identity (the same one the CLI uses on the server).
OPERATOR = ids.LOCAL
BEAT_EVERY_S = 10
ALIVE_TTL_S = 45


def point_at(settings: Settings) -> None:
    """Send discord.py's REST calls and gateway connections where the settings say."""
    Route.BASE = settings.discord_api_base.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class JayBot(commands.Bot):
    """The JayAvatar bot."""

    def __init__(self, settings: Settings, jobs: JobClient) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channel and permission data for interactions in servers
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents,
            chunk_guilds_at_startup=False,
            allowed_mentions=discord.AllowedMentions.none(),
            # Work in servers, in DMs with the bot, and as a user-installed app anywhere.
            allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=True, private_channel=True
            ),
            # Longer waits surface as RateLimited: the delivery retries later instead of hanging.
            max_ratelimit_timeout=60.0,
        )
        self.settings = settings
        self.jobs = jobs
        self.memory = BotMemory(jobs.redis, settings)
        self.tracker = Tracker(self, jobs, self.memory)
        self.deliverer = Deliverer(self, jobs, self.memory, self.tracker)
        self.downloads: aiohttp.ClientSession | None = None
        self._background: list[asyncio.Task[None]] = []
        self.failed = False

    async def setup_hook(self) -> None:
        """Load cogs and buttons, sync commands, start delivery and progress loops."""
        from bot.cogs import all_cogs

        self.tree.on_error = on_tree_error  # type: ignore[method-assign]
        self.add_dynamic_items(CancelButton, RetryButton)
        for cog in all_cogs(self):
            await self.add_cog(cog)
        await self.sync_commands()
        self.downloads = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        resumed = await self.tracker.resume()
        log.info("following %d unfinished requests", resumed)
        self._background = [
            asyncio.create_task(self.deliverer.run(), name="delivery"),
            asyncio.create_task(self.tracker.run(), name="progress"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]
        for task in self._background:
            task.add_done_callback(self._loop_ended)

    async def close(self) -> None:
        """Stop the loops, let deliveries in progress finish, then disconnect."""
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.deliverer.drain()
        if self.downloads is not None:
            await self.downloads.close()
        await super().close()

    async def sync_commands(self) -> None:
        """Upload the command schemas, only when they changed (sync is rate limited)."""
        schemas = [c.to_dict(self.tree) for c in self.tree.get_commands()]
        raw = json.dumps([Route.BASE, self.application_id, schemas], sort_keys=True, default=str)
        fingerprint = hashlib.sha256(raw.encode()).hexdigest()
        if await self.memory.commands_synced(fingerprint):
            return
        await self.tree.sync()
        await self.memory.set_commands_synced(fingerprint)
        log.info("synced %d commands", len(schemas))

    async def _heartbeat(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(BEAT_EVERY_S)

    async def beat(self) -> None:
        """Refresh the key `jayavatar bot --check` reads, if connected and delivering."""
        connected = self.ws is not None and self.ws.open
        if connected and all(not t.done() for t in self._background[:2]):
            with contextlib.suppress(RedisError, OSError):
                await self.memory.beat(ALIVE_TTL_S)

    async def on_ready(self) -> None:
        """Report in as soon as the gateway session is up."""
        await self.beat()

    def _loop_ended(self, task: asyncio.Task[Any]) -> None:
        # A bot that no longer delivers must not look healthy: stop, so the supervisor restarts
        # it and the restart replays whatever was not delivered.
        if task.cancelled() or self.is_closed():
            return
        log.critical(
            "the %s loop stopped; shutting down", task.get_name(), exc_info=task.exception()
        )
        self.failed = True
        asyncio.get_running_loop().create_task(self.close())

    # Shared by cogs and buttons -------------------------------------------------------------

    async def show_queued(self, interaction: discord.Interaction, req: Request) -> None:
        """Edit the reply to show the queue position and a Cancel button; follow the request."""
        origin = Origin.parse(req.origin)
        reply_id = interaction.extras.get(REPLY_ID)
        if reply_id is not None:
            await self.memory.set_message(req.id, int(reply_id))
        position = await self.jobs.queue_position(req.id)
        content = progress_message(req, position)
        message = await interaction.edit_original_response(
            content=content,
            view=cancel_view(req.id),
            allowed_mentions=discord.AllowedMentions.none(),
        )
        await self.memory.set_message(req.id, message.id)
        if origin is not None:
            self.tracker.track(req.id, origin, shown=content)

    async def is_admin(self, interaction: discord.Interaction) -> bool:
        """Server-side admin check: the admin list, or Administrator where the bot is installed."""
        if await self.jobs.accounts.is_admin(user_id(interaction.user)):
            return True
        # A user install lets anyone be "Administrator" of their own server: it counts only in
        # servers that installed the bot itself.
        return interaction.is_guild_integration() and interaction.permissions.administrator

    async def actor(self, interaction: discord.Interaction) -> str:
        """Return the identity to act as for an admin action."""
        me = user_id(interaction.user)
        if await self.jobs.accounts.is_admin(me):
            return me
        return OPERATOR if await self.is_admin(interaction) else me

    async def cancel_as(self, interaction: discord.Interaction, rid: str) -> Request:
        """Cancel a request for its owner, or for an admin."""
        return await self.jobs.cancel(rid, await self.actor(interaction))

    async def retry_as(
        self, interaction: discord.Interaction, rid: str, origin: dict[str, str]
    ) -> Request:
        """Queue a finished render again, answering in the interaction that asked for it."""
        new = await self.jobs.retry(rid, await self.actor(interaction))
        updated, _ = await self.jobs.store.update(new.id, lambda r: r.changed(origin=origin))
        return updated


async def run(settings: Settings) -> None:
    """Connect to Redis and Discord and serve until stopped."""
    token = settings.discord_token.get_secret_value()
    if not token:
        raise Misconfigured("JAYAVATAR_DISCORD_TOKEN is not set; create a bot token first (README)")
    point_at(settings)
    jobs = await JobClient.connect(settings)
    bot = JayBot(settings, jobs)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Stop cleanly: deliveries in progress finish; anything else is replayed on restart.
        loop.add_signal_handler(sig, lambda: loop.create_task(bot.close()))
    try:
        async with bot:
            await bot.start(token)
    finally:
        await jobs.close()
    if bot.failed:
        raise TransientError("the bot stopped because a background loop failed; see the log")
