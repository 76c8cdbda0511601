"""Consent, quotas, allow/deny, pause and purge, through JobClient on a real Redis (no workers)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from jayavatar.errors import BadInput, Forbidden, NotFound
from jobs.client import JobClient
from jobs.validate import clean_text
from tests.support.assets import wav
from tests.support.stack import RedisProcess, Stack


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis only: requests are queued but never run."""
    folder = tmp_path_factory.mktemp("policy")
    server = RedisProcess(folder / "redis")
    server.start()
    stack = Stack(
        folder,
        server,
        extra_env={
            "JAYAVATAR_DAILY_QUOTA": "3",
            "JAYAVATAR_MAX_CONCURRENT": "2",
            "JAYAVATAR_ADMIN_USER_IDS": "[42]",
        },
    )
    yield stack
    stack.stop()


@pytest.fixture
async def jc(bare: Stack) -> AsyncIterator[JobClient]:
    """A client on a freshly emptied Redis and storage."""
    client = await JobClient.connect(bare.settings())  # type: ignore[arg-type]
    await client.redis.flushdb()
    client.storage.delete_prefix("voices")
    client.storage.delete_prefix("avatars")
    yield client
    await client.close()


async def give(jc: JobClient, kind: Any, owner: str, name: str) -> None:
    """Pretend an enrollment finished: files in storage plus the registry entry."""
    prefix = f"{kind}s/{owner}/{name}"
    jc.storage.put_bytes(f"{prefix}/meta.json", b"{}")
    await jc.accounts.register(kind, owner, name, {})


async def test_someone_elses_voice_needs_a_share(jc: JobClient) -> None:
    await give(jc, "voice", "discord-1", "mom")
    await give(jc, "avatar", "discord-2", "me")
    with pytest.raises(NotFound, match="not shared"):
        await jc.submit_render("discord-2", "hi", "discord-1/mom", "me")
    assert await jc.list_requests() == []
    await jc.accounts.share("voice", "discord-1", "mom", "discord-2")
    req = await jc.submit_render("discord-2", "hi", "discord-1/mom", "me")
    assert req.voice == "discord-1/mom" and req.avatar == "discord-2/me"
    await jc.accounts.unshare("voice", "discord-1", "mom", "discord-2")
    with pytest.raises(NotFound):
        await jc.submit_render("discord-2", "hi", "discord-1/mom", "me")
    with pytest.raises(NotFound):
        await jc.submit_render("discord-2", "hi", "discord-1/nobody", "me")


async def test_quotas_deny_and_pause(jc: JobClient) -> None:
    await give(jc, "voice", "discord-7", "v")
    await give(jc, "avatar", "discord-7", "a")
    first = await jc.submit_render("discord-7", "one", "v", "a")
    await jc.submit_render("discord-7", "two", "v", "a")
    with pytest.raises(Forbidden, match="in progress"):
        await jc.submit_render("discord-7", "three", "v", "a")
    await jc.cancel(first.id, "discord-7")
    await jc.submit_render("discord-7", "three", "v", "a")
    await jc.accounts.set_quota("discord-7", daily=3, concurrent=10)
    with pytest.raises(Forbidden, match="daily limit"):
        await jc.submit_render("discord-7", "four", "v", "a")
    await jc.accounts.set_quota("discord-7", daily=10, concurrent=10)
    await jc.accounts.deny("discord-7")
    with pytest.raises(Forbidden, match="not allowed"):
        await jc.submit_render("discord-7", "five", "v", "a")
    await jc.accounts.allow("discord-7")
    await jc.accounts.pause()
    with pytest.raises(Forbidden, match="paused"):
        await jc.submit_render("discord-7", "six", "v", "a")
    assert await jc.accounts.is_admin("discord-42") and not await jc.accounts.is_admin("discord-7")
    assert len(await jc.list_requests("discord-7")) == 3


async def test_other_users_requests_look_missing(jc: JobClient) -> None:
    await give(jc, "voice", "discord-1", "v")
    await give(jc, "avatar", "discord-1", "a")
    req = await jc.submit_render("discord-1", "mine", "v", "a")
    with pytest.raises(NotFound):
        await jc.get(req.id, "discord-2")
    with pytest.raises(NotFound):
        await jc.cancel(req.id, "discord-2")
    assert (await jc.get(req.id, "discord-42")).id == req.id  # an admin sees it


async def test_purge_removes_every_trace(jc: JobClient, tmp_path: Path) -> None:
    await give(jc, "voice", "discord-9", "v")
    await give(jc, "avatar", "discord-9", "a")
    await jc.accounts.share("voice", "discord-9", "v", "discord-1")
    await jc.accounts.set_default("discord-9", voice="v")
    sample = tmp_path / "s.wav"
    wav(sample, 3.0)
    await jc.submit_voice_enroll("discord-9", "w", sample)
    req = await jc.submit_render("discord-9", "bye", "v", "a")
    jc.storage.put_bytes(f"renders/discord-9/{req.id}.mp4", b"mp4")
    counts = await jc.purge_user("discord-9")
    assert counts["voices"] == 1 and counts["avatars"] == 1 and counts["records"] == 2
    assert jc.storage.list("voices/discord-9") == [] and jc.storage.list("renders/discord-9") == []
    assert jc.storage.list("uploads") == []
    assert await jc.accounts.list_voices("discord-1") == []
    assert await jc.list_requests("discord-9") == []
    leftovers = [k async for k in jc.redis.scan_iter(match="*discord-9*")]
    assert leftovers == []


def test_text_cleaning() -> None:
    from jayavatar.settings import Settings

    settings = Settings(max_text_chars=20)
    assert clean_text("  Happy\u200b birthday,\n Sam!  ", settings) == "Happy birthday, Sam!"
    for bad, words in [
        ("", "empty"),
        ("\u202eevil", "bidirectional"),
        ("a\x1bb", "control"),
        ("x" * 21, "limit is 20"),
        ("...", "no words"),
    ]:
        with pytest.raises(BadInput, match=words):
            clean_text(bad, settings)
