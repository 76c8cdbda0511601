"""Benchmark: a burst of /say interactions against the real bot process and the fake Discord.

Starts a private redis-server, the fake Discord (enforcing Discord's 3 s acknowledgement
deadline) and `jayavatar bot`, then dispatches COUNT /say interactions from USERS users as fast
as the gateway can send them. Prints acknowledgement latency (INTERACTION_CREATE sent → callback
received) at p50/p99/max, how many met the 3 s deadline, and the time until each reply showed its
queue position. No workers run: requests stay queued, which is what this measures.

Run from the repository root: `.venv/bin/python bench/discord_burst.py --count 200`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (nearest rank) of non-empty `values`."""
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(q / 100 * len(ranked) + 0.5) - 1))]


def prepare(stack: Any, users: list[Any], count: int) -> None:
    """Give every user a voice and an avatar record and room for the whole burst."""
    from tests.bot.harness import run_async, user_key

    async def work(client: Any) -> None:
        for user in users:
            uid = user_key(user)
            await client.accounts.register("voice", uid, "me", {})
            await client.accounts.register("avatar", uid, "face", {})
            await client.accounts.set_quota(uid, count * 2, count)

    run_async(stack, work)


def burst(fake: Any, users: list[Any], channel: Any, count: int) -> tuple[list[Any], float]:
    """Dispatch the interactions; return them and how long dispatching took."""
    start = time.monotonic()
    sent = [
        fake.slash(
            users[i % len(users)], "say", channel, text=f"Burst {i}.", voice="me", avatar="face"
        )
        for i in range(count)
    ]
    return sent, time.monotonic() - start


def measure(fake: Any, sent: list[Any], timeout: float) -> dict[str, Any]:
    """Wait for every reply to show its queue position; return latency figures."""
    from tests.bot.harness import queued_reply

    for interaction in sent:
        queued_reply(fake, interaction, timeout=timeout)
    done = time.monotonic()

    def figures(world: Any) -> tuple[list[float], list[float], int]:
        acks, replies = [], []
        for interaction in sent:
            record = world.interactions[interaction.id]
            if record.ack_latency_s is not None:
                acks.append(record.ack_latency_s)
            message = world.messages[record.original_id]
            replies.append(message.edited_at - record.created_at)
        return acks, replies, len(world.late_acks)

    acks, replies, late = fake.call(figures)
    return {"acks": acks, "replies": replies, "late": late, "finished": done}


def report(args: argparse.Namespace, dispatch_s: float, result: dict[str, Any]) -> None:
    """Print the benchmark table."""
    acks = [a * 1000 for a in result["acks"]]
    replies = [r * 1000 for r in result["replies"]]
    within = sum(a <= 3000 for a in acks)
    print(
        f"\n/say burst — {args.count} interactions from {args.users} users, "
        f"{platform.machine()} CPU, {_cores()} cores, no workers (requests stay queued)\n"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| dispatch of the burst (gateway) | {dispatch_s * 1000:.0f} ms |")
    print(
        f"| acknowledged within 3 s | {within} / {args.count} (late, refused: {result['late']}) |"
    )
    print(f"| ack latency p50 | {statistics.median(acks):.0f} ms |")
    print(f"| ack latency p99 | {percentile(acks, 99):.0f} ms |")
    print(f"| ack latency max | {max(acks):.0f} ms |")
    print(f"| reply shows queue position, p50 | {statistics.median(replies):.0f} ms |")
    print(f"| reply shows queue position, p99 | {percentile(replies, 99):.0f} ms |")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main() -> None:
    """Run the burst and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # the fake Discord and the stack helpers live under tests/

    from tests.bot.harness import make_people, start_bot
    from tests.fakediscord.server import FakeDiscord
    from tests.support.stack import RedisProcess, Stack

    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisProcess(Path(tmp) / "redis")
        redis.start()
        fake = FakeDiscord().start()
        fake.world.ack_deadline_s = 3.0  # as Discord: a late callback gets 10062
        bot = None
        try:
            people = make_people(fake)
            users = [fake.add_user(f"user{i}") for i in range(args.users)]
            stack = Stack(Path(tmp), redis)
            prepare(stack, users, args.count)
            bot = start_bot(stack, fake, people)
            sent, dispatch_s = burst(fake, users, fake.channel_of(people.home), args.count)
            report(args, dispatch_s, measure(fake, sent, args.timeout))
        finally:
            if bot is not None:
                bot.kill()
            fake.stop()
            redis.stop()


if __name__ == "__main__":
    main()
