"""Bad input at `JobClient`, the one front door the CLI, the bot and the API all call.

Each case must be refused with a clear one-line message and leave Redis and storage exactly as
they were: nothing queued, no record, no file, no counter moved.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from jayavatar.errors import BadInput, NotFound, TransientError, UserError, one_line
from jobs.client import JobClient
from tests.abuse.conftest import ALICE, BOB, SAMPLE_CAP
from tests.abuse.discord import wav_bytes
from tests.abuse.store import one_line as is_one_line
from tests.abuse.store import snapshot

Call = Callable[[JobClient, Path], Awaitable[Any]]


def render(text: Any = "Hello there.", **kw: Any) -> Call:
    """A render by Alice with her own voice and avatar unless overridden."""
    args = {"voice": "mine", "avatar": "mine", **kw}
    user = args.pop("user", ALICE)
    return lambda jc, _tmp: jc.submit_render(user, text, **args)


def enroll(name: str = "new", size: int | None = -1, filename: str = "s.wav") -> Call:
    """A voice enrollment by Alice from a WAV of `size` bytes (-1: a whole 3 s WAV; None: no
    file at all)."""

    async def call(jc: JobClient, tmp: Path) -> Any:
        path = tmp / filename
        if size is not None:
            data = wav_bytes(3.0)
            path.write_bytes(data if size < 0 else data[:size].ljust(size, b"\0"))
        return await jc.submit_voice_enroll(ALICE, name, path)

    return call


# (case, call, error class, words the message must contain)
CASES: list[tuple[str, Call, type[UserError], str]] = [
    ("empty text", render(""), BadInput, "text is empty"),
    ("whitespace text", render(" \n\t  "), BadInput, "text is empty"),
    ("huge text (100k chars)", render("a" * 100_000), BadInput, "100000 characters"),
    ("huge text of words", render("word " * 20_000), BadInput, "the limit is 1000"),
    ("right-to-left override", render("\u202eevil text"), BadInput, "bidirectional"),
    ("isolate controls", render("hi \u2067there\u2069"), BadInput, "bidirectional"),
    ("only zero-width characters", render("\u200b\u200c\u200d\ufeff"), BadInput, "empty"),
    ("only emoji", render("😀🎉🔥👍"), BadInput, "no words"),
    ("only punctuation", render("?!... ---"), BadInput, "no words"),
    ("NUL character", render("hi\x00there"), BadInput, "control character"),
    ("terminal escape", render("\x1b[31mred"), BadInput, "control character"),
    ("bell character", render("ding\x07"), BadInput, "control character"),
    ("lone surrogate", render("hello \ud800 world"), BadInput, "text"),
    ("text that is not a string", render(None), BadInput, "string"),
    ("unknown language", render(language="xx"), BadInput, "language 'xx'"),
    ("language with a path", render(language="../en"), BadInput, "language"),
    ("traversal in voice ref", render(voice="../../etc/passwd"), BadInput, "invalid"),
    ("traversal in avatar name", render(avatar="mine/../../x"), BadInput, "invalid name"),
    ("three-part ref", render(voice="a/b/c"), BadInput, "invalid name"),
    ("unknown voice", render(voice="nobody"), NotFound, "unknown voice"),
    ("unknown avatar owner", render(avatar="discord-9/mine"), NotFound, "unknown avatar"),
    ("other user's voice", render(voice=f"{BOB}/mine"), NotFound, "not shared"),
    ("other user's avatar", render(avatar=f"{BOB}/mine"), NotFound, "not shared"),
    ("traversal user id", render(user="../root"), BadInput, "invalid user id"),
    ("empty user id", render(user=""), BadInput, "invalid user id"),
    ("traversal asset name", enroll(name="../etc"), BadInput, "invalid name"),
    ("dot-dot asset name", enroll(name=".."), BadInput, "invalid name"),
    ("slash in asset name", enroll(name="a/b"), BadInput, "invalid name"),
    ("overlong asset name", enroll(name="n" * 33), BadInput, "invalid name"),
    ("emoji asset name", enroll(name="🎤"), BadInput, "invalid name"),
    ("blank asset name", enroll(name="   "), BadInput, "invalid name"),
    ("existing name without replace", enroll(name="mine"), BadInput, "already have a voice"),
    ("0-byte upload", enroll(size=0), BadInput, "empty (0 bytes)"),
    ("upload over the cap", enroll(size=SAMPLE_CAP + 1), BadInput, "the limit is"),
    ("missing upload", enroll(size=None), BadInput, "no such file"),
    ("malformed request id", lambda jc, _t: jc.get("../../etc/passwd"), NotFound, "no such"),
    ("unknown request id", lambda jc, _t: jc.get("0" * 32), NotFound, "no such request"),
    ("upper-case request id", lambda jc, _t: jc.get("A" * 32), NotFound, "no such request"),
    ("huge request id", lambda jc, _t: jc.cancel("f" * 100_000, ALICE), NotFound, "no such"),
    ("purge of a malformed user", lambda jc, _t: jc.purge_user("../x"), BadInput, "invalid user"),
]


@pytest.mark.parametrize(("case", "call", "error", "words"), CASES, ids=[c[0] for c in CASES])
async def test_refused_with_one_line_and_nothing_stored(
    jc: JobClient, tmp_path: Path, case: str, call: Call, error: type[UserError], words: str
) -> None:
    before = await snapshot(jc)
    with pytest.raises(error) as caught:
        await call(jc, tmp_path)
    message = one_line(caught.value)
    assert is_one_line(message) and words in message, message
    assert await snapshot(jc) == before


async def test_another_users_request_cannot_be_seen_cancelled_or_retried(jc: JobClient) -> None:
    mine = await jc.submit_render(ALICE, "Only mine.", "mine", "mine")
    before = await snapshot(jc)
    for attempt in (jc.get(mine.id, BOB), jc.cancel(mine.id, BOB), jc.retry(mine.id, BOB)):
        with pytest.raises(NotFound, match="no such request"):
            await attempt
    assert await snapshot(jc) == before
    assert (await jc.get(mine.id)).state == "queued"


async def test_cancelling_twice_says_so(jc: JobClient) -> None:
    mine = await jc.submit_render(ALICE, "Stop me.", "mine", "mine")
    await jc.cancel(mine.id, ALICE)
    before = await snapshot(jc)
    with pytest.raises(BadInput, match="already cancelled"):
        await jc.cancel(mine.id, ALICE)
    assert await snapshot(jc) == before


async def test_a_submission_that_fails_half_way_gives_the_daily_render_back(
    jc: JobClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def outage(*_args: Any) -> None:
        raise TransientError("Redis went away")

    monkeypatch.setattr(jc.store, "create", outage)
    with pytest.raises(TransientError):
        await jc.submit_render(ALICE, "Hello there.", "mine", "mine")
    used = await jc.redis.get(
        jc.settings.prefixed("usage", ALICE, time.strftime("%Y%m%d", time.gmtime()))
    )
    assert int(used or 0) == 0
