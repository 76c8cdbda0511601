"""`/jobs`: your recent requests, with Cancel and Retry buttons."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.origin import user_id
from bot.replies import defer_reply
from bot.text import request_line
from bot.views import CancelButton, RetryButton

if TYPE_CHECKING:
    from bot.services import BotServices
    from jobs.records import Request

SHOWN = 10
MAX_BUTTONS = 5  # one row of each kind keeps the message readable


def buttons_for(requests: list[Request]) -> discord.ui.View | None:
    """Return Cancel buttons for running requests and Retry buttons for failed renders."""
    view = discord.ui.View(timeout=None)
    cancels = [r for r in requests if not r.final][:MAX_BUTTONS]
    retries = [r for r in requests if r.kind == "render" and r.state in ("failed", "cancelled")][
        :MAX_BUTTONS
    ]
    for req in cancels:
        view.add_item(_labelled(CancelButton(req.id), f"Cancel {req.id[:8]}", 0))
    for req in retries:
        view.add_item(_labelled(RetryButton(req.id), f"Retry {req.id[:8]}", 1))
    return view if view.children else None


def _labelled(item: CancelButton | RetryButton, label: str, row: int) -> Any:
    item.item.label = label
    item.item.row = row
    return item


class Jobs(commands.Cog):
    """The /jobs command."""

    def __init__(self, bot: BotServices) -> None:
        self.bot = bot

    @app_commands.command(name="jobs", description="Your recent requests and where they stand.")
    async def jobs(self, interaction: discord.Interaction) -> None:
        """List the caller's latest requests."""
        await defer_reply(interaction, ephemeral=True)
        found = await self.bot.jobs.list_requests(user_id(interaction.user), limit=SHOWN)
        if not found:
            text = "You have no requests yet: try `/say`."
        else:
            text = "\n".join(request_line(r) for r in found)
        kwargs: dict[str, Any] = {}
        view = buttons_for(found)
        if view is not None:
            kwargs["view"] = view
        await interaction.followup.send(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none(), **kwargs
        )
