"""Storage on the local file system: temp file + rename for every write."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from jayavatar.errors import Misconfigured, NotFound
from storage.keys import validate_key

TMP = ".tmp"


class LocalStorage:
    """Blobs as files under one root folder; temp files live in `<root>/.tmp`."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.tmp = self.root / TMP
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            # A data folder that is a file or read-only must read as one line, not a traceback.
            raise Misconfigured(
                f"the storage folder {root} cannot be used: {exc.strerror}"
            ) from None

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        # validate_key already forbids escapes; this guards against symlinks planted inside.
        if self.root not in path.parents:
            raise NotFound(f"no such item: {key}")
        return path

    def _temp(self) -> Path:
        return self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}"

    def put_file(self, key: str, src: Path) -> None:
        """Store a copy of a local file under `key`, atomically."""
        dest = self._path(key)
        tmp = self._temp()
        try:
            shutil.copyfile(src, tmp)
            _fsync(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, atomically."""
        dest = self._path(key)
        tmp = self._temp()
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        """Return the bytes under `key`; `NotFound` if absent."""
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"no such item: {key}")
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        """Tell whether a blob or folder exists under `key`."""
        return self._path(key).exists()

    def size(self, key: str) -> int:
        """Return the size in bytes of the blob under `key`."""
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"no such item: {key}")
        return path.stat().st_size

    def local_path(self, key: str) -> Path:
        """Return the path of the blob or folder under `key` (it may not exist)."""
        return self._path(key)

    def publish_dir(self, prefix: str, src_dir: Path) -> None:
        """Replace the folder `prefix` with a copy of `src_dir`, atomically for readers."""
        dest = self._path(prefix)
        staged = self._temp()
        old = self._temp()
        try:
            shutil.copytree(src_dir, staged)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                os.replace(dest, old)
            os.replace(staged, dest)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)

    def delete(self, key: str) -> bool:
        """Delete one blob; return whether it existed."""
        path = self._path(key)
        if not path.is_file():
            return False
        path.unlink()
        self._prune(path.parent)
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete a folder and everything in it; return the number of files removed."""
        path = self._path(prefix)
        if not path.exists():
            return 0
        if path.is_file():
            path.unlink()
            self._prune(path.parent)
            return 1
        count = sum(1 for p in path.rglob("*") if p.is_file())
        doomed = self._temp()
        os.replace(path, doomed)  # vanish at once for readers, then remove at leisure
        shutil.rmtree(doomed, ignore_errors=True)
        self._prune(path.parent)
        return count

    def list(self, prefix: str) -> list[str]:
        """Return the keys of all blobs under a folder, sorted."""
        path = self._path(prefix)
        if not path.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in path.rglob("*") if p.is_file())

    def scratch_dir(self) -> Path:
        """Return a fresh private folder for work in progress on the same file system."""
        return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self.tmp))

    def sweep_orphans(self) -> int:
        """Remove temp items left by processes that no longer exist; return how many."""
        removed = 0
        for item in self.tmp.iterdir():
            pid = item.name.split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(True)
                removed += 1
        return removed

    def _prune(self, folder: Path) -> None:
        # Empty parent folders of removed items would otherwise pile up as orphans.
        while folder != self.root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
