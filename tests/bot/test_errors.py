"""What a Discord user reads when something goes wrong."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from discord import app_commands

from bot.errors import BUSY, message_for
from jayavatar.errors import BadInput, TransientError
from jayavatar.settings import Settings
from jobs.client import JobClient
from tests.support.stack import RedisProcess


def test_a_user_error_is_shown_as_it_is() -> None:
    assert message_for(BadInput("no voice named 'x'")) == "no voice named 'x'"


def test_redis_down_reads_busy_try_again_shortly(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    settings = Settings(redis_url=redis.url, data_dir=tmp_path, key_prefix="errs")

    async def submit_while_down() -> TransientError:
        client = await JobClient.connect(settings)
        redis.kill()
        try:
            with pytest.raises(TransientError) as caught:
                await client.submit_render("alice", "hello")
            return caught.value
        finally:
            await client.close()

    try:
        exc = asyncio.run(submit_while_down())
    finally:
        redis.stop()
    wrapped = app_commands.CommandInvokeError.__new__(app_commands.CommandInvokeError)
    wrapped.original = exc
    wrapped.__cause__ = exc
    assert message_for(exc) == BUSY
    assert message_for(wrapped) == BUSY


def test_other_passing_faults_keep_their_message() -> None:
    text = message_for(TransientError("could not download x"))
    assert text.endswith("could not download x") and text != BUSY
