"""Benchmark: acknowledgement time of concurrent render submissions through the HTTP API.

Starts a private redis-server and `jayavatar api` (`--api-workers` processes, default 1), gives
each of USERS users a key, a voice and an avatar, then sends COUNT `POST /v1/renders` at once
from one client on the same machine and prints the time from send to the 202 answer
(p50/p99/max) and the CPU seconds of the API's processes, the client and Redis in the round.
No workers run: the requests stay queued, which is what this measures.

    PYTHONPATH=. .venv/bin/python bench/api_burst.py --count 200 [--rounds 3] [--api-workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from api.keys import ApiKeys
from jayavatar.redis_server import server_binary
from jayavatar.settings import Settings
from jobs.client import JobClient

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """Return a free TCP port on the loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (nearest rank) of non-empty `values`."""
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(q / 100 * len(ranked) + 0.5) - 1))]


async def make_users(settings: Settings, users: int) -> list[str]:
    """Create each user's key, voice and avatar; return the keys."""
    client = await JobClient.connect(settings)
    try:
        keys = ApiKeys(client.redis, settings, client.accounts)
        tokens = []
        for i in range(users):
            user = f"user{i}"
            for kind in ("voice", "avatar"):
                client.storage.put_bytes(f"{kind}s/{user}/me/meta.json", b"{}")
                await client.accounts.register(kind, user, "me", {})
            tokens.append((await keys.create(user))[0])
        return tokens
    finally:
        await client.close()


async def burst(base: str, tokens: list[str], count: int) -> list[float]:
    """Send `count` submissions at once; return each one's latency in ms."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:

        async def one(i: int) -> float:
            started = time.perf_counter()
            r = await http.post(
                "/v1/renders",
                json={"text": f"Burst number {i}.", "voice": "me", "avatar": "me"},
                headers={"X-API-Key": tokens[i % len(tokens)]},
            )
            if r.status_code != 202:
                raise RuntimeError(f"{r.status_code}: {r.text}")
            return (time.perf_counter() - started) * 1000

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its live descendants have used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(cpu_seconds(int(child)) for child in children)


async def raw_burst(port: int, tokens: list[str], count: int) -> list[float]:
    """`burst` with a minimal HTTP/1.1 client on asyncio streams (a fraction of httpx's CPU)."""

    async def one(i: int) -> float:
        body = json.dumps({"text": f"Burst number {i}.", "voice": "me", "avatar": "me"}).encode()
        head = (
            f"POST /v1/renders HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {tokens[i % len(tokens)]}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head.encode() + body)
        status = await reader.readline()
        headers = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
        length = int(headers.split("content-length:")[1].split("\r\n")[0])
        await reader.readexactly(length)
        elapsed = (time.perf_counter() - started) * 1000
        writer.close()
        if b" 202 " not in status:
            raise RuntimeError(status.decode())
        return elapsed

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def wait_up(base: str, proc: subprocess.Popen[bytes]) -> None:
    """Wait until the API answers."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the API did not start")


def stop(api: subprocess.Popen[bytes]) -> None:
    """Stop the API as Ctrl-C would, so a several-process API takes its processes with it."""
    api.send_signal(signal.SIGINT)
    try:
        api.wait(30)
    except subprocess.TimeoutExpired:
        api.kill()


def main(
    count: int, rounds: int, users: int, root: Path, raw: bool = False, workers: int = 1
) -> None:
    """Run the benchmark and print one table row per round."""
    with tempfile.TemporaryDirectory() as folder:
        rport, aport = free_port(), free_port()
        redis = subprocess.Popen(
            [server_binary(), "--port", str(rport), "--dir", folder, "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("JAYAVATAR_")},
            "JAYAVATAR_REDIS_URL": f"redis://127.0.0.1:{rport}/0",
            "JAYAVATAR_DATA_DIR": str(Path(folder) / "data"),
            "JAYAVATAR_MAX_CONCURRENT": "1000",
            "JAYAVATAR_DAILY_QUOTA": "100000",
            "JAYAVATAR_API_WORKERS": str(workers),  # a checkout without the setting runs one
            "PYTHONPATH": str(root),
        }
        time.sleep(0.5)
        settings = Settings(
            redis_url=env["JAYAVATAR_REDIS_URL"],
            data_dir=Path(env["JAYAVATAR_DATA_DIR"]),
            max_concurrent=1000,
        )
        tokens = asyncio.run(make_users(settings, users))
        cmd = [sys.executable, "-m", "cli.main", "api", "--port", str(aport)]
        api = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{aport}"
            wait_up(base, api)
            # The first process answers while the others may still import the app.
            time.sleep(3 if workers > 1 else 0)
            kind = "raw asyncio" if raw else "httpx"
            print(f"\nAPI burst: {count} concurrent POST /v1/renders, {users} users, "
                  f"{workers} API process(es), {os.cpu_count()} cores, {kind} client "
                  "on the same machine\n")  # fmt: skip
            print("| round | p50 ms | p99 ms | max ms | mean ms | API CPU s | client CPU s "
                  "| Redis CPU s |")  # fmt: skip
            print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for r in range(rounds):
                api_cpu, own_cpu = cpu_seconds(api.pid), time.process_time()
                redis_cpu = cpu_seconds(redis.pid)
                send = raw_burst(aport, tokens, count) if raw else burst(base, tokens, count)
                lat = asyncio.run(send)
                api_cpu, own_cpu = cpu_seconds(api.pid) - api_cpu, time.process_time() - own_cpu
                redis_cpu = cpu_seconds(redis.pid) - redis_cpu
                print(f"| {r + 1} | {percentile(lat, 50):.0f} | {percentile(lat, 99):.0f} "
                      f"| {max(lat):.0f} | {statistics.mean(lat):.0f} | {api_cpu:.2f} "
                      f"| {own_cpu:.2f} | {redis_cpu:.2f} |")  # fmt: skip
        finally:
            stop(api)
            redis.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose API is served")
    parser.add_argument("--raw", action="store_true", help="minimal HTTP client instead of httpx")
    parser.add_argument("--api-workers", type=int, default=1, help="API processes to start")
    args = parser.parse_args()
    main(args.count, args.rounds, args.users, args.root, args.raw, args.api_workers)
