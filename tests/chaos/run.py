"""One chaos run: the real bot against the fake Discord, real workers, Redis with AOF; N `/say`
requests submitted like users would while a seeded schedule kills, stops and restarts processes.

Users behave like users: they wait for the bot to be online, and when an interaction gets no
answer (the bot died with it) or a refusal, they send `/say` again. So a run may create more
requests than it asked for; every one of them must be answered exactly once.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bot.harness import EPHEMERAL, FINAL_TAG, LOADING, user_key
from tests.chaos.audit import Report, audit, final_posts
from tests.chaos.cluster import Cluster
from tests.chaos.faults import Chaos, plan
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import Channel, Interaction, Message, User, World
from tests.support.assets import demo_inputs, face_clip
from tests.support.stack import RedisProcess, Stack

ANSWER_WAIT_S = 20.0
MAX_ATTEMPTS = 12
ACK_DEADLINE_S = 3.0  # Discord's: a later acknowledgement is refused with 10062


@dataclass(frozen=True)
class RunConfig:
    """Size and shape of a run."""

    requests: int
    faults: int
    seed: int
    submit_span_s: float
    job_timeout_s: int = 15
    # Share of requests whose owner presses Cancel a few seconds after the reply shows.
    cancel_share: float = 0.2
    settle_limit_s: float = 300.0


@dataclass
class Places:
    """The fake Discord's users and where they type."""

    owner: User
    friend: User
    admin: User
    server: Channel
    user_install: Channel
    dms: dict[int, Channel]

    def pick(self, index: int) -> tuple[User, Channel, bool]:
        """Return (who, where, as a user install) for the n-th request: server, DM, user install."""
        who = self.owner if index % 2 == 0 else self.friend
        if index % 3 == 0:
            return who, self.server, False
        if index % 3 == 1:
            return who, self.dms[who.id], False
        return who, self.user_install, True


@dataclass
class Submissions:
    """What the users sent and what they saw."""

    interactions: list[int] = field(default_factory=list)
    answered: int = 0
    refusals: list[str] = field(default_factory=list)
    unanswered: int = 0
    cancels: int = 0


def make_places(fake: FakeDiscord) -> Places:
    """Create two users, an admin, a server with the bot and one where only users installed it."""
    admin = fake.add_user("ada")
    owner = fake.add_user("carol")
    friend = fake.add_user("dave")
    home = fake.add_guild("home", admin)
    elsewhere = fake.add_guild("elsewhere", owner, bot_installed=False)
    dms = {u.id: fake.dm_channel(u) for u in (owner, friend)}
    return Places(owner, friend, admin, fake.channel_of(home), fake.channel_of(elsewhere), dms)


def run_chaos(config: RunConfig, folder: Path) -> Report:
    """Run the whole chaos scenario in `folder` and return its report."""
    fake = FakeDiscord().start()
    places = make_places(fake)
    server = RedisProcess(folder / "redis")
    server.start()
    stack = Stack(folder, server, extra_env={"JAYAVATAR_MAX_CONCURRENT": "1000"})
    cluster: Cluster | None = None
    try:
        enroll(stack, places)
        # Short job timeouts for the run, so a frozen worker outlives one within seconds.
        for worker in stack.workers.values():
            worker.kill()
        stack.extra_env.update(
            {
                f"JAYAVATAR_{k}_TIMEOUT_S": str(config.job_timeout_s)
                for k in ("VOICE", "LIPSYNC", "ENROLL")
            }
        )
        cluster = Cluster(stack, fake, bot_env(stack, fake, places))
        cluster.start()
        for name, member in cluster.members.items():
            if cluster.wait_ready(name, member.snapshot(), 120) is None:
                raise RuntimeError(f"{name} did not start")
        fake.wait_for(lambda w: bool(w.global_commands), "the bot to sync its commands")
        fake.call(lambda w: setattr(w, "ack_deadline_s", ACK_DEADLINE_S))
        rng = random.Random(config.seed)
        span = config.submit_span_s + 10.0
        chaos = Chaos(cluster, plan(rng, config.faults, span, config.job_timeout_s))
        chaos.start()
        sent = submit_all(fake, cluster, places, config, rng)
        chaos.join()
        settled = settle(fake, stack, cluster, places, config.settle_limit_s)
        return audit(stack, fake, cluster, chaos, sent, config, settled, users(places))
    finally:
        if cluster is not None:
            cluster.stop()
        else:
            for worker in stack.workers.values():
                worker.kill()
            server.stop()
        fake.stop()


def users(places: Places) -> list[str]:
    """Return the JayAvatar ids of the users who submit."""
    return [user_key(places.owner), user_key(places.friend)]


def bot_env(stack: Stack, fake: FakeDiscord, places: Places) -> dict[str, str]:
    """Return the bot's environment: the stack's, pointed at the fake Discord."""
    env = {**stack.env, **fake.bot_env()}
    env["JAYAVATAR_ADMIN_USER_IDS"] = json.dumps([places.admin.id])
    return env


def enroll(stack: Stack, places: Places) -> None:
    """Enroll the owner's voice and avatar, share them with the friend, make them defaults."""
    from jobs.accounts import AssetKind
    from jobs.client import JobClient

    voice, _photo = demo_inputs()
    clip = face_clip()
    stack.start_worker("voice")
    stack.start_worker("lipsync")
    owner, friend = user_key(places.owner), user_key(places.friend)

    async def work() -> None:
        client = await JobClient.connect(stack.settings())  # type: ignore[arg-type]
        try:
            assets: tuple[tuple[AssetKind, Path], ...] = (("voice", voice), ("avatar", clip))
            for kind, path in assets:
                submit = (
                    client.submit_voice_enroll if kind == "voice" else client.submit_avatar_enroll
                )
                done = await client.wait((await submit(owner, "me", path)).id, 300)
                assert done.state == "done", done.error
                await client.accounts.share(kind, owner, "me", friend)
            for who in (owner, friend):
                await client.accounts.set_default(who, voice=f"{owner}/me", avatar=f"{owner}/me")
        finally:
            await client.close()

    asyncio.run(work())


