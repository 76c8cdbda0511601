"""Fixtures of the API tests: a private redis-server, settings on it, keys, a live server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.keys import ApiKeys
from jayavatar.settings import Settings
from jobs.client import JobClient
from tests.api.live import live_server, make_settings
from tests.support.stack import RedisProcess


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on a spare port, for tests that need no workers."""
    proc = RedisProcess(tmp_path_factory.mktemp("redis"))
    proc.start()
    try:
        yield proc.url
    finally:
        proc.stop()


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    """Settings on the private Redis with a fresh key prefix and data folder."""
    return make_settings(redis_url, tmp_path / "data", max_sample_bytes=64 * 1024)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[JobClient]:
    """A JobClient on the test settings."""
    job_client = await JobClient.connect(settings)
    try:
        yield job_client
    finally:
        await job_client.close()


@pytest.fixture
def keys(client: JobClient, settings: Settings) -> ApiKeys:
    """The key store on the test settings."""
    return ApiKeys(client.redis, settings, client.accounts)


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    """The API served over HTTP; yields its base URL."""
    with live_server(settings) as base:
        yield base


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client wired straight to the app (lifespan run), for tests that need no server."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


@pytest.fixture
async def alice(keys: ApiKeys) -> str:
    """A user key's token."""
    token, _ = await keys.create("alice")
    return token


@pytest.fixture
async def bob(keys: ApiKeys) -> str:
    """Another user's key token."""
    token, _ = await keys.create("bob")
    return token


@pytest.fixture
async def root(keys: ApiKeys) -> str:
    """An admin key's token."""
    token, _ = await keys.create("root", admin=True)
    return token
