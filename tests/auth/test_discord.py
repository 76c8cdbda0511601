"""Authorization through Discord: the real bot against the fake Discord, Redis only.

Every /admin subcommand is tried by a user who is not an admin (and by the Administrator of a
server that only user-installed the app); others' voices are tried through /share, /voice and
/say; a denied user tries /say. Each is refused with one ephemeral line and changes nothing.
An admin's /admin purge then removes every trace of a user who used the bot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.abuse.store import Snapshot, settled, snapshot
from tests.auth.test_purge import traces
from tests.bot.harness import (
    BotProcess,
    People,
    make_people,
    notice,
    queued_reply,
    rid_of,
    run_async,
    start_bot,
    user_key,
)
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import Interaction
from tests.support.stack import RedisProcess, Stack

pytestmark = pytest.mark.timeout(300)
NOT_ADMIN = "⚠️ only JayAvatar admins can use /admin"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDiscord]:
    """A fake Discord for the module."""
    server = FakeDiscord().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def people(fake: FakeDiscord) -> People:
    """An admin, Alice and Bob; a server with the bot and one Alice owns without it."""
    return make_people(fake)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis only: nothing renders."""
    folder = tmp_path_factory.mktemp("auth-discord")
    server = RedisProcess(folder / "redis")
    server.start()
    yield Stack(folder, server)
    server.stop()


@pytest.fixture(scope="module")
def bot(stack: Stack, fake: FakeDiscord, people: People) -> Iterator[BotProcess]:
    """The real bot; Alice owns the voice and avatar `me` and has one render queued."""
    for kind in ("voice", "avatar"):
        run_async(stack, lambda c, k=kind: c.accounts.register(k, user_key(people.alice), "me", {}))
    process = start_bot(stack, fake, people)
    yield process
    process.kill()


@pytest.fixture(scope="module")
def alices_request(bot: BotProcess, fake: FakeDiscord, people: People) -> str:
    """A render Alice queued through /say."""
    say = fake.slash(people.alice, "say", fake.channel_of(people.home), text="Mine.")
    return rid_of(queued_reply(fake, say))


def store(stack: Stack) -> Snapshot:
    """Return the current Redis and storage snapshot."""
    return run_async(stack, snapshot)  # type: ignore[no-any-return]


Act = Callable[[FakeDiscord, People, str], Interaction]


def as_bob(command: str, **values: Any) -> Act:
    """Bob runs a command in the server (`{rid}` in a value is Alice's request id)."""

    def act(fake: FakeDiscord, p: People, rid: str) -> Interaction:
        filled = {k: fill(v, p, rid) for k, v in values.items()}
        return fake.slash(p.bob, command, fake.channel_of(p.home), **filled)

    return act


def fill(value: Any, p: People, rid: str) -> Any:
    """Resolve a placeholder: a person, or Alice's request id in a string."""
    if isinstance(value, Who):
        return getattr(p, value.name)
    return value.format(rid=rid) if isinstance(value, str) else value


class Who:
    """A placeholder for one of the people, filled in at run time."""

    def __init__(self, name: str) -> None:
        self.name = name


ALICE = Who("alice")
ATTEMPTS: list[tuple[str, Act, str]] = [
    ("/admin queue", as_bob("admin queue"), NOT_ADMIN),
    ("/admin cancel", as_bob("admin cancel", request_id="{rid}"), NOT_ADMIN),
    ("/admin retry", as_bob("admin retry", request_id="{rid}"), NOT_ADMIN),
    ("/admin pause", as_bob("admin pause"), NOT_ADMIN),
    ("/admin resume", as_bob("admin resume"), NOT_ADMIN),
    ("/admin allow", as_bob("admin allow", user=ALICE), NOT_ADMIN),
    ("/admin deny", as_bob("admin deny", user=ALICE), NOT_ADMIN),
    ("/admin quota", as_bob("admin quota", user=ALICE, daily=0, concurrent=1), NOT_ADMIN),
    ("/admin purge", as_bob("admin purge", user=ALICE), NOT_ADMIN),
    ("/admin stats", as_bob("admin stats"), NOT_ADMIN),
    (
        "/admin by a user-install Administrator",
        lambda f, p, _r: f.slash(
            p.alice, "admin stats", f.channel_of(p.elsewhere), user_install=True
        ),
        NOT_ADMIN,
    ),
    (
        "/share of another's voice",
        as_bob("share", kind="voice", name="me", user=ALICE),
        "no voice named",
    ),
    ("/voice remove of another's", as_bob("voice remove", name="me"), "no voice named"),
    ("/avatar remove of another's", as_bob("avatar remove", name="me"), "no avatar named"),
    (
        "/voice default to another's",
        lambda f, p, _r: f.slash(
            p.bob, "voice default", f.channel_of(p.home), name=f"{user_key(p.alice)}/me"
        ),
        "not shared",
    ),
    (
        "/say with another's voice",
        lambda f, p, _r: f.slash(
            p.bob, "say", f.channel_of(p.home), text="hi", voice=f"{user_key(p.alice)}/me"
        ),
        "not shared",
    ),
]


@pytest.mark.parametrize(("case", "act", "words"), ATTEMPTS, ids=[a[0] for a in ATTEMPTS])
def test_refused_and_nothing_changes(
    bot: BotProcess,
    fake: FakeDiscord,
    people: People,
    stack: Stack,
    alices_request: str,
    case: str,
    act: Act,
    words: str,
) -> None:
    before = settled(lambda: store(stack))
    answer = notice(fake, act(fake, people, alices_request)).content
    assert words in answer and "\n" not in answer, answer
    assert store(stack) == before


def test_a_denied_user_cannot_say(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    channel = fake.channel_of(people.home)
    admin = notice(fake, fake.slash(people.admin, "admin deny", channel, user=people.bob))
    assert admin.content.endswith("may no longer render.")
    before = settled(lambda: store(stack))
    refused = notice(fake, fake.slash(people.bob, "say", channel, text="let me", voice="x"))
    assert refused.content == "⚠️ you are not allowed to render; ask an admin"
    assert store(stack) == before


def test_admin_purge_leaves_no_trace_of_a_bot_user(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack, alices_request: str
) -> None:
    channel = fake.channel_of(people.home)
    alice = user_key(people.alice)
    run_async(stack, lambda c: c.accounts.share("voice", alice, "me", user_key(people.bob)))
    answer = notice(fake, fake.slash(people.admin, "admin purge", channel, user=people.alice))
    assert answer.content.startswith(f"Purged <@{people.alice.id}>")
    left = run_async(stack, lambda c: traces(c, [alice, alices_request]))
    assert left == [], left
