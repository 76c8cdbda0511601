"""`jayavatar bot`: run the Discord bot (registered on the `jayavatar` group in `jayavatar.cli`)."""

from __future__ import annotations

import asyncio
import logging

import click

from jayavatar.settings import Settings


@click.command("bot")
@click.pass_obj
def bot(settings: Settings) -> None:
    """Run the Discord bot until stopped (SIGINT/SIGTERM)."""
    from bot.app import run

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("discord.gateway").setLevel(logging.INFO)
    asyncio.run(run(settings))
