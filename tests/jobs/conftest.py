"""Fixtures shared by the jobs tests: a private redis-server per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import RedisProcess


@pytest.fixture(scope="module")
def redis_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A redis-server of this test module's own, stopped after its last test."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    server = RedisProcess(tmp_path_factory.mktemp(f"{module}-redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
