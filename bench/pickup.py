"""How long a queued job waits before a worker starts it, and what an idle worker costs.

Starts a redis-server and one worker process per mode, enqueues jobs one at a time (each after
the last has started, so the worker is idle each time, as for a lone user), and prints the delay
from enqueue to the job's first line, and the worker's CPU use while idle for 10 s:

- `arq 0.5 s`: ARQ's own poll (the delay before wake-ups);
- `arq 0.05 s`: ARQ's poll tuned down, the cheap alternative;
- `wake-up`: `jobs.wakeup` (BLPOP on a list beside the queue).

    PYTHONPATH=. python bench/pickup.py [--jobs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

from jayavatar.redis_server import server_binary
from jobs.wakeup import WakeWorker, enqueue

QUEUE = "bench:pickup"
MODES = {"arq 0.5 s": "arq:0.5", "arq 0.05 s": "arq:0.05", "wake-up": "wake"}


async def started(ctx: dict[str, Any], payload: dict[str, float]) -> None:
    """The job: record how long after its enqueue it started."""
    await ctx["redis"].rpush("bench:delays", str(time.time() - payload["sent"]))


def run_worker(port: int, mode: str) -> None:
    """Child process: one worker of the given mode until killed."""
    settings = RedisSettings(port=port)
    functions = [func(started, name="started")]
    common: dict[str, Any] = {"queue_name": QUEUE, "redis_settings": settings, "max_jobs": 1}
    if mode == "wake":
        worker: Worker = WakeWorker(functions=functions, **common)
    else:
        worker = Worker(functions=functions, poll_delay=float(mode.split(":")[1]), **common)
    worker.run()


def cpu_seconds(pid: int) -> float:
    """Return a process's user + system CPU time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(port: int, mode: str, jobs: int) -> dict[str, float]:
    """Run one worker in `mode`; return pickup delays (ms) and idle CPU (% of a core)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", mode, "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    redis = await create_pool(RedisSettings(port=port))
    try:
        await redis.delete("bench:delays", QUEUE)
        await asyncio.sleep(3)  # the worker starts
        for i in range(jobs):
            await asyncio.sleep(0.05 + (i % 7) * 0.013)  # land at varied points of a poll
            job_id = f"{mode}-{i}"
            if mode == "wake":
                await enqueue(redis, "started", {"sent": time.time()}, job_id, QUEUE)
            else:
                payload = {"sent": time.time()}
                await redis.enqueue_job("started", payload, _job_id=job_id, _queue_name=QUEUE)
            while await redis.llen("bench:delays") <= i:  # type: ignore[misc]
                await asyncio.sleep(0.002)
        raw = await redis.lrange("bench:delays", 0, -1)  # type: ignore[misc]
        before = cpu_seconds(proc.pid)
        await asyncio.sleep(10)
        idle_cpu = (cpu_seconds(proc.pid) - before) / 10 * 100
    finally:
        proc.kill()
        proc.wait()
        await redis.aclose()
    delays = sorted(float(d) * 1000 for d in raw)
    return {
        "p50": statistics.median(delays),
        "p99": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
        "max": delays[-1],
        "cpu": idle_cpu,
    }


async def main(jobs: int) -> None:
    """Start Redis, measure each mode, print the table."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(
            [server_binary(), "--port", str(port), "--dir", folder, "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        try:
            await asyncio.sleep(0.5)
            print(f"\nJob pickup: {jobs} jobs per mode, {os.cpu_count()} cores\n")
            print("| mode | p50 ms | p99 ms | max ms | idle worker CPU % of a core |")
            print("| --- | ---: | ---: | ---: | ---: |")
            for label, mode in MODES.items():
                r = await measure(port, mode, jobs)
                print(
                    f"| {label} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} "
                    f"| {r['cpu']:.2f} |"
                )
        finally:
            server.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.port, args.worker)
    else:
        asyncio.run(main(args.jobs))
