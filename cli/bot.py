"""`jayavatar bot`: run the Discord bot (registered on the `jayavatar` group in `cli.main`)."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from jayavatar.errors import Misconfigured
from jayavatar.settings import Settings


@click.command("bot")
@click.option("--check", is_flag=True, help="Exit 0 if a running bot reported in lately (health).")
@click.pass_obj
def bot(settings: Settings, check: bool) -> None:
    """Run the Discord bot until stopped (SIGINT/SIGTERM)."""
    if check:
        sys.exit(0 if alive(settings) else 1)
    from bot.app import run

    # The service log goes to stdout; stderr carries only the one-line error a person must read.
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    logging.getLogger("discord.gateway").setLevel(logging.INFO)
    # The bot never joins voice channels, so the missing voice libraries are not news.
    logging.getLogger("discord.client").addFilter(
        lambda record: "voice will NOT be supported" not in record.getMessage()
    )
    import discord

    try:
        asyncio.run(run(settings))
    except discord.LoginFailure:
        raise Misconfigured(
            "Discord refused the bot token; set a valid JAYAVATAR_DISCORD_TOKEN"
        ) from None


def alive(settings: Settings) -> bool:
    """Tell whether a bot is connected to Discord and delivering (its heartbeat key is fresh)."""
    import redis

    from jobs import keys

    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=3)
        return bool(client.exists(keys.bot(settings, "alive")))
    except (redis.RedisError, OSError):
        return False
