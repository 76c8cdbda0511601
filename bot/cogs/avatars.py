"""`/avatar`: add (from an attachment), list, remove, and choose the default avatar."""

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


class Avatars(commands.GroupCog, group_name="avatar", group_description="Your avatars"):
    """The /avatar commands."""

    def __init__(self, bot: BotServices) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="add", description="Enroll an avatar from an uploaded file.")
    @app_commands.describe(
        media="A short video of your face (or a photo)",
        name="A short name: letters, digits, - or _",
        replace="Overwrite your avatar of the same name",
    )
    async def add(
        self,
        interaction: discord.Interaction,
        media: discord.Attachment,
        name: str,
        replace: bool = False,
    ) -> None:
        """Check the file, then let a worker prepare the avatar."""
        await assets.enroll(self.bot, interaction, "avatar", media, name, replace)

    @app_commands.command(name="list", description="List the avatars you may use.")
    async def list_(self, interaction: discord.Interaction) -> None:
        """Show own and shared avatars."""
        await defer_reply(interaction, ephemeral=True)
        text = await assets.listing(self.bot, "avatar", user_id(interaction.user))
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=QUIET)

    @app_commands.command(name="remove", description="Delete one of your avatars.")
    async def remove(self, interaction: discord.Interaction, name: str) -> None:
        """Delete an avatar and its files."""
        await defer_reply(interaction, ephemeral=True)
        text = await assets.remove(self.bot, "avatar", user_id(interaction.user), name)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=QUIET)

    @app_commands.command(name="default", description="Use this avatar when /say names none.")
    async def default(self, interaction: discord.Interaction, name: str) -> None:
        """Set the default avatar."""
        await defer_reply(interaction, ephemeral=True)
        text = await assets.set_default(self.bot, "avatar", user_id(interaction.user), name)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=QUIET)

    @remove.autocomplete("name")
    async def _own(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        accounts, me = self.bot.jobs.accounts, user_id(interaction.user)
        return await asset_choices(accounts, "avatar", me, current, own_only=True)

    @default.autocomplete("name")
    async def _usable(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await asset_choices(
            self.bot.jobs.accounts, "avatar", user_id(interaction.user), current
        )
