"""The storage Protocol: what every backend offers to the jobs, bot and API."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Storage(Protocol):
    """Keyed blobs and folders; every write is atomic and every key is validated."""

    def put_file(self, key: str, src: Path) -> None:
        """Store a copy of a local file under `key`, atomically."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, atomically."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Return the bytes under `key`; `NotFound` if absent."""
        ...

    def exists(self, key: str) -> bool:
        """Tell whether a blob or folder exists under `key`."""
        ...

    def size(self, key: str) -> int:
        """Return the size in bytes of the blob under `key`."""
        ...

    def local_path(self, key: str) -> Path:
        """Return a local path to read the blob or folder under `key` from."""
        ...

    def publish_dir(self, prefix: str, src_dir: Path) -> None:
        """Replace the folder `prefix` with a copy of `src_dir`, atomically."""
        ...

    def delete(self, key: str) -> bool:
        """Delete one blob; return whether it existed."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete a folder and everything in it; return the number of files removed."""
        ...

    def list(self, prefix: str) -> list[str]:
        """Return the keys of all blobs under a folder, sorted."""
        ...

    def scratch_dir(self) -> Path:
        """Return a fresh private folder for work in progress on the same file system."""
        ...
