"""`/share` and `/unshare`: consent. Only the owner of a voice or avatar lets others use it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.choices import asset_choices
from bot.origin import user_id
from bot.replies import defer_reply

if TYPE_CHECKING:
    from bot.services import BotServices

QUIET = discord.AllowedMentions.none()
Kind = Literal["voice", "avatar"]


class Share(commands.Cog):
    """The /share and /unshare commands."""

    def __init__(self, bot: BotServices) -> None:
        self.bot = bot

    @app_commands.command(
        name="share", description="Let someone use one of your voices or avatars."
    )
    @app_commands.describe(kind="voice or avatar", name="Its name", user="Who may use it")
    async def share(
        self, interaction: discord.Interaction, kind: Kind, name: str, user: discord.User
    ) -> None:
        """Grant `user` the use of one of the caller's assets."""
        await defer_reply(interaction, ephemeral=True)
        owner = user_id(interaction.user)
        await self.bot.jobs.accounts.share(kind, owner, name, user_id(user))
        await interaction.followup.send(
            f"<@{user.id}> may now use your {kind} `{name}` (as `{owner}/{name}`).",
            ephemeral=True,
            allowed_mentions=QUIET,
        )

    @app_commands.command(name="unshare", description="Withdraw a share.")
    @app_commands.describe(kind="voice or avatar", name="Its name", user="Who may no longer use it")
    async def unshare(
        self, interaction: discord.Interaction, kind: Kind, name: str, user: discord.User
    ) -> None:
        """Withdraw `user`'s use of one of the caller's assets."""
        await defer_reply(interaction, ephemeral=True)
        await self.bot.jobs.accounts.unshare(kind, user_id(interaction.user), name, user_id(user))
        await interaction.followup.send(
            f"<@{user.id}> may no longer use your {kind} `{name}`.",
            ephemeral=True,
            allowed_mentions=QUIET,
        )

    @share.autocomplete("name")
    @unshare.autocomplete("name")
    async def _names(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        kind: Kind = "avatar" if getattr(interaction.namespace, "kind", "") == "avatar" else "voice"
        return await asset_choices(
            self.bot.jobs.accounts, kind, user_id(interaction.user), current, own_only=True
        )
