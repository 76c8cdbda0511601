"""`/voice`: add (from an attachment), list, remove, and choose the default voice."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot import assets
from bot.choices import asset_choices
from bot.origin import user_id
from bot.replies import defer_reply

if TYPE_CHECKING:
    from bot.services import BotServices

QUIET = discord.AllowedMentions.none()


class Voices(commands.GroupCog, group_name="voice", group_description="Your voices"):
    """The /voice commands."""

    def __init__(self, bot: BotServices) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="add", description="Enroll a voice from an uploaded file.")
    @app_commands.describe(
        sample="A recording of your voice (6-30 s of clear speech is best)",
        name="A short name: letters, digits, - or _",
        replace="Overwrite your voice of the same name",
    )
    async def add(
        self,
        interaction: discord.Interaction,
        sample: discord.Attachment,
        name: str,
        replace: bool = False,
    ) -> None:
        """Check the file, then let a worker prepare the voice."""
        await assets.enroll(self.bot, interaction, "voice", sample, name, replace)

    @app_commands.command(name="list", description="List the voices you may use.")
    async def list_(self, interaction: discord.Interaction) -> None:
        """Show own and shared voices."""
        await defer_reply(interaction, ephemeral=True)
        text = await assets.listing(self.bot, "voice", user_id(interaction.user))
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=QUIET)

    @app_commands.command(name="remove", description="Delete one of your voices.")
    async def remove(self, interaction: discord.Interaction, name: str) -> None:
        """Delete a voice and its files."""
        await defer_reply(interaction, ephemeral=True)
        text = await assets.remove(self.bot, "voice", user_id(interaction.user), name)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=QUIET)

    @app_commands.command(name="default", description="Use this voice when /say names none.")
    async def default(self, interaction: discord.Interaction, name: str) -> None:
        """Set the default voice."""
        await defer_reply(interaction, ephemeral=True)
        text = await assets.set_default(self.bot, "voice", user_id(interaction.user), name)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=QUIET)

    @remove.autocomplete("name")
    async def _own(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        accounts, me = self.bot.jobs.accounts, user_id(interaction.user)
        return await asset_choices(accounts, "voice", me, current, own_only=True)

    @default.autocomplete("name")
    async def _usable(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await asset_choices(
            self.bot.jobs.accounts, "voice", user_id(interaction.user), current
        )
