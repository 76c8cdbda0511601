"""Authorization through the HTTP API: admin routes with a user key, others' requests, assets and
shares, a revoked key, a denied user. Each is refused and changes nothing; an admin key works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.keys import ApiKeys
from jayavatar.settings import Settings
from jobs.client import JobClient
from tests.abuse.store import snapshot
from tests.support.stack import RedisProcess

KEYS = ":apikey"  # key records note their last use: left out of the comparison
World = tuple[httpx.AsyncClient, JobClient, dict[str, str]]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server."""
    server = RedisProcess(tmp_path_factory.mktemp("auth-api"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
async def world(redis_url: str, tmp_path: Path) -> AsyncIterator[World]:
    """Alice and Bob own `mine`; Alice has a queued render; keys for both, a revoked one, root."""
    settings = Settings(redis_url=redis_url, data_dir=tmp_path, key_prefix="authapi")
    client = await JobClient.connect(settings)
    await client.redis.flushdb()
    keys = ApiKeys(client.redis, settings, client.accounts)
    tokens: dict[str, str] = {}
    for user in ("alice", "bob"):
        for kind in ("voice", "avatar"):
            client.storage.put_bytes(f"{kind}s/{user}/mine/meta.json", b"{}")
            await client.accounts.register(kind, user, "mine", {})
        tokens[user], _ = await keys.create(user)
    tokens["root"], _ = await keys.create("root", admin=True)
    tokens["revoked"], revoked = await keys.create("alice")
    await keys.revoke(revoked.key_id)
    tokens["rid"] = (await client.submit_render("alice", "Alice's.", "mine", "mine")).id
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http, client, tokens
    await client.close()


ADMIN_ROUTES = [
    ("GET", "/v1/admin/requests", None),
    ("POST", "/v1/admin/pause", None),
    ("POST", "/v1/admin/resume", None),
    ("GET", "/v1/admin/stats", None),
    ("POST", "/v1/admin/users/alice/allow", None),
    ("POST", "/v1/admin/users/alice/deny", None),
    ("PUT", "/v1/admin/users/alice/quota", {"daily": 0, "concurrent": 1}),
    ("DELETE", "/v1/admin/users/alice", None),
]
BOBS_REACH = [
    ("GET", "/v1/requests/{rid}", None, 404),
    ("POST", "/v1/requests/{rid}/cancel", None, 404),
    ("POST", "/v1/requests/{rid}/retry", None, 404),
    ("GET", "/v1/requests/{rid}/video", None, 404),
    ("GET", "/v1/requests/{rid}/events", None, 404),
    ("DELETE", "/v1/voices/alice%2Fmine", None, 404),
    ("PUT", "/v1/voices/mine/shares/alice", None, 204),  # his own `mine`: allowed, the control
    ("GET", "/v1/avatars/alice/mine/poster.jpg", None, 404),
    ("POST", "/v1/renders", {"text": "hi", "voice": "alice/mine", "avatar": "mine"}, 404),
    ("POST", "/v1/renders", {"text": "hi", "voice": "mine", "avatar": "alice/mine"}, 404),
]


async def call(world: World, who: str, method: str, path: str, body: Any) -> httpx.Response:
    """Make one call as `who`."""
    http, _client, tokens = world
    headers = {"X-API-Key": tokens[who]}
    return await http.request(method, path.format(**tokens), headers=headers, json=body)


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_refuse_user_keys(
    world: World, method: str, path: str, body: Any
) -> None:
    client = world[1]
    before = await snapshot(client, KEYS)
    r = await call(world, "bob", method, path, body)
    assert r.status_code == 403 and r.json()["detail"] == "this needs an admin API key"
    assert await snapshot(client, KEYS) == before
    assert (await call(world, "root", method, path, body)).status_code < 300  # the control


@pytest.mark.parametrize(("method", "path", "body", "status"), BOBS_REACH)
async def test_others_requests_and_assets_are_out_of_reach(
    world: World, method: str, path: str, body: Any, status: int
) -> None:
    client = world[1]
    before = await snapshot(client, KEYS)
    r = await call(world, "bob", method, path, body)
    assert r.status_code == status, r.text
    if status >= 400:
        assert await snapshot(client, KEYS) == before
    assert (await client.get(world[2]["rid"])).state == "queued"


async def test_a_revoked_key_opens_nothing(world: World) -> None:
    for method, path in (("GET", "/v1/requests/{rid}"), ("POST", "/v1/renders")):
        r = await call(world, "revoked", method, path, {"text": "hi"})
        assert r.status_code == 401 and r.json()["detail"] == "unknown or revoked API key"


async def test_a_denied_user_cannot_render(world: World) -> None:
    client = world[1]
    await client.accounts.deny("bob")
    before = await snapshot(client, KEYS)
    r = await call(
        world, "bob", "POST", "/v1/renders", {"text": "hi", "voice": "mine", "avatar": "mine"}
    )
    assert r.status_code == 403 and "not allowed" in r.json()["detail"]
    assert await snapshot(client, KEYS) == before
