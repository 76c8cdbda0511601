"""Purge: every file and record of a user goes, whichever part of the system wrote it.

The user is given everything a real one accumulates (assets shared both ways, defaults, quotas,
usage, a finished render with its quality report, a queued render, a failed enrollment, delivery
and bot bookkeeping); afterwards no Redis key, member, field or value and no stored
file may mention the user or any of their request ids. Other users' data stays untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.keys import ApiKeys
from jobs.client import JobClient
from jobs.completions import mark_delivered
from tests.support.assets import wav
from tests.support.stack import RedisProcess, Stack

GONE, STAYS = "discord-21", "discord-22"


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis only."""
    folder = tmp_path_factory.mktemp("purge")
    server = RedisProcess(folder / "redis")
    server.start()
    yield Stack(folder, server)
    server.stop()


@pytest.fixture
async def jc(bare: Stack) -> AsyncIterator[JobClient]:
    """A client on an emptied Redis and storage."""
    client = await JobClient.connect(bare.settings())  # type: ignore[arg-type]
    await client.redis.flushdb()
    yield client
    await client.close()


async def give(jc: JobClient, user: str, name: str) -> None:
    """Pretend a voice and an avatar were enrolled."""
    for kind in ("voice", "avatar"):
        jc.storage.put_bytes(f"{kind}s/{user}/{name}/meta.json", b"{}")
        await jc.accounts.register(kind, user, name, {})


async def live_a_little(jc: JobClient, user: str, other: str, tmp: Path) -> list[str]:
    """Give `user` a history touching every part of the store; return their request ids."""
    await give(jc, user, "me")
    await jc.accounts.share("voice", user, "me", other)
    await jc.accounts.share("avatar", other, "me", user)
    await jc.accounts.set_default(user, voice="me", avatar=f"{other}/me")
    await jc.accounts.set_quota(user, daily=10, concurrent=5)
    done = await jc.submit_render(user, "finished", "me", "me")
    key = f"renders/{user}/{done.id}.mp4"
    jc.storage.put_bytes(key, b"mp4")
    jc.storage.put_bytes(f"renders/{user}/{done.id}.quality.json", b"{}")
    await jc.store.update(done.id, lambda r: r.changed(state="done", output_key=key))
    await mark_delivered(jc.redis, jc.settings, done.id, "edit")
    await jc.redis.set(jc.settings.prefixed("discord", "msg", done.id), "123")
    queued = await jc.submit_render(user, "waiting", "me", "me")
    sample = tmp / "s.wav"
    wav(sample, 3.0)
    enroll = await jc.submit_voice_enroll(user, "other", sample)
    await jc.store.update(enroll.id, lambda r: r.changed(state="failed", error="bad"))
    return [done.id, queued.id, enroll.id]


async def traces(jc: JobClient, needles: list[str]) -> list[str]:
    """Return every Redis key, member, field or value and file path mentioning a needle."""
    found = []
    async for raw in jc.redis.scan_iter(match="*"):
        key = raw.decode()
        kind = (await jc.redis.type(key)).decode()
        if kind == "stream":
            continue  # the completion log: request ids and states only, trimmed with age
        blob = key + " " + repr(await _contents(jc, key, kind))
        found += [f"redis {key}" for n in needles if n in blob][:1]
    root = jc.settings.data_dir / "store"
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        found += [f"file {rel}" for n in needles if n in rel][:1]
    return found


async def _contents(jc: JobClient, key: str, kind: str) -> Any:
    if kind == "string":
        return await jc.redis.get(key)
    if kind == "hash":
        return await jc.redis.hgetall(key)
    if kind == "set":
        return await jc.redis.smembers(key)
    if kind == "zset":
        return await jc.redis.zrange(key, 0, -1)
    if kind == "list":
        return await jc.redis.lrange(key, 0, -1)
    return None


async def test_purge_leaves_no_trace_and_spares_others(jc: JobClient, tmp_path: Path) -> None:
    await give(jc, STAYS, "me")
    ids = await live_a_little(jc, GONE, STAYS, tmp_path)
    kept = await jc.submit_render(STAYS, "still mine", "me", "me")
    assert await traces(jc, [GONE, *ids])  # the probe sees the user before the purge

    counts = await jc.purge_user(GONE)

    assert counts["records"] == 3 and counts["voices"] == 1 and counts["avatars"] == 1
    left = await traces(jc, [GONE, *ids])
    assert left == [], "\n".join(left)
    assert (await jc.get(kept.id)).state == "queued"
    assert [a.ref for a in await jc.accounts.usable("voice", STAYS)] == [f"{STAYS}/me"]
    assert jc.storage.exists(f"voices/{STAYS}/me/meta.json")


async def test_purge_removes_the_users_api_keys(jc: JobClient) -> None:
    keys = ApiKeys(jc.redis, jc.settings, jc.accounts)
    token, _key = await keys.create(GONE)
    await jc.purge_user(GONE)
    assert await keys.check(token) is None
    assert await traces(jc, [GONE]) == []
