"""The S3 backend beyond the shared contract: manifests, multipart, the per-host read cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from storage.cache import ReadCache
from storage.s3 import MANIFEST, S3Storage
from tests.storage.conftest import BUCKET, make_s3
from tests.support.s3server import ACCESS_KEY, SECRET_KEY, S3Server
from tests.support.stack import ROOT

MIB = 1024 * 1024

# A second process on the same host: same bucket prefix, same cache folder.
CHILD = """
import json, sys
from pathlib import Path
from storage.cache import ReadCache
from storage.s3 import S3Storage
from storage.s3check import S3Config
args = json.loads(sys.argv[1])
cache = ReadCache(Path(args["cache"]), 1 << 30, 0)
store = S3Storage(S3Config(**args["config"]), Path(args["cache"]), cache)
print(store.local_path(args["key"]))
"""


def test_a_folder_without_its_manifest_is_not_readable(s3_server: S3Server, tmp_path: Path) -> None:
    store: Any = make_s3(s3_server, tmp_path)
    store.put_bytes("avatars/u/half/clip.mp4", b"written by a publisher that died")
    assert not store.local_path("avatars/u/half").exists()
    src = tmp_path / "src"
    src.mkdir()
    (src / "clip.mp4").write_bytes(b"whole")
    store.publish_dir("avatars/u/half", src)
    assert (store.local_path("avatars/u/half") / "clip.mp4").read_bytes() == b"whole"
    listed = s3_server.client().list_objects_v2(Bucket=BUCKET, Prefix=store.prefix)  # type: ignore[attr-defined]
    names = [item["Key"] for item in listed["Contents"]]
    assert f"{store.prefix}avatars/u/half/{MANIFEST}" in names
    assert store.list("avatars/u/half") == ["avatars/u/half/clip.mp4"]


def test_large_files_go_up_in_parts_and_come_back_whole(
    s3_server: S3Server, tmp_path: Path
) -> None:
    base: Any = make_s3(s3_server, tmp_path)
    store = S3Storage(base.config, tmp_path / "cache", base.cache, multipart_bytes=5 * MIB)
    big = tmp_path / "source.mp4"
    big.write_bytes(os.urandom(11 * MIB))
    key = "uploads/" + "c" * 32 + "/source.mp4"
    store.put_file(key, big)
    head = s3_server.client().head_object(Bucket=BUCKET, Key=store.prefix + key)  # type: ignore[attr-defined]
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 1 MiB: a multipart upload
    assert store.local_path(key).read_bytes() == big.read_bytes()


def test_a_republished_folder_is_a_new_version_and_the_old_stays_whole(
    s3_server: S3Server, tmp_path: Path
) -> None:
    store: Any = make_s3(s3_server, tmp_path)
    for version in (b"one", b"two"):
        src = tmp_path / version.decode()
        src.mkdir()
        (src / "clip.mp4").write_bytes(version)
        store.publish_dir("avatars/u/me", src)
        if version == b"one":
            old = store.local_path("avatars/u/me")
    new = store.local_path("avatars/u/me")
    assert new != old
    assert (old / "clip.mp4").read_bytes() == b"one"  # a render that holds it keeps reading it
    assert (new / "clip.mp4").read_bytes() == b"two"
    assert store.local_path("avatars/u/me") == new  # reused, not fetched again


def test_two_processes_fetch_one_key_once(s3_server: S3Server, tmp_path: Path) -> None:
    store: Any = make_s3(s3_server, tmp_path)
    key = "avatars/u/shared/clip.mp4"
    store.put_bytes(key, os.urandom(8 * MIB))
    args = json.dumps(
        {
            "cache": str(tmp_path / "cache"),
            "key": key,
            "config": {
                "endpoint_url": s3_server.url,
                "bucket": BUCKET,
                "region": "us-east-1",
                "access_key_id": ACCESS_KEY,
                "secret_access_key": SECRET_KEY,
                "prefix": store.config.prefix,
            },
        }
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, args], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    paths = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(paths) == 1
    assert Path(paths.pop()).read_bytes() == store.get_bytes(key)
    log = (s3_server.folder / "s3.log").read_text()
    assert log.count(f'"GET /{BUCKET}/{store.prefix}{key}') == 2  # one fetch + get_bytes above
    assert list(store.cache.tmp.iterdir()) == []


def test_the_cache_keeps_to_its_size_least_recently_used_first(
    s3_server: S3Server, tmp_path: Path
) -> None:
    store: Any = make_s3(s3_server, tmp_path, max_bytes=int(2.5 * MIB), min_age_s=0)
    for name in ("a", "b", "c"):
        store.put_bytes(f"renders/u/{name}.mp4", os.urandom(MIB))
    first = store.local_path("renders/u/a.mp4")
    second = store.local_path("renders/u/b.mp4")
    store.local_path("renders/u/a.mp4")  # used again: now b is the least recently used
    store.local_path("renders/u/c.mp4")
    assert store.cache.used_bytes() <= 2.5 * MIB
    assert first.exists() and not second.exists()
    assert list(store.cache.tmp.iterdir()) == []


def test_entries_in_use_are_not_evicted(s3_server: S3Server, tmp_path: Path) -> None:
    store: Any = make_s3(s3_server, tmp_path, max_bytes=MIB, min_age_s=3600)
    for name in ("a", "b"):
        store.put_bytes(f"renders/u/{name}.mp4", os.urandom(MIB))
    paths = [store.local_path(f"renders/u/{name}.mp4") for name in ("a", "b")]
    assert all(p.exists() for p in paths)  # over the bound, but both were used just now


def test_deleting_drops_this_hosts_cached_copies(s3_server: S3Server, tmp_path: Path) -> None:
    store: Any = make_s3(s3_server, tmp_path)
    store.put_bytes("renders/u/r.mp4", b"private")
    cached = store.local_path("renders/u/r.mp4")
    store.delete_prefix("renders/u")
    assert not cached.exists()
    assert ReadCache(tmp_path / "cache", 0, 0).used_bytes() == 0
