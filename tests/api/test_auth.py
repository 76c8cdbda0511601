"""Every route's auth: no key 401, a bad key 401, others' ids 404 like unknown ids, admin 403."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from api.keys import ApiKeys
from tests.abuse.discord import wav_bytes
from tests.api.live import headers

OPEN = {"/healthz", "/readyz", "/metrics"}
ADMIN_PREFIX = "/v1/admin/"


async def operations(api: httpx.AsyncClient) -> list[tuple[str, str]]:
    """Return (method, path template) of every operation in the served schema."""
    schema: dict[str, Any] = (await api.get("/openapi.json")).json()
    return [
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    ]


def fill(path: str, rid: str = "0" * 32) -> str:
    """Fill a path template with plausible values."""
    values = {
        "rid": rid,
        "name": "thing",
        "other": "bob",
        "owner": "bob",
        "user": "bob",
        "plural": "voices",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


async def test_the_schema_lists_the_routes_we_expect(api: httpx.AsyncClient) -> None:
    ops = set(await operations(api))
    for op in [
        ("POST", "/v1/renders"),
        ("GET", "/v1/requests/{rid}/video"),
        ("GET", "/v1/requests/{rid}/events"),
        ("PUT", "/v1/voices/{name}"),
        ("POST", "/v1/admin/pause"),
        ("GET", "/readyz"),
    ]:
        assert op in ops


async def test_every_route_without_a_key_is_401(api: httpx.AsyncClient) -> None:
    checked = 0
    for method, path in await operations(api):
        if path in OPEN:
            continue
        r = await api.request(method, fill(path), json={})
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["detail"].startswith("missing API key")
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize(
    "auth",
    [
        {"X-API-Key": "jya_000000000000_" + "A" * 43},
        {"Authorization": "Bearer not-a-key"},
        {"X-API-Key": ""},
    ],
)
async def test_every_route_with_a_bad_key_is_401(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    for method, path in await operations(api):
        if path in OPEN:
            continue
        r = await api.request(method, fill(path), headers=auth, json={})
        assert r.status_code == 401, (method, path, r.status_code, r.text)


async def test_a_revoked_key_is_401(api: httpx.AsyncClient, keys: ApiKeys) -> None:
    token, record = await keys.create("dave")
    assert (await api.get("/v1/me", headers=headers(token))).status_code == 200
    await keys.revoke(record.key_id)
    r = await api.get("/v1/me", headers=headers(token))
    assert r.status_code == 401
    assert r.json()["detail"] == "unknown or revoked API key"


async def test_bearer_and_header_keys_both_work(api: httpx.AsyncClient, alice: str) -> None:
    for auth in ({"X-API-Key": alice}, {"Authorization": f"Bearer {alice}"}):
        r = await api.get("/v1/me", headers=auth)
        assert r.json() == {"user": "alice", "admin": False, "key_id": alice[4:16]}


async def test_admin_routes_refuse_user_keys_with_403(api: httpx.AsyncClient, alice: str) -> None:
    admin_ops = [(m, p) for m, p in await operations(api) if p.startswith(ADMIN_PREFIX)]
    assert len(admin_ops) >= 6
    for method, path in admin_ops:
        r = await api.request(
            method, fill(path), headers=headers(alice), json={"daily": 1, "concurrent": 1}
        )
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["detail"] == "this needs an admin API key"


async def test_others_request_ids_answer_exactly_like_unknown_ids(
    api: httpx.AsyncClient, alice: str, bob: str, root: str
) -> None:
    created = await api.put("/v1/voices/bobs", headers=headers(bob), content=wav_bytes(3.0))
    assert created.status_code == 202
    bobs = created.json()["id"]
    unknown = "f" * 32
    request_ops = [(m, p) for m, p in await operations(api) if "{rid}" in p]
    assert len(request_ops) == 6
    for method, path in request_ops:
        theirs = await api.request(method, fill(path, bobs), headers=headers(alice))
        nobody = await api.request(method, fill(path, unknown), headers=headers(alice))
        assert theirs.status_code == nobody.status_code == 404, (method, path, theirs.text)
        assert theirs.json()["detail"] == f"no such request: {bobs}"
        assert nobody.json()["detail"] == f"no such request: {unknown}"
    # The owner and an admin do see it.
    for token in (bob, root):
        r = await api.get(f"/v1/requests/{bobs}", headers=headers(token))
        assert r.status_code == 200 and r.json()["user"] == "bob"
    listed = (await api.get("/v1/requests", headers=headers(alice))).json()["items"]
    assert listed == []


async def test_others_assets_cannot_be_deleted_or_shared(
    api: httpx.AsyncClient, alice: str, bob: str, keys: ApiKeys
) -> None:
    accounts = keys.accounts
    await accounts.register("avatar", "bob", "face", {})
    for method, path in [
        ("DELETE", "/v1/avatars/face"),
        ("PUT", "/v1/avatars/face/shares/carol"),
        ("DELETE", "/v1/avatars/face/shares/carol"),
    ]:
        r = await api.request(method, path, headers=headers(alice))
        assert r.status_code == 404, (method, path, r.text)
    r = await api.get("/v1/avatars/bob/face/poster.jpg", headers=headers(alice))
    assert r.status_code == 404
    assert await accounts.get_asset("avatar", "bob", "face") is not None


async def test_the_cookie_authorises_reads_but_not_writes(
    api: httpx.AsyncClient, alice: str
) -> None:
    api.cookies.set("jayavatar_key", alice)
    try:
        assert (await api.get("/v1/me")).status_code == 200
        r = await api.post("/v1/renders", json={"text": "hello"})
        assert r.status_code == 401
    finally:
        api.cookies.clear()
