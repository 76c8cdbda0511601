"""Builds INTERACTION_CREATE payloads from the command schemas the bot synced."""

from __future__ import annotations

import secrets
import time
from typing import Any

from tests.fakediscord import payloads
from tests.fakediscord.state import (
    MEMBER_PERMISSIONS,
    Attachment,
    Channel,
    Interaction,
    Message,
    User,
    World,
)

SUBCOMMAND, GROUP, USER, ATTACHMENT = 1, 2, 6, 11
APP_COMMAND, COMPONENT, AUTOCOMPLETE = 2, 3, 4
GUILD_CONTEXT, BOT_DM_CONTEXT = 0, 1


class UnknownCommand(LookupError):
    """The bot never synced a command by that name."""


def find_schema(world: World, name: str) -> dict[str, Any]:
    """Return the synced schema of a top-level command."""
    for schema in world.global_commands:
        if schema["name"] == name:
            return schema
    raise UnknownCommand(f"the bot did not sync /{name}; synced: {command_names(world)}")


def command_names(world: World) -> list[str]:
    """Return the names of all globally synced commands."""
    return sorted(schema["name"] for schema in world.global_commands)


def build_options(
    world: World,
    base_url: str,
    schema: dict[str, Any],
    path: list[str],
    values: dict[str, Any],
    focused: str | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return (options, resolved) for a command path such as ["add"] under /voice."""
    resolved: dict[str, Any] = {}
    if path:
        sub = next((o for o in schema.get("options", []) if o["name"] == path[0]), None)
        if sub is None or sub["type"] not in (SUBCOMMAND, GROUP):
            raise UnknownCommand(f"no subcommand {path[0]!r} in /{schema['name']}")
        inner, resolved = build_options(world, base_url, sub, path[1:], values, focused)
        return [{"name": sub["name"], "type": sub["type"], "options": inner}], resolved
    declared = {o["name"]: o for o in schema.get("options", [])}
    options = []
    for key, value in values.items():
        if key not in declared:
            raise UnknownCommand(f"/{schema['name']} has no option {key!r}")
        kind = declared[key]["type"]
        option: dict[str, Any] = {"name": key, "type": kind, "value": value}
        if kind == ATTACHMENT:
            att: Attachment = value
            option["value"] = str(att.id)
            resolved.setdefault("attachments", {})[str(att.id)] = payloads.attachment(base_url, att)
        elif kind == USER:
            who: User = value
            option["value"] = str(who.id)
            resolved.setdefault("users", {})[str(who.id)] = payloads.user(who)
        if key == focused:
            option["focused"] = True
        options.append(option)
    return options, resolved


def context_fields(
    world: World, user: User, channel: Channel, user_install: bool
) -> dict[str, Any]:
    """Return the guild/DM/install fields of an interaction in `channel`."""
    fields: dict[str, Any] = {
        "channel_id": str(channel.id),
        "channel": payloads.channel(world, channel),
    }
    if channel.is_dm:
        fields["user"] = payloads.user(user)
        fields["context"] = BOT_DM_CONTEXT
        fields["authorizing_integration_owners"] = {"0": "0"}
        return fields
    guild = world.guilds[channel.guild_id or 0]
    fields["guild_id"] = str(guild.id)
    fields["guild_locale"] = "en-US"
    fields["member"] = payloads.member(world, guild, user)
    fields["context"] = GUILD_CONTEXT
    if user_install or not guild.bot_installed:
        fields["authorizing_integration_owners"] = {"1": str(user.id)}
        fields["guild"] = {"id": str(guild.id), "locale": "en-US", "features": []}
    else:
        fields["authorizing_integration_owners"] = {"0": str(guild.id)}
    return fields


def new_interaction(
    world: World,
    kind: int,
    user: User,
    channel: Channel,
    data: dict[str, Any],
    user_install: bool = False,
    message: dict[str, Any] | None = None,
) -> Interaction:
    """Create, remember and return an interaction (not yet dispatched)."""
    size_limit = world.upload_limit(channel)
    interaction_id = world.ids.next()
    token = f"aW50ZXJhY3Rpb246{interaction_id}:{secrets.token_urlsafe(48)}"
    payload: dict[str, Any] = {
        "id": str(interaction_id),
        "application_id": str(world.application_id),
        "type": kind,
        "data": data,
        "token": token,
        "version": 1,
        "locale": "en-US",
        "app_permissions": str(MEMBER_PERMISSIONS),
        "entitlements": [],
        "attachment_size_limit": size_limit,
        **context_fields(world, user, channel, user_install),
    }
    if message is not None:
        payload["message"] = message
    interaction = Interaction(
        id=interaction_id,
        token=token,
        type=kind,
        user_id=user.id,
        channel_id=channel.id,
        guild_id=channel.guild_id,
        created_at=world.clock.now(),
        sent_monotonic=time.monotonic(),
        size_limit=size_limit,
        payload=payload,
    )
    if message is not None:
        interaction.original_id = int(message["id"])
    world.interactions[interaction.id] = interaction
    world.interactions_by_token[token] = interaction
    return interaction


def slash_data(
    world: World,
    base_url: str,
    command: str,
    values: dict[str, Any],
    focused: str | None = None,
) -> dict[str, Any]:
    """Return the `data` of a slash command such as "voice add" with option values."""
    name, *path = command.split()
    schema = find_schema(world, name)
    options, resolved = build_options(world, base_url, schema, path, values, focused)
    data: dict[str, Any] = {"id": schema["id"], "name": name, "type": 1, "options": options}
    if resolved:
        data["resolved"] = resolved
    return data


def component_data(message: Message, custom_id: str) -> dict[str, Any]:
    """Return the `data` of a button press on `message`."""
    known = [c.get("custom_id") for row in message.components for c in row.get("components", [])]
    if custom_id not in known:
        raise UnknownCommand(f"message {message.id} has no button {custom_id!r}; it has {known}")
    return {"custom_id": custom_id, "component_type": 2}
