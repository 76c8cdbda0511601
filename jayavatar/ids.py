"""User identities, built and read only here.

A request, voice or avatar belongs to a user id: `local` for the operator on the server itself
(CLI, demo, admin actions run from Discord on the operator's behalf), `discord-<snowflake>` for a
Discord account. API keys name their user freely (see `storage.keys.validate_user`).
"""

from __future__ import annotations

#: The operator on the server; always an admin.
LOCAL = "local"
DISCORD_PREFIX = "discord-"


def discord_user(snowflake: int) -> str:
    """Return the user id of a Discord account."""
    return f"{DISCORD_PREFIX}{snowflake}"


def discord_snowflake(user: str) -> int | None:
    """Return the Discord id inside a user id, or None for users that are not Discord accounts."""
    tail = user.removeprefix(DISCORD_PREFIX)
    return int(tail) if tail != user and tail.isdigit() else None


def is_local(user: str) -> bool:
    """Tell whether `user` is the operator on the server."""
    return user == LOCAL
