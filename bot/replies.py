"""Acknowledging interactions: every handler defers first, within Discord's 3 s."""

from __future__ import annotations

import discord

# `Interaction.extras` keys: whether the deferred reply is public, and the id of that reply.
PUBLIC_DEFER = "public_defer"
REPLY_ID = "reply_id"


async def defer_reply(interaction: discord.Interaction, ephemeral: bool) -> None:
    """Acknowledge at once (Discord allows 3 s) and remember whether the reply is public."""
    if interaction.response.is_done():
        return
    callback = await interaction.response.defer(ephemeral=ephemeral, thinking=True)
    interaction.extras[PUBLIC_DEFER] = not ephemeral
    if callback is not None and callback.message_id is not None:
        # The "thinking" message is the reply every later edit and delivery targets.
        interaction.extras[REPLY_ID] = callback.message_id
