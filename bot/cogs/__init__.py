"""One cog per feature."""

from __future__ import annotations

from typing import TYPE_CHECKING

from discord.ext import commands

if TYPE_CHECKING:
    from bot.services import BotServices


def all_cogs(bot: BotServices) -> list[commands.Cog]:
    """Return every cog of the bot."""
    from bot.cogs.admin import Admin
    from bot.cogs.avatars import Avatars
    from bot.cogs.jobs import Jobs
    from bot.cogs.say import Say
    from bot.cogs.share import Share
    from bot.cogs.voices import Voices

    return [Say(bot), Voices(bot), Avatars(bot), Jobs(bot), Share(bot), Admin(bot)]
