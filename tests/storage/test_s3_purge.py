"""Purging a user on the S3 backend: no object in the bucket and no cached copy mentions them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.client import JobClient
from tests.auth.test_purge import GONE, STAYS, give, live_a_little
from tests.support.s3server import S3Server
from tests.support.stack import RedisProcess

BUCKET = "purge"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, S3Server]]:
    """Redis and an S3 server with the bucket `purge`."""
    folder = tmp_path_factory.mktemp("s3purge")
    red = RedisProcess(folder / "redis")
    red.start()
    s3 = S3Server(folder / "s3")
    s3.start()
    s3.make_bucket(BUCKET)
    try:
        yield red.url, s3
    finally:
        s3.stop()
        red.stop()


@pytest.fixture
async def jc(servers: tuple[str, S3Server], tmp_path: Path) -> AsyncIterator[JobClient]:
    """A client whose storage is the bucket, with its own cache folder."""
    from jayavatar.settings import Settings

    url, s3 = servers
    fields: dict[str, Any] = {
        k.removeprefix("JAYAVATAR_").lower(): v for k, v in s3.env(BUCKET).items()
    }
    settings = Settings(redis_url=url, data_dir=tmp_path / "front", key_prefix="p", **fields)
    client = await JobClient.connect(settings)
    await client.redis.flushdb()
    try:
        yield client
    finally:
        await client.close()


async def test_purge_removes_every_object_of_the_user(
    jc: JobClient, servers: tuple[str, S3Server], tmp_path: Path
) -> None:
    await give(jc, STAYS, "me")
    ids = await live_a_little(jc, GONE, STAYS, tmp_path)
    folder = tmp_path / "prepared"
    (folder / "track").mkdir(parents=True)
    (folder / "clip.mp4").write_bytes(b"clip")
    (folder / "track" / "faces.npz").write_bytes(b"track")
    jc.storage.publish_dir(f"avatars/{GONE}/me", folder)
    cached = jc.storage.local_path(f"avatars/{GONE}/me")
    assert (cached / "track" / "faces.npz").exists()

    await jc.purge_user(GONE)

    listed = servers[1].client().list_objects_v2(Bucket=BUCKET)  # type: ignore[attr-defined]
    names = [item["Key"] for item in listed.get("Contents", [])]
    assert [n for n in names if any(needle in n for needle in (GONE, *ids))] == []
    assert f"voices/{STAYS}/me/meta.json" in names
    assert not cached.exists()
    left = [p for p in (tmp_path / "front" / "cache").rglob("*") if GONE in str(p)]
    assert left == []
