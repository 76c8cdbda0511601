"""A per-host read-through cache of stored objects: bounded, versioned, shared by processes.

An entry is one version of one key: `<root>/entries/<key>/@<tag>/<last segment of key>`, where
the tag names the version (the object's ETag, or the folder manifest's). A new version of a key
is a new entry, so a path handed out never changes under its reader. Entries are filled under a
per-key file lock in `<root>/.tmp` and renamed into place whole, so two processes fetching the
same key fetch it once and neither ever sees half a file. Least recently used entries go first
once the cache is over its size, except entries used in the last `min_age_s` seconds (a render
may still read them).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from jayavatar.errors import BadInput
from storage.keys import validate_key

TAG_MARK = "@"


class ReadCache:
    """Local copies of remote keys, at most `max_bytes` of them (entries in use excepted)."""

    def __init__(self, root: Path, max_bytes: int, min_age_s: float) -> None:
        self.root = root.resolve()
        self.entries = self.root / "entries"
        self.tmp = self.root / ".tmp"
        self.locks = self.root / ".locks"
        self.max_bytes = max_bytes
        self.min_age_s = min_age_s
        try:
            for folder in (self.entries, self.tmp, self.locks):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(f"the cache folder {root} cannot be used: {exc.strerror}") from None

    def entry(self, key: str, tag: str) -> Path:
        """Return where version `tag` of `key` lives (it may not exist)."""
        key = validate_key(key)
        return self.entries / key / f"{TAG_MARK}{_safe_tag(tag)}" / key.rsplit("/", 1)[-1]

    def missing(self, key: str) -> Path:
        """Return a path under the cache that never exists, for a key that is not stored."""
        return self.root / "missing" / validate_key(key)

    def get(self, key: str, tag: str, fill: Callable[[Path], None]) -> Path:
        """Return the local copy of version `tag` of `key`, calling `fill(dest)` once if absent."""
        target = self.entry(key, tag)
        if target.exists():
            _touch(target.parent)
            return target
        with self._lock(key):
            if target.exists():  # another process filled it while this one waited
                _touch(target.parent)
                return target
            staged = self.temp()
            try:
                staged.mkdir()
                fill(staged / target.name)
                _move_in(staged, target.parent)
            finally:
                shutil.rmtree(staged, ignore_errors=True)
        self.evict(keep=target.parent)
        return target

    def temp(self) -> Path:
        """Return a fresh temp path in the cache, named after this process."""
        return self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}"

    def drop(self, key: str) -> None:
        """Remove every cached version of `key` and of the keys under it, on this host."""
        folder = self.entries / validate_key(key)
        if folder.exists():
            doomed = self.temp()
            os.replace(folder, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        # Empty parents would keep the names of a purged user's folders on disk.
        parent = folder.parent
        while parent != self.entries and parent.is_dir():
            try:
                parent.rmdir()
            except OSError:
                break  # not empty (or another process just filled it): it stays
            parent = parent.parent

    def evict(self, keep: Path | None = None) -> int:
        """Remove least recently used entries until the cache fits; return how many went."""
        with self._lock("\x00evict"):
            entries = [(e.stat().st_mtime, _size(e), e) for e in self._all_entries()]
            total = sum(size for _, size, _ in entries)
            removed = 0
            oldest_allowed = time.time() - self.min_age_s
            for used, size, entry in sorted(entries, key=lambda item: item[0]):
                if total <= self.max_bytes:
                    break
                if entry == keep or used > oldest_allowed:
                    continue
                doomed = self.temp()
                os.replace(entry, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
                total -= size
                removed += 1
            return removed

    def used_bytes(self) -> int:
        """Return the bytes the cache's entries take."""
        return sum(_size(e) for e in self._all_entries())

    def sweep_orphans(self) -> int:
        """Remove temp items left by processes that no longer exist; return how many."""
        return sweep_dead(self.tmp)

    def _all_entries(self) -> Iterator[Path]:
        for folder, dirs, _files in os.walk(self.entries):
            for name in list(dirs):
                if name.startswith(TAG_MARK):
                    dirs.remove(name)  # an entry's insides are not entries
                    yield Path(folder) / name

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        # Lock files stay (they are empty): removing one another process holds would let a
        # third process lock a new file of the same name while the second still works.
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        with open(self.locks / name, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _safe_tag(tag: str) -> str:
    """Turn an ETag (quotes, dashes of multipart uploads) into a file-name-safe tag."""
    cleaned = "".join(c for c in tag if c.isalnum() or c in "-_")
    return cleaned[:80] or hashlib.sha256(tag.encode()).hexdigest()[:32]


def _move_in(staged: Path, entry: Path) -> None:
    """Rename a filled entry into place, making its parents (again, if a drop pruned them)."""
    for attempt in range(3):
        entry.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staged, entry)
            return
        except FileNotFoundError:
            if attempt == 2:
                raise


def _touch(entry: Path) -> None:
    # Evicted by another process just now: the caller's copy is what it has.
    with contextlib.suppress(FileNotFoundError):
        os.utime(entry)


def _size(entry: Path) -> int:
    if entry.is_file():
        return entry.stat().st_size
    total = 0
    for folder, _dirs, files in os.walk(entry):
        for name in files:
            try:
                total += (Path(folder) / name).stat().st_size
            except FileNotFoundError:
                continue
    return total


def sweep_dead(folder: Path) -> int:
    """Remove the items of `folder` named `<pid>-...` whose process is gone; return how many."""
    removed = 0
    for item in folder.iterdir():
        pid = item.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
