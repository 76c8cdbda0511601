"""Benchmark: renders with S3 storage against local storage, on a new host and then warm.

Starts its own Redis and an S3 server process on 127.0.0.1 (moto's S3 emulator, so this measures
our client, cache and transfers over a real socket, not a real network), enrolls the demo voice,
the demo avatar and a 60 s 720p avatar once, copies the prepared assets into a local store, then
for each backend starts fresh voice and lip-sync workers with empty data folders (a new host) and
renders the demo text a few times per avatar. The first render on the new host runs with a cold
cache (the prepared avatar is downloaded), the later ones warm.

Prints one table per avatar: wall time from submit to MP4, the lip-sync stage, the engine's render
call inside it, and the stage's own overhead (stage minus render: fetching the avatar and speech,
uploading the MP4, records). Run: `.venv/bin/python bench/storage_s3.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from cli.demo import DEMO_TEXT, demo_assets
from jayavatar.settings import Settings
from tests.support.s3server import S3Server
from tests.support.stack import RedisProcess, WorkerProcess, _wait_for, env_python

BUCKET = "bench"
USER = "local"
LONG_CLIP = """
import sys
import numpy as np
from pathlib import Path
from engines.lipsync.demo_assets import astronaut_portrait
from engines.lipsync.avatar_prep import photo_motion
from engines.media.video import VideoWriter
photo = astronaut_portrait(720)
with VideoWriter(Path(sys.argv[1]), 1280, 720, 25, crf=18, preset="veryfast") as out:
    for frame in photo_motion(photo, 25, 60 * 25):
        out.write(np.ascontiguousarray(np.pad(frame, ((0, 0), (280, 280), (0, 0)), mode="edge")))
