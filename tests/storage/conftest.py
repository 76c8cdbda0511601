"""The storage backends under test: the local folder and a bucket on an S3 server process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.base import Storage
from storage.local import LocalStorage
from tests.support.s3server import ACCESS_KEY, SECRET_KEY, S3Server

BUCKET = "contract"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One S3 server process for the storage tests, with the bucket `contract`."""
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    try:
        server.make_bucket(BUCKET)
        yield server
    finally:
        server.stop()


def make_s3(server: S3Server, folder: Path, **cache: int) -> Storage:
    """Return an S3 backend on a fresh prefix of the test bucket, caching under `folder`."""
    from storage.cache import ReadCache
    from storage.s3 import S3Storage
    from storage.s3check import S3Config

    config = S3Config(
        endpoint_url=server.url,
        bucket=BUCKET,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        prefix=f"t{uuid.uuid4().hex[:8]}",
    )
    read_cache = ReadCache(
        folder / "cache", cache.get("max_bytes", 1 << 30), cache.get("min_age_s", 0)
    )
    store = S3Storage(config, folder / "cache", read_cache)
    store.check()
    return store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each backend in turn, empty."""
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    return make_s3(request.getfixturevalue("s3_server"), tmp_path)
