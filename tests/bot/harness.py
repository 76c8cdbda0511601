"""The real bot as a separate process (`jayavatar bot`), pointed at the fake Discord by settings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import Guild, Interaction, Message, User, World
from tests.support.stack import ROOT, Stack, env_python

# `jayavatar bot`, in the core environment.
BOT_COMMAND = ["-m", "cli.main", "bot"]


@dataclass
class People:
    """Users and servers of the fake Discord, made before the bot connects."""

    admin: User
    alice: User
    bob: User
    home: Guild
    elsewhere: Guild


def make_people(fake: FakeDiscord) -> People:
    """Create an admin, two users, a server with the bot and one where only users installed it."""
    admin = fake.add_user("ada")
    alice = fake.add_user("alice")
    bob = fake.add_user("bob")
    home = fake.add_guild("home", admin)
    elsewhere = fake.add_guild("elsewhere", alice, bot_installed=False)
    return People(admin, alice, bob, home, elsewhere)


@dataclass
class BotProcess:
    """One `jayavatar bot` process."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    def start(self) -> None:
        """Start the bot (it logs in, connects the gateway and syncs commands)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process owns it
        cmd = [str(env_python("core")), *BOT_COMMAND]
        self.proc = subprocess.Popen(
            cmd, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        self.starts += 1

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the bot and wait for it to exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def log(self) -> str:
        """Return what the bot logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def bot_env(stack: Stack, fake: FakeDiscord, people: People) -> dict[str, str]:
    """Return the environment of a bot process for this stack and fake Discord."""
    env = stack.env
    env.update(fake.bot_env())
    env["JAYAVATAR_ADMIN_USER_IDS"] = json.dumps([people.admin.id])
    return env


def start_bot(stack: Stack, fake: FakeDiscord, people: People) -> BotProcess:
    """Start a bot and wait until it is connected with its commands synced."""
    bot = BotProcess(bot_env(stack, fake, people), stack.folder / "bot.log")
    bot.start()
    wait_ready(fake, bot)
    return bot


def wait_ready(fake: FakeDiscord, bot: BotProcess, identifies: int | None = None) -> None:
    """Wait until the bot holds a gateway session and its commands are synced."""

    def ready(world: World) -> bool:
        if bot.proc is not None and bot.proc.poll() is not None:
            raise RuntimeError(f"the bot exited with {bot.proc.returncode}:\n{bot.log()[-3000:]}")
        enough = identifies is None or fake.gateway.stats.identifies >= identifies
        return enough and fake.gateway.connected() and bool(world.global_commands)

    fake.wait_for(ready, "the bot to connect and sync its commands", timeout=60)


def run_async(stack: Stack, work: Any) -> Any:
    """Run `work(client)` with a JobClient on the stack, from synchronous code."""
    from jobs.client import JobClient

    async def go() -> Any:
        client = await JobClient.connect(stack.settings())  # type: ignore[arg-type]
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(go())


EPHEMERAL = 1 << 6
LOADING = 1 << 7
FINAL_TAG = "-# request `"


def user_key(user: User) -> str:
    """Return the JayAvatar user id of a fake Discord user."""
    return f"discord-{user.id}"


def notice(fake: FakeDiscord, interaction: Interaction, timeout: float = 30.0) -> Message:
    """Wait for the ephemeral message an interaction got (a refusal or a listing)."""

    def find(world: World) -> Message | None:
        for message in world.messages.values():
            mine = message.interaction_id == interaction.id
            if mine and message.flags & EPHEMERAL and not message.flags & LOADING:
                return message
        return None

    return fake.wait_for(find, f"an ephemeral answer to interaction {interaction.id}", timeout)


def final_reply(fake: FakeDiscord, interaction: Interaction, timeout: float = 90.0) -> Message:
    """Wait until an interaction's reply shows a final result."""
    return fake.wait_original(
        interaction, lambda m: FINAL_TAG in m.content, "the final reply", timeout
    )


def rid_of(message: Message) -> str:
    """Return the request id in a reply's Cancel button."""
    for row in message.components:
        for item in row.get("components", []):
            custom_id = str(item.get("custom_id", ""))
            if custom_id.startswith("job:cancel:"):
                return custom_id.rsplit(":", 1)[1]
    raise AssertionError(f"no Cancel button on message {message.id}: {message.components}")


