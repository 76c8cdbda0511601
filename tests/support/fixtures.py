"""Pytest fixtures for the real stack; import them into a test module's namespace to use them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A redis-server and one voice and one lip-sync worker, shared by a test module."""
    with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[object]:
    """A JobClient connected to the stack."""
    from jobs.client import JobClient

    job_client = await JobClient.connect(stack.settings())  # type: ignore[arg-type]
    try:
        yield job_client
    finally:
        await job_client.close()


@asynccontextmanager
async def alice_client(redis_url: str, data_dir: Path, prefix: str) -> AsyncIterator[Any]:
    """A JobClient on an emptied Redis where user alice has a voice and an avatar named "me"."""
    from jayavatar.settings import Settings
    from jobs.client import JobClient

    settings = Settings(redis_url=redis_url, data_dir=data_dir, key_prefix=prefix)
    job_client = await JobClient.connect(settings)
    try:
        await job_client.redis.flushdb()
        for kind in ("voice", "avatar"):
            job_client.storage.put_bytes(f"{kind}s/alice/me/meta.json", b"{}")
            await job_client.accounts.register(kind, "alice", "me", {})
        yield job_client
    finally:
        await job_client.close()


@asynccontextmanager
async def line_client(redis_url: str, data_dir: Path, users: tuple[str, ...]) -> AsyncIterator[Any]:
    """A JobClient on an emptied Redis with its own queues; each user has a voice and an avatar.

    Quotas and concurrency are high enough for a long line of requests.
    """
    from jayavatar.settings import Settings
    from jobs.client import JobClient

    settings = Settings(
        redis_url=redis_url,
        data_dir=data_dir,
        key_prefix="q",
        voice_queue="q:voice",
        lipsync_queue="q:lipsync",
        max_concurrent=2000,
        daily_quota=5000,
    )
    job_client = await JobClient.connect(settings)
    try:
        await job_client.redis.flushdb()
        for user in users:
            for kind in ("voice", "avatar"):
                job_client.storage.put_bytes(f"{kind}s/{user}/me/meta.json", b"{}")
                await job_client.accounts.register(kind, user, "me", {})
        yield job_client
    finally:
        await job_client.close()
