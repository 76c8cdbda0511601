"""The processes under chaos (redis-server, both workers, the bot), kept up by a supervisor.

A supervisor thread restarts any member that is down, unless a fault holds it down for a while,
the way systemd or Docker would in production. Exits nobody asked for are counted: they show
which faults make another process fall over (for example the bot while Redis is away).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.bot.harness import BotProcess
from tests.fakediscord.server import FakeDiscord
from tests.support.stack import Stack, WorkerProcess

POLL_S = 0.1
IDLE = re.compile(r"j_ongoing=0 queued=0")
RETRY_START_S = 1.0


@dataclass
class Member:
    """One supervised process: how to start, signal and check it."""

    name: str
    start: Callable[[], None]
    proc: Callable[[], subprocess.Popen[bytes] | None]
    send: Callable[[int], None]
    # Returns a snapshot before a fault; `ready(snapshot)` tells when it serves again after it.
    snapshot: Callable[[], Any]
    ready: Callable[[Any], bool]
    log: Callable[[], str] = lambda: ""
    lock: threading.RLock = field(default_factory=threading.RLock)
    down_until: float = 0.0
    paused: bool = False
    expected_exit: bool = False
    unplanned_exits: int = 0
    exit_notes: list[str] = field(default_factory=list)
    starts: int = 0

    def note_exit(self) -> None:
        """Remember why the process ended on its own: exit code and last log line."""
        proc = self.proc()
        code = proc.returncode if proc is not None else None
        lines = [line for line in self.log().splitlines() if line.strip()]
        self.exit_notes.append(f"{self.name} exited with {code}: {lines[-1] if lines else ''}")

    def alive(self) -> bool:
        """Whether the process runs (a stopped process counts as running)."""
        proc = self.proc()
        return proc is not None and proc.poll() is None


class Cluster:
    """Redis, the voice and lip-sync workers and the bot of one stack, supervised."""

    def __init__(self, stack: Stack, fake: FakeDiscord, bot_env: dict[str, str]) -> None:
        self.stack = stack
        self.fake = fake
        self.bot = BotProcess(bot_env, stack.folder / "bot.log")
        self.members = {
            "redis": self._redis(),
            "voice": self._worker("voice"),
            "lipsync": self._worker("lipsync"),
            "bot": self._bot(),
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="supervisor", daemon=True)

    # -- members -------------------------------------------------------------------------------

    def _redis(self) -> Member:
        server = self.stack.redis

        def send(sig: int) -> None:
            if server.proc is not None:
                server.proc.send_signal(sig)

        return Member(
            "redis",
            server.start,
            lambda: server.proc,
            send,
            snapshot=lambda: None,
            ready=lambda _snap: self.redis_answers(),
            log=lambda: _read(server.folder / "redis.log"),
        )

    def _worker(self, kind: str) -> Member:
        def current() -> WorkerProcess | None:
            return self.stack.workers.get(kind)

        def start() -> None:
            self.stack.start_worker(kind, wait=False)

        def send(sig: int) -> None:
            worker = current()
            if worker is not None and worker.proc is not None:
                # The whole group: the worker and its engine child, as a host crash would.
                os.killpg(worker.proc.pid, sig)

        def health() -> Any:
            try:
                return self.client().get(
                    f"{self.stack.env[f'JAYAVATAR_{kind.upper()}_QUEUE']}:health-check"
                )
            except redis.RedisError:
                return None

        def ready(before: Any) -> bool:
            worker = current()
            alive = worker is not None and worker.proc is not None and worker.proc.poll() is None
            now = health()
            return alive and now is not None and now != before

        return Member(
            kind,
            start,
            lambda: current().proc if current() is not None else None,  # type: ignore[union-attr]
            send,
            snapshot=health,
            ready=ready,
            log=lambda: current().log() if current() is not None else "",  # type: ignore[union-attr]
        )

    def _bot(self) -> Member:
        gateway = self.fake.gateway

        def send(sig: int) -> None:
            if self.bot.proc is not None:
                self.bot.proc.send_signal(sig)

        def snapshot() -> tuple[int, int | None]:
            return gateway.stats.identifies, self.bot.proc.pid if self.bot.proc else None

        def ready(before: tuple[int, int | None]) -> bool:
            proc = self.bot.proc
            if proc is None or proc.poll() is not None or not gateway.connected():
                return False
            # A new process must have identified again; a resumed one keeps its session.
            return proc.pid == before[1] or gateway.stats.identifies > before[0]

        return Member(
            "bot",
            self.bot.start,
            lambda: self.bot.proc,
            send,
            snapshot=snapshot,
            ready=ready,
            log=self.bot.log,
        )

    # -- supervision ---------------------------------------------------------------------------

    def client(self) -> Any:
        """Return a short-timeout Redis client on the stack's server.

        Typed `Any`: redis-py types its sync commands as `Awaitable[T] | T`.
        """
        return redis.Redis.from_url(
            self.stack.redis.url, socket_timeout=2, socket_connect_timeout=1
        )

    def workers_idle(self) -> bool:
        """Whether both workers report no job running and none queued (their health check)."""
        try:
            for kind in ("voice", "lipsync"):
                queue = self.stack.env[f"JAYAVATAR_{kind.upper()}_QUEUE"]
                health = self.client().get(f"{queue}:health-check")
                if health is None or not IDLE.search(health.decode()):
                    return False
        except redis.RedisError:
            return False
        return True

    def redis_answers(self) -> bool:
        """Whether redis-server answers PING."""
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        """Start every member not yet running, then the supervisor."""
        for member in self.members.values():
            if not member.alive():
                self._start(member)
        self._thread.start()

    def _start(self, member: Member) -> None:
        try:
            member.start()
        except (redis.RedisError, RuntimeError, OSError):
            member.down_until = time.monotonic() + RETRY_START_S  # e.g. Redis is down right now
            return
        member.starts += 1
        member.expected_exit = False

    def _supervise(self) -> None:
        while not self._stop.is_set():
            for member in self.members.values():
                with member.lock:
                    if member.paused or member.alive():
                        continue
                    if time.monotonic() < member.down_until:
                        continue
                    if member.starts and not member.expected_exit:
                        member.unplanned_exits += 1
                        member.note_exit()
                    # Accounted for; cleared once a new process runs (a start may fail first).
                    member.expected_exit = True
                    self._start(member)
            self._stop.wait(POLL_S)

    def hold_down(self, name: str, sig: int, seconds: float) -> None:
        """Send `sig` (SIGKILL or SIGTERM) and keep the member down for `seconds`."""
        member = self.members[name]
        with member.lock:
            member.expected_exit = True
            member.down_until = time.monotonic() + seconds
            member.send(sig)

    def pause(self, name: str) -> None:
        """SIGSTOP a member (the supervisor leaves it alone until `resume`)."""
        member = self.members[name]
        with member.lock:
            member.paused = True
            member.send(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT a paused member."""
        member = self.members[name]
        with member.lock:
            member.send(signal.SIGCONT)
            member.paused = False

    def wait_ready(self, name: str, snapshot: Any, limit_s: float) -> float | None:
        """Wait until a member serves again after `snapshot`; return when (monotonic) or None."""
        member = self.members[name]
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if not member.paused and member.ready(snapshot):
                return time.monotonic()
            time.sleep(POLL_S)
        return None

    def stop(self) -> None:
        """Stop supervising and kill every member."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for member in self.members.values():
            if member.paused:
                self.resume(member.name)
            if member.alive():
                member.send(signal.SIGKILL)
                proc = member.proc()
                if proc is not None:
                    proc.wait(10)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
