"""User ids: built and read in one place."""

from __future__ import annotations

from jayavatar import ids


def test_discord_ids_round_trip_and_others_are_not_discord() -> None:
    user = ids.discord_user(123456789012345678)
    assert user == "discord-123456789012345678"
    assert ids.discord_snowflake(user) == 123456789012345678
    for other in ("local", "carol", "discord-", "discord-12a", "xdiscord-12"):
        assert ids.discord_snowflake(other) is None, other


def test_only_the_operator_is_local() -> None:
    assert ids.is_local(ids.LOCAL) and ids.LOCAL == "local"
    assert not ids.is_local("discord-1") and not ids.is_local("Local")
