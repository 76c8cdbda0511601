"""Fixtures of the bad-input corpus: a Redis-only stack and a client on it with two users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from jobs.client import JobClient
from tests.support.stack import RedisProcess, Stack

ALICE, BOB = "discord-1001", "discord-1002"
SAMPLE_CAP = 64 * 1024


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis only: requests are queued but never run; uploads are capped at 64 KiB."""
    folder = tmp_path_factory.mktemp("abuse")
    server = RedisProcess(folder / "redis")
    server.start()
    stack = Stack(folder, server, extra_env={"JAYAVATAR_MAX_SAMPLE_BYTES": str(SAMPLE_CAP)})
    yield stack
    stack.stop()


@pytest.fixture
async def jc(bare: Stack) -> AsyncIterator[JobClient]:
    """A client on an emptied Redis and storage where Alice and Bob each own a voice and avatar."""
    client = await JobClient.connect(bare.settings())  # type: ignore[arg-type]
    await client.redis.flushdb()
    for top in ("voices", "avatars", "uploads", "renders", "work"):
        client.storage.delete_prefix(top)
    for user in (ALICE, BOB):
        for kind in ("voice", "avatar"):
            client.storage.put_bytes(f"{kind}s/{user}/mine/meta.json", b"{}")
            await client.accounts.register(kind, user, "mine", {})
    yield client
    await client.close()
