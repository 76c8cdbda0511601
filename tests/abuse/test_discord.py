"""Bad input through Discord: the real bot process against the fake Discord, Redis only.

Slash-command options, attachments and button custom_ids, each answered with one ephemeral line
while Redis and storage stay exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.abuse.conftest import SAMPLE_CAP
from tests.abuse.discord import press, slash_with_size, still_gif, wav_bytes, zip_bomb
from tests.abuse.store import Snapshot, changed_keys, settled, snapshot
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
from tests.fakediscord.state import Interaction, Message
from tests.support.stack import RedisProcess, Stack

pytestmark = pytest.mark.timeout(300)
WARN = "⚠️ "


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDiscord]:
    """A fake Discord for the module."""
    server = FakeDiscord().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def people(fake: FakeDiscord) -> People:
    """An admin, Alice and Bob, a server with the bot and one without."""
    return make_people(fake)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis only (nothing runs), uploads capped at 64 KiB, room for many queued requests."""
    folder = tmp_path_factory.mktemp("abuse-discord")
    server = RedisProcess(folder / "redis")
    server.start()
    limits = {"JAYAVATAR_MAX_SAMPLE_BYTES": str(SAMPLE_CAP), "JAYAVATAR_MAX_CONCURRENT": "100"}
    yield Stack(folder, server, extra_env=limits)
    server.stop()


@pytest.fixture(scope="module")
def bot(stack: Stack, fake: FakeDiscord, people: People) -> Iterator[BotProcess]:
    """The real bot; Alice owns the voice and avatar `me`."""
    for kind in ("voice", "avatar"):
        run_async(stack, lambda c, k=kind: c.accounts.register(k, user_key(people.alice), "me", {}))
    process = start_bot(stack, fake, people)
    yield process
    process.kill()


def store(stack: Stack) -> Snapshot:
    """Return the current Redis and storage snapshot."""
    return run_async(stack, snapshot)  # type: ignore[no-any-return]


def quiet_store(stack: Stack) -> Snapshot:
    """Return the snapshot once the bot has settled."""
    return settled(lambda: store(stack))


Act = Callable[[FakeDiscord, People], Interaction]


def say(text: str, **options: Any) -> Act:
    """Alice's /say in the server."""
    return lambda fake, p: fake.slash(p.alice, "say", fake.channel_of(p.home), text=text, **options)


def add_voice(filename: str, data: bytes, kind: str = "audio/wav", name: str = "new") -> Act:
    """Alice's /voice add with an attachment."""

    def act(fake: FakeDiscord, p: People) -> Interaction:
        att = fake.upload(filename, kind, data)
        return fake.slash(p.alice, "voice add", fake.channel_of(p.home), sample=att, name=name)

    return act


def add_avatar(filename: str, data: bytes, kind: str) -> Act:
    """Alice's /avatar add with an attachment."""

    def act(fake: FakeDiscord, p: People) -> Interaction:
        att = fake.upload(filename, kind, data)
        return fake.slash(p.alice, "avatar add", fake.channel_of(p.home), media=att, name="new")

    return act


def lying_size(data: bytes, declared: int) -> Act:
    """Alice's /voice add whose attachment declares `declared` bytes."""

    def act(fake: FakeDiscord, p: People) -> Interaction:
        att = fake.upload("me.wav", "audio/wav", data)
        channel = fake.channel_of(p.home)
        return slash_with_size(fake, p.alice, channel, "voice add", declared, sample=att, name="x")

    return act


def expired(data: bytes, declared: int) -> Act:
    """Like `lying_size`, with a URL that no longer serves: a download would fail loudly."""

    def act(fake: FakeDiscord, p: People) -> Interaction:
        att = fake.upload("big.wav", "audio/wav", data)
        fake.call(lambda w: setattr(w.attachments[att.id], "expires_at", 0.0))
        channel = fake.channel_of(p.home)
        return slash_with_size(fake, p.alice, channel, "voice add", declared, sample=att, name="x")

    return act


GOOD_WAV = wav_bytes(3.0)
CASES: list[tuple[str, Act, str]] = [
    ("empty text", say(""), "the text is empty"),
    ("100k characters", say("a" * 100_000), "100000 characters long"),
    ("right-to-left override", say("\u202egnissim"), "bidirectional"),
    ("only zero-width", say("\u200b\u200d\u2060"), "the text is empty"),
    ("only emoji", say("🎉🎉🎉"), "no words"),
    ("control character", say("hi\x1b[2J"), "control character"),
    ("traversal voice option", say("hi", voice="../../etc/passwd"), "invalid user id"),
    ("newline in a user id", say("hi", voice="discord-1\n/me"), "invalid user id"),
    ("someone else's voice", say("hi", voice="discord-1/me"), "unknown voice"),
    ("unknown language", say("hi", language="klingon"), "not available"),
    ("text file named .txt", add_voice("notes.txt", b"notes", "text/plain"), "not a voice"),
    ("declared type lies", add_voice("me.wav", GOOD_WAV, "application/zip"), "application/zip"),
    ("bytes lie about type", add_voice("me.wav", b"hello " * 500), "unrecognised content"),
    ("zip bomb named .wav", add_voice("me.wav", zip_bomb()), "unrecognised content"),
    ("0 bytes", add_voice("me.wav", b""), "is empty"),
    ("truncated WAV header", add_voice("me.wav", GOOD_WAV[:30]), "cannot be read"),
    ("too short WAV", add_voice("me.wav", wav_bytes(0.5)), "at least 2 s"),
    ("WAV claiming 2 hours", add_voice("me.wav", wav_bytes(3.0, claim_s=7200)), "truncated"),
    ("traversal asset name", add_voice("me.wav", GOOD_WAV, name="../etc"), "invalid name"),
    ("over the cap, refused unread", expired(GOOD_WAV, SAMPLE_CAP + 1), "the limit is 64 KiB"),
    ("bigger than declared", lying_size(wav_bytes(9.0), 1000), "larger than 64 KiB"),
    ("still GIF avatar", add_avatar("still.gif", still_gif(), "image/gif"), "not an avatar"),
    ("GIF named .png", add_avatar("face.png", still_gif(), "image/png"), "unrecognised"),
]


