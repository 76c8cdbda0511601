"""Cancel and Retry buttons that keep working after a restart.

Each is a `DynamicItem`: the request id sits in the `custom_id` (`job:cancel:<32 hex>`, 43 of
Discord's 100 characters), and `add_dynamic_items` at start-up routes any such press to us.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import send_error
from bot.origin import origin_of
from bot.replies import defer_reply
from bot.text import request_line

if TYPE_CHECKING:
    from bot.services import BotServices

RID = r"(?P<rid>[0-9a-f]{32})"


def jay(interaction: discord.Interaction) -> BotServices:
    """Return the bot that received an interaction (a `bot.app.JayBot`)."""
    return interaction.client  # type: ignore[return-value]


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=f"job:cancel:{RID}"):
    """Cancels the request named in its custom_id (the presser must own it, or be an admin)."""

    def __init__(self, rid: str) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label="Cancel", style=discord.ButtonStyle.danger, custom_id=f"job:cancel:{rid}"
        )
        super().__init__(button)
        self.rid = rid

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        """Rebuild the button from a pressed custom_id."""
        return cls(match["rid"])

    async def callback(self, interaction: discord.Interaction) -> None:
        """Cancel the request and say so."""
        await defer_reply(interaction, ephemeral=True)
        try:
            req = await jay(interaction).cancel_as(interaction, self.rid)
        except Exception as exc:
            await send_error(interaction, exc)
            return
        await interaction.followup.send(f"Cancelled: {request_line(req)}", ephemeral=True)


class RetryButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=f"job:retry:{RID}"):
    """Submits the request named in its custom_id again, answering in this new interaction."""

    def __init__(self, rid: str) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label="Retry", style=discord.ButtonStyle.primary, custom_id=f"job:retry:{rid}"
        )
        super().__init__(button)
        self.rid = rid

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RetryButton:
        """Rebuild the button from a pressed custom_id."""
        return cls(match["rid"])

    async def callback(self, interaction: discord.Interaction) -> None:
        """Queue the same render again and track it like a fresh /say."""
        bot = jay(interaction)
        await defer_reply(interaction, ephemeral=False)
        try:
            req = await bot.retry_as(interaction, self.rid, origin_of(interaction))
        except Exception as exc:
            await send_error(interaction, exc)
            return
        await bot.show_queued(interaction, req)


def cancel_view(rid: str) -> discord.ui.View:
    """Return the view under a running request: one Cancel button."""
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(rid))
    return view


def retry_view(rid: str) -> discord.ui.View:
    """Return the view under a failed or cancelled render: one Retry button."""
    view = discord.ui.View(timeout=None)
    view.add_item(RetryButton(rid))
    return view


def final_view(state: str, kind: str, rid: str) -> discord.ui.View | None:
    """Return the buttons a final message carries: Retry for failed renders, else none."""
    if kind == "render" and state in ("failed", "cancelled"):
        return retry_view(rid)
    return None
