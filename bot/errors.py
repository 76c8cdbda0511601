"""The one place where errors become what a Discord user reads: one ephemeral line.

User errors (`NotFound`, `Forbidden`, `BadInput`) are shown as they are; everything else goes
through `one_line`, which never leaks internals, and is logged in full.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.replies import PUBLIC_DEFER
from jayavatar.errors import JayAvatarError, TransientError, UserError, one_line

log = logging.getLogger(__name__)
BUSY = "JayAvatar is busy right now; try again shortly"


def message_for(exc: BaseException) -> str:
    """Return the one line to show for an exception raised while handling an interaction."""
    while isinstance(exc, app_commands.CommandInvokeError | app_commands.TransformerError):
        if exc.__cause__ is None:
            break
        exc = exc.__cause__
    if isinstance(exc, app_commands.CommandInvokeError):
        exc = exc.original
    if _redis_down(exc):
        return BUSY
    if isinstance(exc, JayAvatarError):
        return one_line(exc)
    if isinstance(exc, app_commands.CheckFailure):
        return str(exc) or "you may not use this command here"
    if isinstance(exc, discord.HTTPException):
        return "Discord refused the reply; try again in a moment"
    return one_line(exc)


def _redis_down(exc: BaseException) -> bool:
    """Whether the error is Redis being unreachable (raw, or as the client's TransientError)."""
    down = (RedisConnectionError, RedisTimeoutError)
    if isinstance(exc, down):
        return True
    return isinstance(exc, TransientError) and isinstance(exc.__cause__, down)


def is_expected(exc: BaseException) -> bool:
    """Whether an error is a normal refusal rather than a bug worth a traceback."""
    inner = getattr(exc, "original", exc)
    return isinstance(inner, UserError | app_commands.CheckFailure)


async def send_error(interaction: discord.Interaction, exc: BaseException) -> None:
    """Tell the user what went wrong, ephemerally, whatever state the interaction is in."""
    text = f"⚠️ {message_for(exc)}"
    if is_expected(exc):
        log.info("refused %s: %s", interaction.id, text)
    else:
        log.error("interaction %s failed", interaction.id, exc_info=exc)
    allowed = discord.AllowedMentions.none()
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=allowed)
            return
        if interaction.extras.get(PUBLIC_DEFER):
            # The first follow-up would edit the public "thinking" message and stay public;
            # remove it so the refusal is seen only by the person who asked.
            await interaction.delete_original_response()
            interaction.extras[PUBLIC_DEFER] = False
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=allowed)
    except discord.HTTPException:
        log.warning("could not tell %s about an error: %s", interaction.id, text)


async def on_tree_error(
    interaction: discord.Interaction, error: app_commands.AppCommandError
) -> None:
    """`CommandTree.on_error`: every slash command error ends here."""
    await send_error(interaction, error)
