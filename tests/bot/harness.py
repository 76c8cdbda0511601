"""The real bot as a separate process (`jayavatar bot`), pointed at the fake Discord by settings."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import Guild, Interaction, Message, User, World
from tests.support.stack import ROOT, Stack, env_python

# `jayavatar bot`: the real click group with the bot command added the way `jayavatar.cli` does.
LAUNCH = (
    "from jayavatar.cli import main; from jayavatar.bot_cli import bot; "
    "main.add_command(bot); main(prog_name='jayavatar')"
)


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
        cmd = [str(env_python("core")), "-c", LAUNCH, "bot"]
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