def queued_reply(fake: FakeDiscord, interaction: Interaction, timeout: float = 30.0) -> Message:
    """Wait until an interaction's reply shows the queued line with its Cancel button."""
    return fake.wait_original(
        interaction,
        lambda m: m.content.startswith("⏳") and bool(m.components),
        "a queued reply",
        timeout,
    )


@contextmanager
def frozen(stack: Stack, kind: str) -> Iterator[None]:
    """Hold a worker still (SIGSTOP on its process group) so a request waits where it is."""
    worker = stack.workers[kind]
    assert worker.proc is not None
    os.killpg(worker.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(worker.proc.pid, signal.SIGCONT)


def voice_sample(folder: Path, seconds: float = 6.0) -> Path:
    """Return the first seconds of the demo voice (enough to enroll, and quick to analyse)."""
    from tests.support.assets import demo_inputs

    out = folder / "voice-sample.wav"
    if not out.exists():
        with wave.open(str(demo_inputs()[0])) as src, wave.open(str(out), "wb") as dst:
            dst.setparams(src.getparams())
            dst.writeframes(src.readframes(int(seconds * src.getframerate())))
    return out


def enroll_demo_assets(stack: Stack, user: User) -> None:
    """Enroll a voice `me` and a short face clip `face` for a user, directly (not via the bot)."""
    from tests.support.assets import face_clip

    voice, clip = voice_sample(stack.folder), face_clip()

    async def work(client: Any) -> None:
        for kind, path, name in (("voice", voice, "me"), ("avatar", clip, "face")):
            submit = client.submit_voice_enroll if kind == "voice" else client.submit_avatar_enroll
            req = await submit(user_key(user), name, path)
            done = await client.wait(req.id, 180)
            assert done.state == "done", done.error

    run_async(stack, work)


def request_of(stack: Stack, rid: str) -> Any:
    """Return a request record."""
    return run_async(stack, lambda c: c.get(rid))


def _get(stack: Stack, key: str) -> bytes | None:
    value: bytes | None = redis.Redis.from_url(stack.redis.url).get(key)  # type: ignore[assignment]
    return value


def delivered(stack: Stack, rid: str) -> str | None:
    """Return how a request was delivered, as the bot recorded it, or None."""
    raw = _get(stack, f"{stack.prefix}:delivered:{rid}")
    return raw.decode() if raw is not None else None


def delivered_soon(stack: Stack, rid: str, timeout_s: float = 30.0) -> str | None:
    """Wait for the bot to record a delivery (it records right after the post succeeds)."""
    deadline = time.monotonic() + timeout_s
    while (how := delivered(stack, rid)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return how


def record(stack: Stack, rid: str) -> dict[str, Any]:
    """Read a request record straight from Redis (fast enough to catch a running stage)."""
    raw = _get(stack, f"{stack.prefix}:req:{rid}")
    assert raw is not None, f"no record for {rid}"
    data: dict[str, Any] = json.loads(raw)
    return data


def hold_in_stage(stack: Stack, kind: str, rid: str, state: str, timeout: float = 60) -> None:
    """Freeze the `kind` worker while `rid` is running in `state`; leave it frozen."""
    worker = stack.workers[kind]
    assert worker.proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = record(stack, rid)
        if now["state"] == state and now["running"]:
            os.killpg(worker.proc.pid, signal.SIGSTOP)
            again = record(stack, rid)
            if again["state"] == state and again["running"]:
                return
            os.killpg(worker.proc.pid, signal.SIGCONT)
            raise AssertionError(f"{rid} left {state} before its worker could be held")
        if now["state"] in ("done", "failed", "cancelled"):
            raise AssertionError(f"{rid} finished ({now['state']}) before reaching {state}")
        time.sleep(0.01)
    raise AssertionError(f"{rid} never ran in {state}")


def thaw(stack: Stack, kind: str) -> None:
    """Let a held worker go on."""
    worker = stack.workers[kind]
    assert worker.proc is not None
    os.killpg(worker.proc.pid, signal.SIGCONT)
