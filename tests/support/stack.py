"""A real JayAvatar stack for tests: its own redis-server and real worker processes.

Each worker runs in its own Python environment (`.venvs/voice`, `.venvs/lipsync`), exactly as in
production, on the offline engines. Tests can kill and restart any process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_python(kind: str) -> Path:
    """Return the Python of a worker environment ('voice', 'lipsync') or of the core."""
    path = ROOT / (".venv" if kind == "core" else f".venvs/{kind}") / "bin" / "python"
    if not path.exists():
        raise RuntimeError(f"environment {kind!r} is missing; run `make envs` first")
    return path


@dataclass
class RedisProcess:
    """A redis-server with AOF in its own folder; it can be killed and restarted on its port."""

    folder: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return the server's URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        from jayavatar.redis_server import server_binary

        args = [
            server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ]
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        _wait_for(lambda: _ping(self.port), 15, f"redis-server on port {self.port}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal (SIGKILL by default) and wait for the server to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop the server for good."""
        self.kill(signal.SIGTERM)


@dataclass
class WorkerProcess:
    """One `jayavatar worker KIND` process in its own environment."""

    kind: str
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> None:
        """Start the worker; by default wait until its engine is built and it polls."""
        _health_client(self.env).delete(_health_key(self.env, self.kind))
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process owns it
        cmd = [str(env_python(self.kind)), "-m", "cli.main", "worker", self.kind]
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            _wait_for(self._ready, 120, f"{self.kind} worker", self.proc)

    def _ready(self) -> bool:
        return _health_key_exists(self.env, self.kind)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the worker's whole process group (worker and its engine child)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                self.proc.wait(30)

    def log(self) -> str:
        """Return what the worker logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Stack:
    """Redis plus voice and lip-sync workers sharing one data folder and key prefix."""

    folder: Path
    redis: RedisProcess
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")

    @property
    def env(self) -> dict[str, str]:
        """Return the environment every process of this stack gets."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("JAYAVATAR_")}
        env.update(
            {
                "JAYAVATAR_REDIS_URL": self.redis.url,
                "JAYAVATAR_DATA_DIR": str(self.folder / "data"),
                "JAYAVATAR_KEY_PREFIX": self.prefix,
                "JAYAVATAR_VOICE_QUEUE": f"{self.prefix}:voice",
                "JAYAVATAR_LIPSYNC_QUEUE": f"{self.prefix}:lipsync",
                "JAYAVATAR_STUCK_AFTER_S": "6",
                "JAYAVATAR_HEALTH_CHECK_INTERVAL_S": "1",
                # Reports cost seconds per render; the modules that check them turn them back on.
                "JAYAVATAR_QUALITY_REPORT": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def settings(self) -> object:
        """Return Settings equal to what the stack's processes see."""
        from jayavatar.settings import Settings

        saved = dict(os.environ)
        try:
            os.environ.clear()
            os.environ.update(self.env)
            return Settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def start_worker(self, kind: str, wait: bool = True) -> WorkerProcess:
        """Start (or restart) a worker of this stack."""
        worker = WorkerProcess(kind, self.env, self.folder / f"worker-{kind}.log")
        worker.start(wait)
        self.workers[kind] = worker
        return worker

    def stop(self) -> None:
        """Stop every worker and Redis."""
        for worker in self.workers.values():
            worker.kill(signal.SIGKILL)
        self.redis.stop()


@contextmanager
def running_stack(folder: Path, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A redis-server and one voice and one lip-sync worker under `folder`, stopped on exit."""
    server = RedisProcess(folder / "redis")
    server.start()
    stack = Stack(folder, server, extra_env=dict(extra_env or {}))
    try:
        stack.start_worker("voice")
        stack.start_worker("lipsync")
        yield stack
    finally:
        stack.stop()


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _health_client(env: dict[str, str]) -> redis.Redis:
    return redis.Redis.from_url(env["JAYAVATAR_REDIS_URL"], socket_timeout=2)


def _health_key(env: dict[str, str], kind: str) -> str:
    return f"{env[f'JAYAVATAR_{kind.upper()}_QUEUE']}:health-check"


def _health_key_exists(env: dict[str, str], kind: str) -> bool:
    try:
        return bool(_health_client(env).exists(_health_key(env, kind)))
    except redis.RedisError:
        return False


def _wait_for(
    test: object, timeout_s: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if test():  # type: ignore[operator]
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout_s:.0f} s")


__all__ = ["ROOT", "RedisProcess", "Stack", "WorkerProcess", "env_python", "free_port"]
