"""Authorization at `JobClient` and `Accounts`, which every front calls: each attempt to reach
past one's rights is refused and changes nothing; each rightful action (the control) works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jayavatar.errors import Forbidden, NotFound, UserError
from jobs.client import JobClient
from tests.abuse.store import snapshot
from tests.support.assets import wav
from tests.support.stack import RedisProcess, Stack

ALICE, BOB, MALLORY, ADMIN = "discord-11", "discord-12", "discord-13", "discord-99"


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis only; daily quota 3, two requests at a time, discord-99 is an admin."""
    folder = tmp_path_factory.mktemp("auth")
    server = RedisProcess(folder / "redis")
    server.start()
    limits = {
        "JAYAVATAR_DAILY_QUOTA": "3",
        "JAYAVATAR_MAX_CONCURRENT": "2",
        "JAYAVATAR_ADMIN_USER_IDS": "[99]",
    }
    yield Stack(folder, server, extra_env=limits)
    server.stop()


@pytest.fixture
async def jc(bare: Stack) -> AsyncIterator[JobClient]:
    """Alice owns voice and avatar `mine`, shared with nobody; Bob owns `his`."""
    client = await JobClient.connect(bare.settings())  # type: ignore[arg-type]
    await client.redis.flushdb()
    for top in ("voices", "avatars", "uploads", "renders", "work"):
        client.storage.delete_prefix(top)
    for user, name in ((ALICE, "mine"), (BOB, "his")):
        for kind in ("voice", "avatar"):
            client.storage.put_bytes(f"{kind}s/{user}/{name}/meta.json", b"{}")
            await client.accounts.register(kind, user, name, {})
    yield client
    await client.close()


Attempt = Callable[[JobClient], Awaitable[Any]]
ATTEMPTS: list[tuple[str, Attempt, type[UserError]]] = [
    (
        "render with another's voice",
        lambda c: c.submit_render(BOB, "hi", f"{ALICE}/mine", "his"),
        NotFound,
    ),
    (
        "render with another's avatar",
        lambda c: c.submit_render(BOB, "hi", "his", f"{ALICE}/mine"),
        NotFound,
    ),
    (
        "default to another's voice",
        lambda c: c.accounts.resolve("voice", BOB, f"{ALICE}/mine"),
        NotFound,
    ),
    ("share another's voice", lambda c: c.accounts.share("voice", BOB, "mine", MALLORY), NotFound),
    (
        "unshare another's avatar",
        lambda c: c.accounts.unshare("avatar", BOB, "mine", ALICE),
        NotFound,
    ),
    ("remove another's voice", lambda c: c.accounts.remove("voice", BOB, "mine"), NotFound),
    ("remove another's avatar", lambda c: c.accounts.remove("avatar", MALLORY, "mine"), NotFound),
]


@pytest.mark.parametrize(("case", "attempt", "error"), ATTEMPTS, ids=[a[0] for a in ATTEMPTS])
async def test_others_assets_are_out_of_reach(
    jc: JobClient, case: str, attempt: Attempt, error: type[UserError]
) -> None:
    before = await snapshot(jc)
    with pytest.raises(error):
        await attempt(jc)
    assert await snapshot(jc) == before


async def test_a_share_opens_exactly_one_asset_until_withdrawn(jc: JobClient) -> None:
    await jc.accounts.share("voice", ALICE, "mine", BOB)
    assert (await jc.submit_render(BOB, "hi", f"{ALICE}/mine", "his")).voice == f"{ALICE}/mine"
    with pytest.raises(NotFound):  # the avatar was not shared
        await jc.submit_render(BOB, "hi", "his", f"{ALICE}/mine")
    with pytest.raises(NotFound):  # nor was the voice shared with Mallory
        await jc.submit_render(MALLORY, "hi", f"{ALICE}/mine", f"{BOB}/his")
    await jc.accounts.unshare("voice", ALICE, "mine", BOB)
    with pytest.raises(NotFound):
        await jc.submit_render(BOB, "hi", f"{ALICE}/mine", "his")
    await jc.accounts.share("voice", ALICE, "mine", BOB)
    await jc.accounts.remove("voice", ALICE, "mine")
    with pytest.raises(NotFound):  # a removed asset is gone for those it was shared with
        await jc.submit_render(BOB, "hi", f"{ALICE}/mine", "his")


async def refused_without_trace(jc: JobClient, attempt: Awaitable[Any], words: str) -> None:
    """Expect `Forbidden` saying `words`, with Redis and storage unchanged."""
    before = await snapshot(jc)
    with pytest.raises(Forbidden, match=words):
        await attempt
    assert await snapshot(jc) == before


async def test_denied_users_cannot_render_until_allowed(jc: JobClient) -> None:
    await jc.accounts.deny(BOB)
    await refused_without_trace(jc, jc.submit_render(BOB, "hi", "his", "his"), "not allowed")
    await jc.accounts.allow(BOB)
    assert (await jc.submit_render(BOB, "hi", "his", "his")).state == "queued"


async def test_closed_deployments_admit_only_the_allowed(jc: JobClient) -> None:
    closed = JobClient(
        jc.settings.model_copy(update={"allow_by_default": False}), jc.redis, jc.storage
    )
    await refused_without_trace(
        closed, closed.submit_render(BOB, "hi", "his", "his"), "not allowed"
    )
    await closed.accounts.allow(BOB)
    assert (await closed.submit_render(BOB, "hi", "his", "his")).state == "queued"


async def test_pause_stops_everyone_but_admins(jc: JobClient) -> None:
    await jc.accounts.register("voice", ADMIN, "a", {})
    await jc.accounts.register("avatar", ADMIN, "a", {})
    await jc.accounts.pause()
    await refused_without_trace(jc, jc.submit_render(BOB, "hi", "his", "his"), "paused")
    assert (await jc.submit_render(ADMIN, "hi", "a", "a")).state == "queued"


async def test_concurrent_and_daily_limits_hold(jc: JobClient, tmp_path: Path) -> None:
    first = await jc.submit_render(BOB, "one", "his", "his")
    await jc.submit_render(BOB, "two", "his", "his")
    await refused_without_trace(jc, jc.submit_render(BOB, "three", "his", "his"), "in progress")
    sample = tmp_path / "s.wav"
    wav(sample, 3.0)
    # Enrollments count against the same concurrency limit.
    await refused_without_trace(jc, jc.submit_voice_enroll(BOB, "new", sample), "in progress")
    await jc.cancel(first.id, BOB)
    await jc.submit_render(BOB, "three", "his", "his")
    await jc.accounts.set_quota(BOB, daily=3, concurrent=10)
    await refused_without_trace(jc, jc.submit_render(BOB, "four", "his", "his"), "daily limit")


async def test_requests_are_private_but_admins_may_act(jc: JobClient) -> None:
    mine = await jc.submit_render(ALICE, "private", "mine", "mine")
    before = await snapshot(jc)
    for attempt in (jc.get(mine.id, BOB), jc.cancel(mine.id, BOB), jc.retry(mine.id, MALLORY)):
        with pytest.raises(NotFound):
            await attempt
    assert await snapshot(jc) == before
    assert (await jc.cancel(mine.id, ADMIN)).state == "cancelled"
