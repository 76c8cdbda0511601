"""API keys: hashed at rest, bound to a user, revocable."""

from __future__ import annotations

import pytest

from api.keys import ApiKeys
from jayavatar.errors import BadInput, NotFound
from jobs.client import JobClient


async def test_a_created_token_checks_back_to_its_user(keys: ApiKeys) -> None:
    token, record = await keys.create("alice", label="laptop")
    found = await keys.check(token)
    assert found is not None
    assert (found.user, found.admin, found.label, found.key_id) == (
        "alice",
        False,
        "laptop",
        record.key_id,
    )
    assert found.last_used_at > 0


async def test_only_the_right_secret_stamps_last_use(keys: ApiKeys) -> None:
    token, record = await keys.create("alice")
    key_id, secret = token[4:16], token[17:]
    wrong = f"jya_{key_id}_{'A' * 43 if secret != 'A' * 43 else 'B' * 43}"
    assert await keys.check(wrong) is None
    assert (await keys.get(record.key_id)).last_used_at == 0
    found = await keys.check(token)
    assert found is not None
    assert (await keys.get(record.key_id)).last_used_at == found.last_used_at > 0


async def test_only_a_hash_of_the_token_is_stored(keys: ApiKeys, client: JobClient) -> None:
    token, record = await keys.create("alice")
    stored = await client.redis.hgetall(keys._record_key(record.key_id))
    blob = b" ".join(list(stored.keys()) + list(stored.values()))
    secret = token.rsplit("_", 1)[1]
    assert secret.encode() not in blob
    assert token.encode() not in blob


@pytest.mark.parametrize(
    "bad",
    ["", "jya_", "nonsense", "jya_000000000000_" + "A" * 43, "Bearer x", "jya_zz_" + "a" * 43],
)
async def test_unknown_and_malformed_tokens_are_refused(keys: ApiKeys, bad: str) -> None:
    assert await keys.check(bad) is None


async def test_a_tampered_secret_is_refused(keys: ApiKeys) -> None:
    token, _ = await keys.create("alice")
    last = token[-1]
    tampered = token[:-1] + ("A" if last != "A" else "B")
    assert await keys.check(tampered) is None


async def test_revoked_keys_stop_working(keys: ApiKeys) -> None:
    token, record = await keys.create("alice")
    other, _ = await keys.create("alice")
    await keys.revoke(record.key_id)
    assert await keys.check(token) is None
    assert await keys.check(other) is not None
    with pytest.raises(NotFound):
        await keys.revoke(record.key_id)


async def test_listing_shows_every_key_or_one_users(keys: ApiKeys) -> None:
    _, a = await keys.create("alice")
    _, b = await keys.create("bob", admin=True)
    assert [k.key_id for k in await keys.list()] == [a.key_id, b.key_id]
    assert [k.key_id for k in await keys.list("bob")] == [b.key_id]
    assert (await keys.list("bob"))[0].admin is True


async def test_an_admin_key_makes_its_user_an_admin(keys: ApiKeys, client: JobClient) -> None:
    await keys.create("carol")
    assert not await client.accounts.is_admin("carol")
    await keys.create("carol", admin=True)
    assert await client.accounts.is_admin("carol")


@pytest.mark.parametrize("user", ["", "Alice", "a b", "x" * 65, "../etc"])
async def test_invalid_user_ids_are_refused(keys: ApiKeys, user: str) -> None:
    with pytest.raises(BadInput):
        await keys.create(user)
