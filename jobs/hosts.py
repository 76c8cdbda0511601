"""Which worker runs where: each worker process keeps a short-lived key saying who it is.

ARQ's own health check is one key per queue, so two hosts serving one queue read as one. Here
every worker process writes `<prefix>:workers:<host>:<pid>` (host name, queue kind, engine,
GPU, busy or idle, the job it runs, its last beat) with a TTL of a few beats: a host that is
powered off drops out of `/admin stats` and the dashboard on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from typing import Any

from jayavatar.settings import Settings
from jobs import keys

BEATS_TO_EXPIRE = 3


def _gpu_name(settings: Settings) -> str:
    """Name this host's GPU(s) for people reading the dashboard; "none" on CPU."""
    if settings.device == "cpu":
        return "none"
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return "none"
    try:
        out = subprocess.run(
            [binary, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    names = [line.strip() for line in out.splitlines() if line.strip()]
    return ", ".join(names) or "none"


class Beacon:
    """The presence key of one worker process, rewritten every health-check interval."""

    def __init__(self, settings: Settings, kind: str) -> None:
        self.settings = settings
        self.kind = kind
        self.host = settings.worker_name or socket.gethostname()
        self.key = keys.worker_presence(settings, f"{self.host}:{os.getpid()}")
        self.interval = settings.health_check_interval_s
        engine = settings.engine_name(kind)
        self.fixed = {
            "host": self.host,
            "pid": os.getpid(),
            "kind": kind,
            "engine": engine,
            "gpu": _gpu_name(settings),
            "started_at": time.time(),
        }
        self.job = ""

    def state(self) -> dict[str, Any]:
        """Return what the key says now."""
        busy = {"state": "busy", "job": self.job} if self.job else {"state": "idle", "job": ""}
        return {**self.fixed, **busy, "beat_at": time.time()}

    async def beat(self, redis: Any) -> None:
        """Write the key now, with a TTL of a few intervals."""
        ttl = self.interval * BEATS_TO_EXPIRE + 2
        await redis.set(self.key, json.dumps(self.state()), ex=ttl)

    async def busy(self, redis: Any, job: str) -> None:
        """Say this worker runs `job`."""
        self.job = job
        with contextlib.suppress(Exception):  # presence must never fail a job
            await self.beat(redis)

    async def idle(self, redis: Any) -> None:
        """Say this worker waits for work."""
        self.job = ""
        with contextlib.suppress(Exception):
            await self.beat(redis)

    async def run(self, redis: Any) -> None:
        """Beat until cancelled, riding out Redis outages; then remove the key."""
        try:
            while True:
                with contextlib.suppress(Exception):
                    await self.beat(redis)
                await asyncio.sleep(self.interval)
        finally:
            with contextlib.suppress(Exception):
                await redis.delete(self.key)


async def list_workers(redis: Any, settings: Settings) -> list[dict[str, Any]]:
    """Return every live worker's presence, by host then kind, with `beat_age_s` added."""
    pattern = keys.worker_presence(settings, "*")
    found_keys = [k async for k in redis.scan_iter(match=pattern, count=200)]
    if not found_keys:
        return []
    now = time.time()
    found = []
    for raw in await redis.mget(found_keys):
        if raw is None:
            continue  # expired between the scan and the read
        try:
            info = json.loads(raw)
        except ValueError:
            continue
        info["beat_age_s"] = max(0.0, round(now - float(info.get("beat_at", now)), 1))
        found.append(info)
    return sorted(found, key=lambda w: (str(w.get("host")), str(w.get("kind")), w.get("pid", 0)))


def describe(worker: dict[str, Any]) -> str:
    """Return one line about a worker, for chat and logs."""
    doing = f"busy ({worker.get('job', '')})" if worker.get("state") == "busy" else "idle"
    return (
        f"{worker.get('host')} · {worker.get('kind')}/{worker.get('engine')} · "
        f"GPU {worker.get('gpu')} · {doing} · beat {worker.get('beat_age_s', 0):.0f} s ago"
    )
