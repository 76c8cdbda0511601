"""While Redis is down every route answers 503 with Retry-After, and the connection stays usable."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from api.keys import ApiKeys
from jobs.client import JobClient
from tests.api.live import headers, live_server, make_settings
from tests.support.stack import RedisProcess

ROUTES = [
    ("GET", "/v1/requests"),
    ("GET", "/v1/requests/0123456789abcdef0123456789abcdef"),
    ("POST", "/v1/renders"),
    ("POST", "/v1/requests/0123456789abcdef0123456789abcdef/cancel"),
    ("GET", "/v1/voices"),
    ("GET", "/v1/admin/stats"),
]


async def make_key(settings: object) -> str:
    """Create a user key while Redis is up."""
    client = await JobClient.connect(settings)  # type: ignore[arg-type]
    try:
        token, _ = await ApiKeys(client.redis, client.settings, client.accounts).create("alice")
        return token
    finally:
        await client.close()


def test_every_route_is_503_with_retry_after_while_redis_is_down(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    settings = make_settings(redis.url, tmp_path / "data")
    try:
        token = asyncio.run(make_key(settings))
        with live_server(settings) as base, httpx.Client(base_url=base, timeout=60) as http:
            assert http.get("/v1/requests", headers=headers(token)).status_code == 200
            redis.kill()
            for method, path in ROUTES:
                body = {"text": "hello"} if path == "/v1/renders" else None
                r = http.request(method, path, headers=headers(token), json=body)
                assert r.status_code == 503, (method, path, r.status_code, r.text)
                assert r.headers["Retry-After"].isdigit(), (method, path)
                assert "try again" in r.json()["detail"] or "Redis" in r.json()["detail"]
            # Back up: the same client (same pooled connection) is answered normally.
            redis.start()
            assert http.get("/v1/requests", headers=headers(token)).status_code == 200
    finally:
        redis.stop()
