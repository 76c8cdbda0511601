"""Fixtures of the bot tests: a fake Discord, its people, and the real bot process.

Each module picks its `stack`: `redis_stack` (requests stay queued) or `worker_stack` (real
voice and lip-sync workers). `bot` runs `jayavatar bot` against that stack.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.bot.harness import BotProcess, People, make_people, start_bot
from tests.fakediscord.server import FakeDiscord
from tests.support.stack import RedisProcess, Stack


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDiscord]:
    """A fake Discord on 127.0.0.1 for the whole module."""
    server = FakeDiscord().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def people(fake: FakeDiscord) -> People:
    """The users and servers of the fake Discord."""
    return make_people(fake)


@pytest.fixture(scope="module")
def redis_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A redis-server and no workers: requests stay queued."""
    folder = tmp_path_factory.mktemp("stack")
    redis = RedisProcess(folder / "redis")
    redis.start()
    try:
        yield Stack(folder, redis)
    finally:
        redis.stop()


@pytest.fixture(scope="module")
def worker_stack(redis_stack: Stack) -> Iterator[Stack]:
    """Redis plus one voice and one lip-sync worker (started by `tests.support.stack`)."""
    try:
        redis_stack.start_worker("voice")
        redis_stack.start_worker("lipsync")
        yield redis_stack
    finally:
        for worker in redis_stack.workers.values():
            worker.kill(signal.SIGKILL)


@pytest.fixture(scope="module")
def bot(stack: Stack, fake: FakeDiscord, people: People) -> Iterator[BotProcess]:
    """The real bot process, connected and with its commands synced."""
    process = start_bot(stack, fake, people)
    try:
        yield process
    finally:
        process.kill(signal.SIGKILL)