def submit_all(
    fake: FakeDiscord, cluster: Cluster, places: Places, config: RunConfig, rng: random.Random
) -> Submissions:
    """Send the run's `/say` requests, spread over the submission span."""
    sent = Submissions()
    gap = config.submit_span_s / max(config.requests, 1)
    for index in range(config.requests):
        time.sleep(rng.uniform(0.0, 2.0 * gap))
        cancel_after = rng.uniform(0.0, 4.0) if rng.random() < config.cancel_share else None
        who, where, user_install = places.pick(index)
        text = f"Chaos request {index}."
        answer = submit_one(fake, cluster, who, where, user_install, text, sent)
        if cancel_after is not None:
            sent.cancels += 1
            args = (fake, who, answer, cancel_after)
            threading.Thread(target=press_cancel, args=args, daemon=True).start()
    return sent


def press_cancel(fake: FakeDiscord, who: User, reply: Message, after_s: float) -> None:
    """Press the reply's Cancel button after a while, if it still has one."""
    time.sleep(after_s)
    current = fake.call(lambda w: w.messages.get(reply.id))
    buttons = [
        str(c.get("custom_id", ""))
        for row in (current.components if current else [])
        for c in row.get("components", [])
    ]
    for custom_id in buttons:
        if custom_id.startswith("job:cancel:"):
            fake.click(who, current, custom_id)  # type: ignore[arg-type]
            return


def submit_one(
    fake: FakeDiscord,
    cluster: Cluster,
    who: User,
    where: Channel,
    user_install: bool,
    text: str,
    sent: Submissions,
) -> Message:
    """Send `/say` until the bot shows it queued, as a user who retries would; return the reply."""
    for _attempt in range(MAX_ATTEMPTS):
        wait_bot_online(fake, cluster)
        interaction = fake.slash(who, "say", where, user_install=user_install, text=text)
        sent.interactions.append(interaction.id)
        answer = wait_answer(fake, interaction)
        if answer is None:
            sent.unanswered += 1
            continue
        if answer.flags & EPHEMERAL:
            sent.refusals.append(answer.content)
            time.sleep(1.0)
            continue
        sent.answered += 1
        return answer
    raise AssertionError(f"{text!r} was never queued after {MAX_ATTEMPTS} attempts")


def wait_bot_online(fake: FakeDiscord, cluster: Cluster, limit_s: float = 240.0) -> None:
    """Wait until the bot runs, is not frozen and holds a gateway session."""
    bot = cluster.members["bot"]
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if bot.alive() and not bot.paused and fake.gateway.connected():
            return
        time.sleep(0.1)
    raise AssertionError(f"the bot was not back online within {limit_s:.0f} s")


def wait_answer(fake: FakeDiscord, interaction: Interaction) -> Message | None:
    """Return the reply showing the request queued (or done), or a refusal; None if silence."""

    def answer(world: World) -> Message | None:
        for message in world.messages.values():
            if message.interaction_id != interaction.id or message.flags & LOADING:
                continue
            if message.flags & EPHEMERAL or message.content.startswith("⏳"):
                return message
            if FINAL_TAG in message.content:
                return message
        return None

    try:
        return fake.wait_for(answer, "an answer", timeout=ANSWER_WAIT_S)
    except TimeoutError:
        return None


def settle(
    fake: FakeDiscord, stack: Stack, cluster: Cluster, places: Places, limit_s: float
) -> bool:
    """Wait until every request is final, posted, and the completion stream fully handled."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if quiet(fake, cluster, stack, users(places)):
            return True
        time.sleep(0.5)
    return False


def quiet(fake: FakeDiscord, cluster: Cluster, stack: Stack, who: list[str]) -> bool:
    """Whether nothing is left: requests final and posted, no stream entry pending, workers idle."""
    import redis

    client = cluster.client()
    try:
        records = request_records(client, stack.prefix, who)
        groups = client.xinfo_groups(f"{stack.prefix}:completions")
        stream = client.xinfo_stream(f"{stack.prefix}:completions")
    except redis.RedisError:
        return False
    if any(r["state"] not in ("done", "failed", "cancelled") for r in records):
        return False
    posted = fake.call(final_posts)
    if any(r["id"][:12] not in posted for r in records):
        return False
    if not cluster.workers_idle():
        return False  # e.g. a quality report still being measured after the announcement
    discord = [g for g in groups if _s(g["name"]) == "discord"]
    last = _s(stream["last-generated-id"])
    return (
        bool(discord) and discord[0]["pending"] == 0 and _s(discord[0]["last-delivered-id"]) == last
    )


def request_records(client: Any, prefix: str, who: list[str]) -> list[dict[str, Any]]:
    """Return the raw records of every render these users asked for (not the enrollments)."""
    ids: list[str] = []
    for user in who:
        ids += [_s(i) for i in client.zrange(f"{prefix}:user:{user}:reqs", 0, -1)]
    raws = client.mget([f"{prefix}:req:{i}" for i in ids]) if ids else []
    records = [json.loads(r) for r in raws if r is not None]
    return [r for r in records if r["kind"] == "render"]


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
