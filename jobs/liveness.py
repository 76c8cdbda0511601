"""Worker liveness: each worker refreshes a short-lived key every second while its process runs.

A request a worker has claimed names that worker, so the reconciler can tell within a few seconds
that its worker is gone (the key expired) instead of waiting for a long stall timer. The pulse
runs as a task beside ARQ's job slot, so a busy engine never delays it.
"""

from __future__ import annotations

import os
import socket
import uuid

from redis.asyncio import Redis

from jayavatar.settings import Settings
from jobs import keys

#: How often a worker refreshes its key, and how long the key outlives the last refresh.
PULSE_S = 1.0
ALIVE_TTL_S = 4


def new_worker_id() -> str:
    """Return an id naming this worker process (host, pid and a random part, never reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def alive_key(settings: Settings, worker_id: str) -> str:
    """Return the key that exists while a worker is alive."""
    return keys.worker_alive(settings, worker_id)


async def pulse(redis: Redis, settings: Settings, worker_id: str) -> None:
    """Say this worker is alive for the next `ALIVE_TTL_S` seconds."""
    await redis.set(alive_key(settings, worker_id), b"1", ex=ALIVE_TTL_S)


async def is_alive(redis: Redis, settings: Settings, worker_id: str) -> bool:
    """Tell whether a worker refreshed its key within the last `ALIVE_TTL_S` seconds."""
    return bool(await redis.exists(alive_key(settings, worker_id)))
