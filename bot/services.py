"""What the cogs, views and asset commands need of the bot: a small interface, not `bot.app`.

`bot.app.JayBot` provides it. Depending on this Protocol instead of the class keeps the feature
modules below the bot that assembles them, so `bot/` has no import cycle.
"""

from __future__ import annotations

from typing import Protocol

import aiohttp
import discord

from jayavatar.settings import Settings
from jobs.client import JobClient
from jobs.records import Request


class BotServices(Protocol):
    """The bot as the feature modules see it."""

    settings: Settings
    jobs: JobClient
    downloads: aiohttp.ClientSession | None

    async def show_queued(self, interaction: discord.Interaction, req: Request) -> None:
        """Edit the reply to show the queue position and a Cancel button; follow the request."""

    async def is_admin(self, interaction: discord.Interaction) -> bool:
        """Return whether the user of an interaction may use admin commands."""

    async def cancel_as(self, interaction: discord.Interaction, rid: str) -> Request:
        """Cancel a request for its owner, or for an admin."""

    async def retry_as(
        self, interaction: discord.Interaction, rid: str, origin: dict[str, str]
    ) -> Request:
        """Queue a finished render again, answering in the interaction that asked for it."""
