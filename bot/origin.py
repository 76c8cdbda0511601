"""Where a request came from on Discord, kept in `Request.origin` so any bot process can answer it.

Every value is a string (the record's `origin` is `dict[str, str]`). The interaction token lives
here for its 15 minutes of use; after that it is dead and only the channel or a DM remain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import discord

from bot.replies import REPLY_ID
from jayavatar import ids

FRONT = "discord"
# Tokens last 15 min; stop using one a little early so an edit never races its expiry.
TOKEN_LIFETIME_S = 15 * 60
TOKEN_MARGIN_S = 30
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


def user_id(user: discord.abc.User | discord.Object) -> str:
    """Return the JayAvatar user id of a Discord account."""
    return ids.discord_user(user.id)


def snowflake_of(user: str) -> int | None:
    """Return the Discord id inside a JayAvatar user id, or None for other users."""
    return ids.discord_snowflake(user)


def origin_of(interaction: discord.Interaction) -> dict[str, str]:
    """Return the origin fields of an interaction."""
    guild_install = interaction.is_guild_integration()
    return {
        "front": FRONT,
        "app": str(interaction.application_id),
        "iid": str(interaction.id),
        "token": interaction.token,
        "created": f"{interaction.created_at.timestamp():.3f}",
        "channel": str(interaction.channel_id or ""),
        "guild": str(interaction.guild_id or ""),
        # The bot can post in the channel only where it is installed, or in its own DMs.
        "bot_can_post": "1" if guild_install or interaction.guild_id is None else "0",
        "user": str(interaction.user.id),
        "limit": str(interaction.filesize_limit or DEFAULT_UPLOAD_LIMIT),
        "message": str(interaction.extras.get(REPLY_ID) or ""),
    }


@dataclass(frozen=True)
class Origin:
    """Typed view of a request's Discord origin."""

    app: int
    interaction_id: int
    token: str
    created: float
    channel: int | None
    guild: int | None
    bot_can_post: bool
    user: int
    limit: int
    message: int | None

    @classmethod
    def parse(cls, raw: dict[str, str]) -> Origin | None:
        """Return the origin of a request made on Discord, or None for other fronts."""
        if raw.get("front") != FRONT:
            return None
        return cls(
            app=int(raw["app"]),
            interaction_id=int(raw.get("iid") or 0),
            token=raw["token"],
            created=float(raw.get("created") or 0),
            channel=int(raw["channel"]) if raw.get("channel") else None,
            guild=int(raw["guild"]) if raw.get("guild") else None,
            bot_can_post=raw.get("bot_can_post") == "1",
            user=int(raw["user"]),
            limit=int(raw.get("limit") or DEFAULT_UPLOAD_LIMIT),
            message=int(raw["message"]) if raw.get("message") else None,
        )

    def token_fresh(self, now: float | None = None) -> bool:
        """Whether the interaction token is still safely usable by this process's clock."""
        age = (now if now is not None else time.time()) - self.created
        return age < TOKEN_LIFETIME_S - TOKEN_MARGIN_S