"""


class Bench:
    """Redis, the S3 server and the environment of each simulated host."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.redis = RedisProcess(folder / "redis")
        self.s3 = S3Server(folder / "s3")
        self.workers: list[WorkerProcess] = []

    def env(self, host: str, backend: str) -> dict[str, str]:
        """Return the environment of a process on `host` using `backend` storage."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("JAYAVATAR_")}
        env.update(self.s3.env(BUCKET) if backend == "s3" else {"JAYAVATAR_STORAGE": "local"})
        env.update(
            {
                "JAYAVATAR_REDIS_URL": self.redis.url,
                "JAYAVATAR_DATA_DIR": str(self.folder / host),
                "JAYAVATAR_KEY_PREFIX": "bench",
                "JAYAVATAR_VOICE_QUEUE": "bench:voice",
                "JAYAVATAR_LIPSYNC_QUEUE": "bench:lipsync",
                "JAYAVATAR_QUALITY_REPORT": "false",
                "JAYAVATAR_HEALTH_CHECK_INTERVAL_S": "1",
                "JAYAVATAR_WORKER_NAME": host,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def settings(self, host: str, backend: str) -> Settings:
        """Return the Settings of a process on `host`."""
        env = self.env(host, backend)
        fields: dict[str, Any] = {
            k.removeprefix("JAYAVATAR_").lower(): v for k, v in env.items() if "JAYAVATAR_" in k
        }
        return Settings(**fields)

    def start_workers(self, host: str, backend: str) -> None:
        """Stop the running workers; start a voice and a lip-sync worker on a new host."""
        for worker in self.workers:
            worker.kill(signal.SIGTERM)
        self.workers = []
        conn = redis.Redis.from_url(self.redis.url)
        for kind in ("voice", "lipsync"):
            worker = WorkerProcess(
                kind, self.env(host, backend), self.folder / f"{host}-{kind}.log"
            )
            worker.start(wait=False)
            self.workers.append(worker)
            assert worker.proc is not None
            key = f"bench:workers:{host}:{worker.proc.pid}"
            _wait_for(lambda k=key: conn.exists(k), 180, f"{kind} worker", worker.proc)


async def enroll(settings: Settings, voice: Path, avatars: dict[str, Path]) -> None:
    """Enroll the voice and avatars (once, on the S3 backend)."""
    from jobs.client import JobClient

    client = await JobClient.connect(settings)
    try:
        jobs = [("voice", "demo", voice)] + [("avatar", n, p) for n, p in avatars.items()]
        for kind, name, path in jobs:
            submit = client.submit_voice_enroll if kind == "voice" else client.submit_avatar_enroll
            done = await client.wait((await submit(USER, name, path, replace=True)).id, 1800)
            assert done.state == "done", done.error
    finally:
        await client.close()


async def render(settings: Settings, avatar: str, text: str) -> dict[str, float]:
    """Render once; return wall, lip-sync stage and render-call seconds."""
    from jobs.client import JobClient

    client = await JobClient.connect(settings)
    try:
        started = time.monotonic()
        req = await client.submit_render(USER, text, "demo", avatar, "en")
        done = await client.wait(req.id, 1800)
        assert done.state == "done", done.error
        wall = time.monotonic() - started
        stage, engine = done.timings["lipsync_stage_s"], done.timings["render_s"]
        return {"wall": wall, "stage": stage, "engine": engine, "overhead": stage - engine}
    finally:
        await client.close()


def copy_to_local(bench: Bench, prefixes: list[str]) -> None:
    """Put the assets prepared on S3 into the local store of the `local` hosts."""
    from storage import build_storage
    from storage.local import LocalStorage

    s3 = build_storage(bench.settings("copier", "s3"))
    for host in ("local-host",):
        local = LocalStorage(bench.folder / host / "store")
        for prefix in prefixes:
            local.publish_dir(prefix, s3.local_path(prefix))


def main() -> None:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--renders", type=int, default=3, help="renders per avatar and backend")
    parser.add_argument("--text", default=DEMO_TEXT)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    bench = Bench(folder)
    bench.redis.start()
    bench.s3.start()
    bench.s3.make_bucket(BUCKET)
    try:
        voice, photo = demo_assets(bench.settings("assets", "local"))
        long_clip = folder / "long-720p.mp4"
        subprocess.run([str(env_python("lipsync")), "-c", LONG_CLIP, str(long_clip)], check=True)
        avatars = {"demo": photo, "long": long_clip}
        bench.start_workers("enroller", "s3")
        t0 = time.monotonic()
        asyncio.run(enroll(bench.settings("front", "s3"), voice, avatars))
        print(f"enrolled in {time.monotonic() - t0:.0f} s", flush=True)
        copy_to_local(bench, ["voices/local/demo", "avatars/local/demo", "avatars/local/long"])
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for backend in ("local", "s3"):
            host = f"{backend}-host"
            bench.start_workers(host, backend)
            for avatar in avatars:
                runs = [
                    asyncio.run(render(bench.settings(host, backend), avatar, args.text))
                    for _ in range(args.renders)
                ]
                results[(avatar, backend)] = runs
                print(json.dumps({"avatar": avatar, "backend": backend, "runs": runs}), flush=True)
        report(results)
    finally:
        for worker in bench.workers:
            worker.kill(signal.SIGKILL)
        bench.s3.stop()
        bench.redis.stop()


def report(results: dict[tuple[str, str], list[dict[str, float]]]) -> None:
    """Print one table per avatar."""
    cpu = platform.processor() or platform.machine()
    print(
        f"\nS3 against local storage — CPU only ({cpu}, {os.cpu_count()} cores), landmark engine,"
    )
    print("S3 server: moto's emulator on 127.0.0.1 (no network latency); seconds\n")
    print("| avatar | backend | render | wall | lip-sync stage | engine render | stage overhead |")
    print("|---|---|---|---|---|---|---|")
    for (avatar, backend), runs in results.items():
        for i, run in enumerate(runs):
            label = "first (cold cache)" if i == 0 else f"warm {i}"
            print(
                f"| {avatar} | {backend} | {label} | {run['wall']:.2f} | {run['stage']:.2f} | "
                f"{run['engine']:.2f} | {run['overhead']:.2f} |"
            )
    print("\n| avatar | warm wall, local → s3 | warm stage overhead, local → s3 | cold extra |")
    print("|---|---|---|---|")
    for avatar in sorted({a for a, _ in results}):
        local, s3 = results[(avatar, "local")], results[(avatar, "s3")]
        lw = statistics.mean(r["wall"] for r in local[1:])
        sw = statistics.mean(r["wall"] for r in s3[1:])
        lo = statistics.mean(r["overhead"] for r in local[1:])
        so = statistics.mean(r["overhead"] for r in s3[1:])
        cold = s3[0]["overhead"] - lo
        print(
            f"| {avatar} | {lw:.2f} → {sw:.2f} ({(sw - lw) / lw:+.1%}) | {lo:.2f} → {so:.2f} "
            f"({(so - lo) / max(lw, 1e-9):+.1%} of a render) | +{cold:.2f} s |"
        )


if __name__ == "__main__":
    main()