@pytest.mark.parametrize(("case", "act", "words"), CASES, ids=[c[0] for c in CASES])
def test_refused_with_one_ephemeral_line(
    bot: BotProcess,
    fake: FakeDiscord,
    people: People,
    stack: Stack,
    case: str,
    act: Act,
    words: str,
) -> None:
    before = quiet_store(stack)
    answer = notice(fake, act(fake, people)).content
    assert answer.startswith(WARN) and words in answer, answer
    assert "\n" not in answer and len(answer) < 300
    assert store(stack) == before


def queued(fake: FakeDiscord, people: People, text: str = "Keep me.") -> tuple[Message, str]:
    """Queue one /say of Alice's in the server; return its reply and request id."""
    reply = queued_reply(fake, say(text)(fake, people))
    return reply, rid_of(reply)


def cancelled(fake: FakeDiscord, people: People) -> tuple[Message, str]:
    """Queue a /say of Alice's and cancel it herself; return its final message (with Retry)."""
    reply, rid = queued(fake, people, "Cancel me.")
    notice(fake, fake.click(people.alice, reply, f"job:cancel:{rid}"))
    final = fake.wait_for(
        lambda w: w.messages[reply.id] if "Cancelled." in w.messages[reply.id].content else None,
        "the cancelled reply",
    )
    return final, rid


BUTTONS: list[tuple[str, Callable[[FakeDiscord, People], tuple[Message, str]], str]] = [
    ("someone else's Cancel", lambda f, p: queued(f, p), "job:cancel:{rid}"),
    ("someone else's Retry", cancelled, "job:retry:{rid}"),
    ("forged unknown id", lambda f, p: queued(f, p), "job:cancel:" + "0" * 32),
]


@pytest.mark.parametrize(("case", "shown", "custom_id"), BUTTONS, ids=[b[0] for b in BUTTONS])
def test_buttons_act_only_for_their_owner(
    bot: BotProcess,
    fake: FakeDiscord,
    people: People,
    stack: Stack,
    case: str,
    shown: Callable[[FakeDiscord, People], tuple[Message, str]],
    custom_id: str,
) -> None:
    message, rid = shown(fake, people)
    state = run_async(stack, lambda c: c.get(rid)).state
    before = quiet_store(stack)
    answer = notice(fake, press(fake, people.bob, message, custom_id.format(rid=rid))).content
    assert answer.startswith(WARN) and "no such request" in answer and "\n" not in answer, answer
    after = store(stack)
    assert after == before, changed_keys(before, after)
    assert run_async(stack, lambda c: c.get(rid)).state == state


@pytest.mark.parametrize(
    "custom_id", ["job:cancel:../../x", "job:cancel:" + "a" * 200, "job:cancel:", "x" * 100]
)
def test_malformed_custom_ids_do_nothing(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack, custom_id: str
) -> None:
    reply, _rid = queued(fake, people)
    before = quiet_store(stack)
    pressed = press(fake, people.bob, reply, custom_id)
    # Nothing routes it: no answer (Discord shows "interaction failed"); the bot still serves.
    follow = fake.slash(people.bob, "jobs", fake.channel_of(people.home))
    notice(fake, follow)
    assert fake.call(lambda w: w.interactions[pressed.id].ack_type) is None
    assert store(stack) == before


def test_mention_spam_pings_nobody(bot: BotProcess, fake: FakeDiscord, people: People) -> None:
    spam = "@everyone @here " * 40 + f"<@{people.bob.id}> <@&{people.home.id}>"
    interaction = say(spam)(fake, people)
    reply = queued_reply(fake, interaction)
    assert "@everyone" in reply.content  # shown as typed
    sent = fake.call(
        lambda w: [p.json for p in w.posts if interaction.token in p.path and "content" in p.json]
    )
    assert sent and all(body.get("allowed_mentions") == {"parse": []} for body in sent)


def test_traversal_file_name_stays_inside_the_store(
    bot: BotProcess, fake: FakeDiscord, people: People, stack: Stack
) -> None:
    interaction = add_voice("..\\..\\..\\evil.wav", GOOD_WAV, name="trav")(fake, people)
    rid = rid_of(queued_reply(fake, interaction))
    req = run_async(stack, lambda c: c.get(rid))
    assert req.upload_key == f"uploads/{rid}/source.wav"
    outside = [p for p in stack.folder.rglob("evil*")]
    assert outside == []
