"""JSON shapes of Discord API v10 objects, as much of them as discord.py 2.7 reads."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from tests.fakediscord.state import (
    ADMINISTRATOR,
    MEMBER_PERMISSIONS,
    Attachment,
    Channel,
    Guild,
    Message,
    User,
    World,
)


def iso(ts: float) -> str:
    """Return an ISO-8601 timestamp as Discord writes them."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


def user(u: User) -> dict[str, Any]:
    """Return a user object."""
    return {
        "id": str(u.id),
        "username": u.name,
        "discriminator": "0",
        "global_name": u.name,
        "avatar": None,
        "bot": u.bot,
        "public_flags": 0,
    }


def permissions_of(guild: Guild, user_id: int) -> int:
    """Return a member's guild-wide permission bits."""
    return MEMBER_PERMISSIONS | (ADMINISTRATOR if user_id in guild.admins else 0)


def member(world: World, guild: Guild, u: User) -> dict[str, Any]:
    """Return a guild member object (with computed permissions, as interactions carry)."""
    return {
        "user": user(u),
        "roles": [],
        "joined_at": iso(world.clock.now()),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "nick": None,
        "avatar": None,
        "communication_disabled_until": None,
        "permissions": str(permissions_of(guild, u.id)),
    }


def channel(world: World, c: Channel) -> dict[str, Any]:
    """Return a channel object (text or DM)."""
    if c.is_dm:
        recipient = world.users[c.recipient_id or 0]
        return {
            "id": str(c.id),
            "type": 1,
            "recipients": [user(recipient)],
            "last_message_id": None,
        }
    return {
        "id": str(c.id),
        "type": 0,
        "guild_id": str(c.guild_id),
        "name": c.name,
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
    }


def guild_create(world: World, g: Guild) -> dict[str, Any]:
    """Return a GUILD_CREATE payload for a guild the bot is in."""
    everyone = {
        "id": str(g.id),
        "name": "@everyone",
        "permissions": str(MEMBER_PERMISSIONS),
        "position": 0,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }
    return {
        "id": str(g.id),
        "name": g.name,
        "icon": None,
        "owner_id": str(g.owner_id),
        "roles": [everyone],
        "channels": [channel(world, world.channels[c]) for c in g.channels],
        "members": [member(world, g, world.bot)],
        "member_count": 2,
        "large": False,
        "unavailable": False,
        "features": [],
        "emojis": [],
        "stickers": [],
        "threads": [],
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "system_channel_flags": 0,
        "joined_at": iso(world.clock.now()),
    }


def attachment_url(base_url: str, att: Attachment) -> str:
    """Return the signed, expiring URL of a stored file."""
    expires = format(int(att.expires_at), "x")
    sig = hashlib.sha256(f"{att.id}:{expires}".encode()).hexdigest()[:16]
    return f"{base_url}/attachments/{att.id}/{att.filename}?ex={expires}&hm={sig}"


def attachment(base_url: str, att: Attachment) -> dict[str, Any]:
    """Return an attachment object."""
    url = attachment_url(base_url, att)
    return {
        "id": str(att.id),
        "filename": att.filename,
        "size": len(att.data),
        "url": url,
        "proxy_url": url,
        "content_type": att.content_type,
    }


def message(world: World, base_url: str, m: Message) -> dict[str, Any]:
    """Return a message object."""
    c = world.channels[m.channel_id]
    payload: dict[str, Any] = {
        "id": str(m.id),
        "channel_id": str(m.channel_id),
        "author": user(world.users[m.author_id]),
        "content": m.content,
        "timestamp": iso(m.created_at),
        "edited_timestamp": iso(m.edited_at) if m.edited_at else None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [attachment(base_url, world.attachments[a]) for a in m.attachments],
        "embeds": [],
        "pinned": False,
        "type": 20 if m.interaction_id else 0,
        "flags": m.flags,
        "components": m.components,
    }
    if c.guild_id is not None:
        payload["guild_id"] = str(c.guild_id)
    if m.nonce is not None:
        payload["nonce"] = m.nonce
    if m.webhook_id is not None:
        payload["webhook_id"] = str(m.webhook_id)
    return payload


def application(world: World) -> dict[str, Any]:
    """Return the application object of `GET /oauth2/applications/@me`."""
    return {
        "id": str(world.application_id),
        "name": world.bot.name,
        "icon": None,
        "description": "",
        "bot_public": True,
        "bot_require_code_grant": False,
        "owner": user(world.bot),
        "team": None,
        "verify_key": "00" * 32,
        "flags": 0,
        "summary": "",
    }
