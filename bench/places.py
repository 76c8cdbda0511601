"""Benchmark: the places in line of every waiting request, one by one and all at once.

What the bot's progress loop (every 1.5 s) and a page of the request list ask for: the place of
each of N waiting requests. Starts a private redis-server, queues N renders from USERS users
(no workers run, so all of them wait), then times both ways and prints the wall time and the
Redis server's CPU seconds of each, with a check that both give the same places.

    PYTHONPATH=. .venv/bin/python bench/places.py [--counts 250 1000 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from jayavatar.redis_server import server_binary
from jayavatar.settings import Settings
from jobs.client import JobClient
from jobs.records import Request

USERS = 50


def free_port() -> int:
    """Return a free TCP port on the loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def redis_cpu(client: JobClient) -> float:
    """The Redis server's user + system CPU seconds so far."""
    info = await client.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def timed(
    client: JobClient, work: Callable[[], Awaitable[list[int | None]]]
) -> tuple[float, float, list[int | None]]:
    """(wall s, Redis CPU s, result) of awaiting `work()`."""
    cpu, started = await redis_cpu(client), time.perf_counter()
    result = await work()
    return time.perf_counter() - started, await redis_cpu(client) - cpu, result


async def measure(url: str, data: Path, count: int) -> str:
    """Queue `count` renders on an emptied Redis and time both ways of placing them all."""
    settings = Settings(redis_url=url, data_dir=data, max_concurrent=count, daily_quota=10 * count)
    client = await JobClient.connect(settings)
    try:
        await client.redis.flushdb()
        users = [f"user{i}" for i in range(USERS)]
        for user in users:
            for kind in ("voice", "avatar"):
                client.storage.put_bytes(f"{kind}s/{user}/me/meta.json", b"{}")
                await client.accounts.register(kind, user, "me", {})
        reqs: list[Request] = [
            await client.submit_render(users[i % USERS], f"line {i}") for i in range(count)
        ]

        async def alone() -> list[int | None]:
            return [await client.position_of(r) for r in reqs]

        async def together() -> list[int | None]:
            return await client.positions_of(reqs)

        wall1, cpu1, one = await timed(client, alone)
        wall2, cpu2, many = await timed(client, together)
        same = "yes" if one == many else "NO"
        return f"| {count} | {wall1:.3f} | {cpu1:.3f} | {wall2:.3f} | {cpu2:.3f} | {same} |"
    finally:
        await client.close()


def main() -> None:
    """Run each count against a fresh private redis-server and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[250, 1000, 2000])
    args = parser.parse_args()
    print(
        "| waiting | one by one, wall s | Redis CPU s | all at once, wall s | Redis CPU s | same |"
    )
    print("|---:|---:|---:|---:|---:|---|")
    for count in args.counts:
        with tempfile.TemporaryDirectory() as folder:
            port = free_port()
            server = subprocess.Popen(
                [server_binary(), "--port", str(port), "--dir", folder, "--save", ""],
                stdout=subprocess.DEVNULL,
            )
            try:
                time.sleep(0.5)
                url = f"redis://127.0.0.1:{port}/0"
                print(asyncio.run(measure(url, Path(folder) / "data", count)), flush=True)
            finally:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    main()
