"""Bad configuration: each `jayavatar` command answers one line on stderr, never a traceback,
and no secret (the bot token, a Redis password) ever shows in output or logs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.fakediscord.server import FakeDiscord
from tests.support.stack import ROOT, env_python

pytestmark = pytest.mark.timeout(120)
TOKEN = "MTIz.secret-bot-token.do-not-log-4f9a1c"
PASSWORD = "hunter2-do-not-log"
# `jayavatar` with the bot command registered, whichever module adds it.
LAUNCH = (
    "from cli.main import main; from cli.bot import bot; "
    "main.add_command(bot); main(prog_name='jayavatar')"
)
UNREACHABLE = f"redis://:{PASSWORD}@127.0.0.1:9/0"
RID = "0" * 32


def jayavatar(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI from the core environment with only the given JAYAVATAR_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JAYAVATAR_")}
    clean.update({f"JAYAVATAR_{k}": v for k, v in env.items()})
    cmd = [str(env_python("core")), "-c", LAUNCH, *args]
    return subprocess.run(cmd, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=90)


CASES: list[tuple[str, tuple[str, ...], dict[str, str], int, str]] = [
    (
        "data dir is a file",
        ("status", RID),
        {"DATA_DIR": str(ROOT / "pyproject.toml")},
        2,
        "storage folder",
    ),
    (
        "redis URL of another scheme",
        ("status", RID),
        {"REDIS_URL": "http://x/0"},
        2,
        "not a Redis URL",
    ),
    ("redis URL that is no URL", ("status", RID), {"REDIS_URL": "localhost"}, 2, "not a Redis URL"),
    (
        "unreachable redis with a password",
        ("status", RID),
        {"REDIS_URL": UNREACHABLE},
        1,
        "redis://***@",
    ),
    ("unknown voice engine", ("status", RID), {"VOICE_ENGINE": "nope"}, 2, "voice_engine"),
    ("admin ids not a list", ("status", RID), {"ADMIN_USER_IDS": "everyone"}, 2, "admin_user_ids"),
    ("negative text limit", ("status", RID), {"MAX_TEXT_CHARS": "-1"}, 2, "max_text_chars"),
    ("bot without a token", ("bot",), {"REDIS_URL": UNREACHABLE}, 2, "DISCORD_TOKEN is not set"),
    (
        "bot with redis away",
        ("bot",),
        {"REDIS_URL": UNREACHABLE, "DISCORD_TOKEN": TOKEN},
        1,
        "cannot reach Redis",
    ),
    (
        "worker with redis away",
        ("worker", "voice"),
        {"REDIS_URL": UNREACHABLE, "DISCORD_TOKEN": TOKEN},
        1,
        "cannot reach Redis",
    ),
]


@pytest.mark.parametrize(("case", "args", "env", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_one_line_and_no_secret(
    case: str, args: tuple[str, ...], env: dict[str, str], code: int, words: str
) -> None:
    done = jayavatar(*args, **env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert TOKEN not in done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    """A fake Discord that knows a different bot token."""
    server = FakeDiscord(token="the-real-token").start()
    yield server
    server.stop()


def test_a_refused_token_is_one_line_and_never_logged(fake: FakeDiscord) -> None:
    env = {k.removeprefix("JAYAVATAR_"): v for k, v in fake.bot_env().items()}
    env.update(DISCORD_TOKEN=TOKEN, REDIS_URL="redis://127.0.0.1:6379/15")
    done = jayavatar("bot", **env)
    assert TOKEN not in done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
