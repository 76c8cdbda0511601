"""Several hosts that share nothing but Redis and a bucket.

The front (the JobClient of this test, as the bot and API use it), a voice worker and two
lip-sync workers each get their own data folder: no folder is shared at all. The avatar is
prepared on one lip-sync host and rendered on the other; a worker stopped with SIGTERM leaves
cleanly, one SIGKILLed mid-render is replaced by the other, every render is announced exactly
once, and no cache keeps temp files behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.assets import face_clip
from tests.support.s3server import S3Server
from tests.support.stack import RedisProcess, WorkerProcess, _wait_for

pytestmark = pytest.mark.timeout(600)
LONG_TEXT = " ".join(["This sentence keeps the workers busy for a while."] * 6)
BUCKET = "jayavatar"


@dataclass
class Hosts:
    """Redis, the bucket and one worker process per simulated host."""

    folder: Path
    redis: RedisProcess
    s3: S3Server
    prefix: str = field(default_factory=lambda: f"m{uuid.uuid4().hex[:8]}")
    workers: dict[str, WorkerProcess] = field(default_factory=dict)

    def env(self, host: str) -> dict[str, str]:
        """Return the environment of a process on `host`: its own data folder, shared nothing."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("JAYAVATAR_")}
        env.update(self.s3.env(BUCKET))
        env.update(
            {
                "JAYAVATAR_REDIS_URL": self.redis.url,
                "JAYAVATAR_DATA_DIR": str(self.folder / host),
                "JAYAVATAR_KEY_PREFIX": self.prefix,
                "JAYAVATAR_VOICE_QUEUE": f"{self.prefix}:voice",
                "JAYAVATAR_LIPSYNC_QUEUE": f"{self.prefix}:lipsync",
                "JAYAVATAR_STUCK_AFTER_S": "6",
                "JAYAVATAR_HEALTH_CHECK_INTERVAL_S": "1",
                "JAYAVATAR_QUALITY_REPORT": "false",
                "JAYAVATAR_WORKER_NAME": host,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def settings(self, host: str) -> Any:
        """Return the Settings a process on `host` builds."""
        from jayavatar.settings import Settings

        fields: dict[str, Any] = {
            k.removeprefix("JAYAVATAR_").lower(): v
            for k, v in self.env(host).items()
            if k.startswith("JAYAVATAR_")
        }
        return Settings(**fields)

    def start(self, host: str, kind: str) -> WorkerProcess:
        """Start a worker on `host` and wait until its presence key is written."""
        worker = WorkerProcess(kind, self.env(host), self.folder / f"{host}.log")
        worker.start(wait=False)
        self.workers[host] = worker
        _wait_for(lambda: self.presence(host) is not None, 120, f"worker on {host}", worker.proc)
        return worker

    def presence(self, host: str) -> dict[str, Any] | None:
        """Return the presence of the worker process on `host`, or None."""
        worker = self.workers[host]
        assert worker.proc is not None
        client = redis.Redis.from_url(self.redis.url)
        raw = client.get(f"{self.prefix}:workers:{host}:{worker.proc.pid}")
        return json.loads(raw) if raw else None  # type: ignore[arg-type]

    def busy_host(self) -> str | None:
        """Return the lip-sync host whose worker says it is busy."""
        for host in ("gpu-a", "gpu-b"):
            if host in self.workers and (self.presence(host) or {}).get("state") == "busy":
                return host
        return None

    def temp_items(self) -> list[str]:
        """Return every item left in any host's cache temp folder."""
        return [str(item) for tmp in self.folder.glob("*/cache/.tmp") for item in tmp.iterdir()]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    """Redis and an S3 server; the workers are started by the test."""
    folder = tmp_path_factory.mktemp("hosts")
    red = RedisProcess(folder / "redis")
    red.start()
    s3 = S3Server(folder / "s3")
    s3.start()
    s3.make_bucket(BUCKET)
    made = Hosts(folder, red, s3)
    try:
        yield made
    finally:
        for worker in made.workers.values():
            worker.kill(signal.SIGKILL)
        s3.stop()
        red.stop()


@pytest.fixture
async def front(hosts: Hosts) -> AsyncIterator[Any]:
    """The bot/API host's JobClient, with its own data folder."""
    from jobs.client import JobClient

    client = await JobClient.connect(hosts.settings("front"))
    try:
        yield client
    finally:
        await client.close()


async def completions(client: Any, rid: str) -> list[str]:
    """Return the states announced for one request on the completion stream."""
    entries = await client.redis.xrange(f"{client.settings.key_prefix}:completions")
    return [f[b"state"].decode() for _mid, f in entries if f[b"rid"].decode() == rid]


async def until(check: Any, what: str, timeout_s: float = 120) -> Any:
    """Poll `check()` (a coroutine function) until it returns something true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def running_on(hosts: Hosts, front: Any, rid: str) -> str:
    """Wait until a lip-sync host renders request `rid`; return that host."""

    async def check() -> str | None:
        r = await front.get(rid)
        return hosts.busy_host() if r.state == "lipsync" and r.progress > 0 else None

    found: str = await until(check, f"request {rid} to render on a lip-sync host")
    return found


async def rendered(hosts: Hosts, host: str, count: int) -> bool:
    """Tell whether the worker on `host` logged at least `count` finished renders."""
    return hosts.workers[host].log().count("'render done'") >= count


async def delivered_once(client: Any, rid: str) -> Any:
    """Wait for a render, then check it was announced once and its MP4 reads on the front."""
    done = await client.wait(rid, 300)
    assert done.state == "done", done.error
    assert await completions(client, rid) == ["done"]
    mp4 = client.output_path(done)  # fetched from the bucket into the front's cache
    assert b"ftyp" in mp4.read_bytes()[:64]
    assert mp4.read_bytes() == client.storage.get_bytes(done.output_key)
    return done


async def enroll_on_gpu_a(hosts: Hosts, front: Any) -> None:
    """Start the voice host and gpu-a, and enroll the voice and avatar: gpu-a prepares it."""
    from tests.bot.harness import voice_sample

    hosts.start("voice-box", "voice")
    hosts.start("gpu-a", "lipsync")
    for kind, path, name in (
        ("voice", voice_sample(hosts.folder), "me"),
        ("avatar", face_clip(), "face"),
    ):
        submit = front.submit_voice_enroll if kind == "voice" else front.submit_avatar_enroll
        done = await front.wait((await submit("local", name, path)).id, 180)
        assert done.state == "done", done.error
    assert list((hosts.folder / "front").glob("store")) == []  # the front keeps no store


async def render_where_it_was_not_prepared(hosts: Hosts, front: Any) -> None:
    """gpu-b comes up, gpu-a leaves on SIGTERM while idle; gpu-b renders the avatar."""
    hosts.start("gpu-b", "lipsync")
    gone = hosts.workers["gpu-a"]
    gone.kill(signal.SIGTERM)
    assert gone.proc is not None and gone.proc.returncode == 0, gone.log()[-2000:]
    req = await front.submit_render(
        "local", "Rendered where the avatar was not made.", "me", "face"
    )
    await delivered_once(front, req.id)
    await until(lambda: rendered(hosts, "gpu-b", 1), "gpu-b to log its render")
    assert list((hosts.folder / "gpu-b" / "cache" / "entries" / "avatars").rglob("clip*"))


async def kill_the_rendering_host(hosts: Hosts, front: Any) -> None:
    """Both lip-sync hosts up; the rendering one is SIGKILLed and the other takes over."""
    hosts.start("gpu-a", "lipsync")
    req = await front.submit_render("local", LONG_TEXT, "me", "face")
    victim = await running_on(hosts, front, req.id)
    hosts.workers[victim].kill(signal.SIGKILL)
    survivor = "gpu-b" if victim == "gpu-a" else "gpu-a"
    done = await delivered_once(front, req.id)
    assert done.epoch == 2  # re-enqueued by the reconciler after the heartbeat stopped
    await until(lambda: rendered(hosts, survivor, 2 if survivor == "gpu-b" else 1), "the survivor")
    # The killed host comes back; its start-up sweeps what the dead process left.
    hosts.start(victim, "lipsync")
    more = [
        await front.submit_render("local", f"Render number {i}.", "me", "face") for i in range(3)
    ]
    for r in more:
        await delivered_once(front, r.id)


async def stop_the_rendering_host(hosts: Hosts, front: Any) -> None:
    """A worker stopped with SIGTERM mid-render hands the job back; the other host renders it."""
    req = await front.submit_render("local", LONG_TEXT, "me", "face")
    stopped = await running_on(hosts, front, req.id)
    hosts.workers[stopped].kill(signal.SIGTERM)
    assert hosts.workers[stopped].proc.returncode == 0  # type: ignore[union-attr]
    assert hosts.presence(stopped) is None  # its presence went with it
    await delivered_once(front, req.id)


async def test_workers_on_separate_hosts_share_only_redis_and_the_bucket(
    hosts: Hosts, front: Any
) -> None:
    await enroll_on_gpu_a(hosts, front)
    await render_where_it_was_not_prepared(hosts, front)
    await kill_the_rendering_host(hosts, front)
    await stop_the_rendering_host(hosts, front)
    assert front.storage.list("work") == [] and front.storage.list("uploads") == []

    # A stage removes its scratch folder just after it announces the result: wait for that.
    async def no_temp_items() -> bool:
        return hosts.temp_items() == []

    await until(no_temp_items, f"empty cache temp folders, still {hosts.temp_items()}", 30)
