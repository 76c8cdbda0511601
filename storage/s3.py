"""Storage in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, SeaweedFS, Garage).

Every write is one object PUT, or a multipart upload for large files, which S3 makes visible
only when complete: a key is there whole or not at all. A published folder is its files plus a
manifest object written last that lists each file's ETag; readers fetch a folder only through
its manifest, so they see the old folder or the new one, never a mix. Reads go through a
per-host `ReadCache`, keyed by ETag, so a prepared avatar is downloaded once per host.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from jayavatar.errors import NotFound, TransientError
from storage.cache import ReadCache, sweep_dead
from storage.keys import validate_key
from storage.s3check import S3Config, check_bucket, is_missing

MANIFEST = ".manifest"  # not a valid key segment, so no stored key can collide with it
# Multipart above 64 MiB: each part is retried alone, and S3 shows the object only once complete.
MULTIPART_BYTES = 64 * 1024**2
STALE_RETRIES = 3
CHUNK = 1024 * 1024


class _Stale(Exception):
    """An object changed between reading its version and its bytes (a concurrent publish)."""


class S3Storage:
    """Blobs as objects in one bucket; local reads through a bounded per-host cache."""

    def __init__(
        self,
        config: S3Config,
        work_dir: Path,
        cache: ReadCache,
        multipart_bytes: int = MULTIPART_BYTES,
    ) -> None:
        self.config = config
        part = max(multipart_bytes // 4, 5 * 1024**2)  # S3's smallest part is 5 MiB
        self.transfer = TransferConfig(
            multipart_threshold=multipart_bytes, multipart_chunksize=part
        )
        self.bucket = config.bucket
        self.prefix = config.prefix.strip("/") + "/" if config.prefix.strip("/") else ""
        self.cache = cache
        self.tmp = work_dir.resolve() / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint_url or None,
            region_name=config.region,
            aws_access_key_id=config.access_key_id or None,
            aws_secret_access_key=config.secret_access_key or None,
            config=Config(
                s3={"addressing_style": config.addressing_style},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    def check(self) -> None:
        """Raise `BadInput` with one line if the bucket cannot be used from this host."""
        check_bucket(self.client, self.config, self.prefix)

    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def put_file(self, key: str, src: Path) -> None:
        """Store a copy of a local file under `key`, atomically (multipart when large)."""
        name = self._name(key)
        with _errors(key):
            self.client.upload_file(str(src), self.bucket, name, Config=self.transfer)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, atomically."""
        name = self._name(key)
        with _errors(key):
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data)

    def get_bytes(self, key: str) -> bytes:
        """Return the bytes under `key`; `NotFound` if absent."""
        name = self._name(key)
        with _errors(key):
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        """Tell whether a blob or folder exists under `key`."""
        if self._head(key) is not None:
            return True
        with _errors(key):
            page = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=self._name(key) + "/", MaxKeys=1
            )
        return int(page.get("KeyCount", 0)) > 0

    def size(self, key: str) -> int:
        """Return the size in bytes of the blob under `key`."""
        head = self._head(key)
        if head is None:
            raise NotFound(f"no such item: {key}")
        return int(head["ContentLength"])

    def local_path(self, key: str) -> Path:
        """Return a local copy of the blob or published folder under `key` (it may not exist)."""
        for _attempt in range(STALE_RETRIES):
            try:
                return self._local_path(key)
            except _Stale:
                continue  # republished while this host read it: read the new version
        raise TransientError(f"{key} kept changing while it was read; try again")

    def _local_path(self, key: str) -> Path:
        head = self._head(key)
        if head is not None:
            etag, size = head["ETag"], int(head["ContentLength"])
            return self.cache.get(key, etag, lambda dest: self._download(key, etag, size, dest))
        found = self._manifest(key)
        if found is None:
            return self.cache.missing(key)
        tag, files = found
        return self.cache.get(key, tag, lambda dest: self._download_dir(key, files, dest))

    def publish_dir(self, prefix: str, src_dir: Path) -> None:
        """Replace the folder `prefix` with a copy of `src_dir`; the manifest goes last."""
        files = sorted(p for p in src_dir.rglob("*") if p.is_file())
        keys = {p.relative_to(src_dir).as_posix(): p for p in files}
        for rel in keys:
            validate_key(f"{prefix}/{rel}")  # refuse before anything is written
        before = set(self.list(prefix))
        listed: dict[str, dict[str, Any]] = {}
        for rel, path in keys.items():
            self.put_file(f"{prefix}/{rel}", path)
            head = self._head(f"{prefix}/{rel}")
            if head is None:
                raise TransientError(f"{prefix}/{rel} vanished right after it was stored")
            listed[rel] = {"etag": head["ETag"], "size": int(head["ContentLength"])}
        manifest = json.dumps({"files": listed}, sort_keys=True).encode()
        with _errors(prefix):
            self.client.put_object(
                Bucket=self.bucket, Key=self._manifest_name(prefix), Body=manifest
            )
        stale = sorted(before - {f"{prefix}/{rel}" for rel in keys})
        self._delete_names([self._name(k) for k in stale])

    def delete(self, key: str) -> bool:
        """Delete one blob; return whether it existed."""
        if self._head(key) is None:
            return False
        with _errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        self.cache.drop(key)
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete a folder and everything in it; return the number of files removed."""
        name = self._name(prefix)
        every = list(self._names(name + "/"))
        manifests = [n for n in every if n.endswith("/" + MANIFEST)]
        names = [n for n in every if not n.endswith("/" + MANIFEST)]
        if self._head(prefix) is not None:
            names.append(name)
        # Manifests go first, so readers stop seeing the folders before their files go.
        self._delete_names(manifests)
        self._delete_names(names)
        self.cache.drop(prefix)
        return len(names)

    def list(self, prefix: str) -> list[str]:
        """Return the keys of all blobs under a folder, sorted."""
        name = self._name(prefix) + "/"
        found = (n[len(self.prefix) :] for n in self._names(name))
        return sorted(k for k in found if not k.endswith("/" + MANIFEST))

    def scratch_dir(self) -> Path:
        """Return a fresh private folder for work in progress on this host."""
        return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self.tmp))

    def sweep_orphans(self) -> int:
        """Remove temp items of dead processes, in scratch and in the cache; return how many."""
        return self.cache.sweep_orphans() + sweep_dead(self.tmp)

    # Helpers ------------------------------------------------------------------------------

    def _manifest_name(self, prefix: str) -> str:
        return f"{self._name(prefix)}/{MANIFEST}"

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            with _errors(key):
                head: dict[str, Any] = self.client.head_object(
                    Bucket=self.bucket, Key=self._name(key)
                )
                return head
        except NotFound:
            return None

    def _manifest(self, prefix: str) -> tuple[str, dict[str, dict[str, Any]]] | None:
        try:
            with _errors(prefix):
                got = self.client.get_object(Bucket=self.bucket, Key=self._manifest_name(prefix))
                body = got["Body"].read()
        except NotFound:
            return None
        files = json.loads(body)["files"]
        return str(got["ETag"]), files

    def _download(self, key: str, etag: str, size: int, dest: Path) -> None:
        """Write version `etag` of `key` to `dest`; `_Stale` if the object changed meanwhile."""
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._name(key), IfMatch=etag)
        except ClientError as exc:
            if is_missing(exc) or _code(exc) in ("PreconditionFailed", "412"):
                raise _Stale(key) from None
            raise TransientError(f"cannot read {key} from the object store: {_code(exc)}") from exc
        except BotoCoreError as exc:
            raise TransientError(f"cannot read {key} from the object store: {exc}") from exc
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "wb") as fh:
            for chunk in got["Body"].iter_chunks(CHUNK):
                fh.write(chunk)
        if dest.stat().st_size != size:
            raise _Stale(key)

    def _download_dir(self, prefix: str, files: dict[str, dict[str, Any]], dest: Path) -> None:
        dest.mkdir(parents=True)
        for rel, info in sorted(files.items()):
            self._download(f"{prefix}/{rel}", info["etag"], int(info["size"]), dest / rel)

    def _names(self, start: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        with _errors(start):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    yield str(item["Key"])

    def _delete_names(self, names: Sequence[str]) -> None:
        for start in range(0, len(names), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": n} for n in names[start : start + 1000]]
            with _errors(names[start]):
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )


@contextmanager
def _errors(key: str) -> Iterator[None]:
    """Map client errors: a missing key to `NotFound`, the rest to `TransientError`."""
    try:
        yield
    except ClientError as exc:
        if is_missing(exc):
            raise NotFound(f"no such item: {key}") from None
        raise TransientError(f"the object store refused {key}: {_code(exc)}") from exc
    except BotoCoreError as exc:
        raise TransientError(f"cannot reach the object store: {exc}") from exc


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "unknown"))
