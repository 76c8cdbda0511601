"""Benchmark: how fast a request comes back after its worker is killed mid-job, behind a backlog.

Starts the test stack (redis-server, a voice and a lip-sync worker on the offline engines, the
stall timer left at its 120 s default), submits a long render, waits until the voice worker is
synthesising it, queues BACKLOG short renders behind it, SIGKILLs the voice worker's process group
and starts a new one. Prints, from the kill: the fresh worker ready, the request given a new epoch,
taken up again, and done; and how many of the backlog were done before it was taken up.

    PYTHONPATH=. .venv/bin/python bench/recovery.py [--backlog 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from jobs.client import JobClient
from tests.support.assets import demo_inputs, face_clip
from tests.support.stack import RedisProcess, Stack

LONG_TEXT = " ".join(["This sentence keeps the workers busy for a while."] * 6)


async def until(client: JobClient, rid: str, test: Any, limit_s: float = 600) -> float:
    """Poll a request every 20 ms until `test(record)`; return the monotonic time it held."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if test(await client.get(rid)):
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise TimeoutError(f"request {rid} never got there")


async def one_round(stack: Stack, client: JobClient, backlog: int) -> dict[str, float]:
    """Kill the voice worker under a long request with a backlog; return the timings."""
    req = await client.submit_render("local", LONG_TEXT, "demo", "face")
    await until(client, req.id, lambda r: r.state == "voice" and r.running)
    behind = [
        await client.submit_render("local", f"Queued number {i}, waiting.", "demo", "face")
        for i in range(backlog)
    ]
    killed = time.monotonic()
    stack.workers["voice"].kill(signal.SIGKILL)
    stack.start_worker("voice")
    ready = time.monotonic()
    requeued = await until(client, req.id, lambda r: r.epoch >= 2)
    taken = await until(client, req.id, lambda r: r.epoch >= 2 and (r.running or r.final))
    done_before = sum(1 for r in await client.store.get_many([b.id for b in behind]) if r.final)
    finished = await until(client, req.id, lambda r: r.final)
    for b in behind:
        if not (await client.get(b.id)).final:
            await client.cancel(b.id, "local")
    return {
        "ready": ready - killed,
        "requeued": requeued - killed,
        "taken": taken - killed,
        "done": finished - killed,
        "backlog_done": done_before,
    }


async def run(folder: Path, backlog: int, rounds: int) -> None:
    """Start the stack, enroll the demo assets, run the rounds, print the table."""
    redis = RedisProcess(folder / "redis")
    redis.start()
    env = {
        "JAYAVATAR_STUCK_AFTER_S": "120",
        "JAYAVATAR_MAX_CONCURRENT": "64",
        "JAYAVATAR_DAILY_QUOTA": "10000",
    }
    stack = Stack(folder, redis, extra_env=env)
    try:
        stack.start_worker("voice")
        stack.start_worker("lipsync")
        client = await JobClient.connect(stack.settings())  # type: ignore[arg-type]
        voice, _photo = demo_inputs()
        for submit, name, path in (
            (client.submit_voice_enroll, "demo", voice),
            (client.submit_avatar_enroll, "face", face_clip()),
        ):
            await client.wait((await submit("local", name, path)).id, 300)
        print(f"\nRecovery after SIGKILL of the voice worker mid-job, {backlog} queued behind, "
              f"stall timer 120 s, {os.cpu_count()} cores\n")  # fmt: skip
        print("| round | worker ready s | new epoch s | taken up s | done s | backlog done first |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for i in range(rounds):
            t = await one_round(stack, client, backlog)
            print(f"| {i + 1} | {t['ready']:.1f} | {t['requeued']:.1f} | {t['taken']:.1f} "
                  f"| {t['done']:.1f} | {t['backlog_done']:.0f} of {backlog} |")  # fmt: skip
        await client.close()
    finally:
        stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp), args.backlog, args.rounds))
