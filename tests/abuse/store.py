"""What "the store is unchanged" means: every Redis key with its value, and every stored file."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.client import JobClient

Snapshot = tuple[dict[str, bytes], list[str]]
#: Keys that tick like a clock whatever users do: the bot's heartbeat is set again every few
#: seconds (and lapses while it is away), and so is each worker's presence (`jobs.hosts`), so
#: they are no part of "the store".
CLOCKS = (":discord:alive",)
PRESENCE = ":workers:"


async def snapshot(client: JobClient, skip: str = "\0") -> Snapshot:
    """Return the dump of every Redis key (the test's Redis is private) and the file list.

    Keys containing `skip` are left out (e.g. API key records, whose last-use time changes).
    """
    values: dict[str, bytes] = {}
    async for key in client.redis.scan_iter(match="*"):
        if skip in _s(key) or _s(key).endswith(CLOCKS) or PRESENCE in _s(key):
            continue
        dumped = await client.redis.dump(key)
        if dumped is not None:
            values[_s(key)] = bytes(dumped)
    return values, files(client.settings.data_dir / "store")


def files(root: Path) -> list[str]:
    """Return every file and folder under a storage root, temp folder included.

    Workers may remove a folder while it is walked (an emptied upload folder goes right
    after its file): os.walk skips what vanished, where Path.rglob raises.
    """
    found: list[str] = []
    for folder, dirs, names in os.walk(root):
        found += [(Path(folder) / n).relative_to(root).as_posix() for n in dirs + names]
    return sorted(found)


def one_line(message: str) -> bool:
    """Whether a message is a clear single line (not a traceback, not a wall of text)."""
    return bool(message.strip()) and "\n" not in message and len(message) <= 300


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def changed_keys(before: Snapshot, after: Snapshot) -> list[str]:
    """Return the Redis keys and files that differ between two snapshots (for failure messages)."""
    keys = set(before[0]) | set(after[0])
    out = sorted(k for k in keys if before[0].get(k) != after[0].get(k))
    return out + sorted(set(before[1]) ^ set(after[1]))


def settled(take: Callable[[], Snapshot]) -> Snapshot:
    """Return a snapshot once two in a row agree: a bot finishes its own bookkeeping (reply
    ids, acknowledged deliveries) a moment after the user sees its answer."""
    last = take()
    for _ in range(50):
        time.sleep(0.2)
        now = take()
        if now == last:
            return now
        last = now
    raise AssertionError("the store never settled")
