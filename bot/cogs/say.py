"""`/say`: queue a render, show live progress in the reply, deliver the video there."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.choices import asset_choices, language_choices
from bot.origin import origin_of, user_id
from bot.replies import defer_reply

if TYPE_CHECKING:
    from bot.services import BotServices


class Say(commands.Cog):
    """The /say command."""

    def __init__(self, bot: BotServices) -> None:
        self.bot = bot

    @app_commands.command(name="say", description="Make your avatar say something, in your voice.")
    @app_commands.describe(
        text="What the avatar says",
        voice="Voice (default: your default voice)",
        avatar="Avatar (default: your default avatar)",
        language="Language code (default: yours, or en)",
    )
    async def say(
        self,
        interaction: discord.Interaction,
        text: str,
        voice: str | None = None,
        avatar: str | None = None,
        language: str | None = None,
    ) -> None:
        """Acknowledge publicly at once, queue the render, and show where it stands."""
        await defer_reply(interaction, ephemeral=False)
        req = await self.bot.jobs.submit_render(
            user_id(interaction.user),
            text,
            voice=voice,
            avatar=avatar,
            language=language,
            origin=origin_of(interaction),
            # Encode to fit what this place accepts (boosted servers allow more than 10 MiB).
            max_bytes=interaction.filesize_limit,
        )
        await self.bot.show_queued(interaction, req)

    @say.autocomplete("voice")
    async def _voice(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await asset_choices(
            self.bot.jobs.accounts, "voice", user_id(interaction.user), current
        )

    @say.autocomplete("avatar")
    async def _avatar(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await asset_choices(
            self.bot.jobs.accounts, "avatar", user_id(interaction.user), current
        )

    @say.autocomplete("language")
    async def _language(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return language_choices(self.bot.settings, current)
