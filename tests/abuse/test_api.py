"""Bad input through the HTTP API: one-line `detail`, the right status, the store unchanged."""

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
from tests.abuse.conftest import SAMPLE_CAP
from tests.abuse.discord import wav_bytes
from tests.abuse.store import one_line, snapshot
from tests.support.stack import RedisProcess

KEYS = ":apikey"  # key records note their last use: left out of the comparison


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server."""
    server = RedisProcess(tmp_path_factory.mktemp("abuse-api"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
async def world(
    redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, JobClient, dict[str, str]]]:
    """The app on an emptied Redis; Alice and Bob own `mine` and Bob has one queued render."""
    values: dict[str, Any] = {"redis_url": redis_url, "data_dir": tmp_path, "key_prefix": "abuse"}
    settings = Settings.model_validate({**values, "max_sample_bytes": SAMPLE_CAP})
    client = await JobClient.connect(settings)
    await client.redis.flushdb()
    tokens = {}
    for user in ("alice", "bob"):
        for kind in ("voice", "avatar"):
            client.storage.put_bytes(f"{kind}s/{user}/mine/meta.json", b"{}")
            await client.accounts.register(kind, user, "mine", {})
        tokens[user], _ = await ApiKeys(client.redis, settings, client.accounts).create(user)
    tokens["bob_rid"] = (await client.submit_render("bob", "Bob's.", "mine", "mine")).id
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http, client, tokens
    await client.close()


Call = tuple[str, str, dict[str, Any]]
ALICE = {"X-API-Key": "{alice}"}
CASES: list[tuple[str, Call, int, str]] = [
    ("no key", ("POST", "/v1/renders", {"json": {"text": "hi"}}), 401, "missing API key"),
    (
        "forged key",
        ("POST", "/v1/renders", {"json": {"text": "hi"}, "headers": {"X-API-Key": "jya_0_x"}}),
        401,
        "unknown or revoked",
    ),
    ("empty text", ("POST", "/v1/renders", {"json": {"text": ""}}), 422, "text"),
    ("100k characters", ("POST", "/v1/renders", {"json": {"text": "a" * 100_000}}), 413, "limit"),
    ("20k characters", ("POST", "/v1/renders", {"json": {"text": "a" * 20_000}}), 422, "text"),
    ("right-to-left override", ("POST", "/v1/renders", {"json": {"text": "\u202ex"}}), 422, "bidi"),
    (
        "lone surrogate",
        ("POST", "/v1/renders", {"content": b'{"text": "hi \\ud800"}'}),
        422,
        "valid string",
    ),
    (
        "acting as another user",
        ("POST", "/v1/renders", {"json": {"text": "hi", "user": "bob"}}),
        422,
        "user",
    ),
    (
        "negative max_bytes",
        ("POST", "/v1/renders", {"json": {"text": "hi", "max_bytes": -1}}),
        422,
        "max_bytes",
    ),
    ("malformed JSON", ("POST", "/v1/renders", {"content": b"{not json"}), 422, "JSON"),
    (
        "someone else's voice",
        ("POST", "/v1/renders", {"json": {"text": "hi", "voice": "bob/mine"}}),
        404,
        "not shared",
    ),
    (
        "someone else's voice that does not exist",
        ("POST", "/v1/renders", {"json": {"text": "hi", "voice": "bob/none"}}),
        404,
        "unknown voice 'bob/none', or not shared",
    ),
    ("newline in a user id", ("PUT", "/v1/voices/mine/shares/bob%0A", {}), 422, "pattern"),
    (
        "400 KB body with no key",
        ("POST", "/v1/renders", {"content": b'{"text": "' + b"a" * 400_000 + b'"}'}),
        401,
        "missing API key",
    ),
    ("traversal request id", ("GET", "/v1/requests/..%2F..%2Fetc%2Fpasswd", {}), 404, "Not Found"),
    ("malformed request id", ("GET", "/v1/requests/" + "z" * 32, {}), 422, "rid"),
    ("someone else's request", ("GET", "/v1/requests/{bob_rid}", {}), 404, "no such request"),
    (
        "someone else's cancel",
        ("POST", "/v1/requests/{bob_rid}/cancel", {}),
        404,
        "no such request",
    ),
    ("someone else's video", ("GET", "/v1/requests/{bob_rid}/video", {}), 404, "no such request"),
    ("empty upload", ("PUT", "/v1/voices/new", {"content": b""}), 422, "empty"),
    (
        "declared over the cap",
        (
            "PUT",
            "/v1/voices/new",
            {"content": b"x", "headers": {"Content-Length": str(SAMPLE_CAP + 1)}},
        ),
        413,
        "limit",
    ),
    (
        "over the cap while streaming",
        ("PUT", "/v1/voices/new", {"content": b"\0" * (SAMPLE_CAP + 1)}),
        413,
        "limit",
    ),
    (
        "traversal asset name",
        ("PUT", "/v1/voices/..%2Fetc", {"content": b"RIFF"}),
        404,
        "Not Found",
    ),
    (
        "existing asset without replace",
        ("PUT", "/v1/voices/mine", {"content": wav_bytes(3.0)}),
        422,
        "already have",
    ),
]


@pytest.mark.parametrize(("case", "call", "status", "words"), CASES, ids=[c[0] for c in CASES])
async def test_refused_with_one_line_and_nothing_stored(
    world: tuple[httpx.AsyncClient, JobClient, dict[str, str]],
    case: str,
    call: Call,
    status: int,
    words: str,
) -> None:
    http, client, tokens = world
    method, path, kw = call
    headers = {"X-API-Key": tokens["alice"], **kw.get("headers", {})}
    if "no key" in case:
        headers.pop("X-API-Key")
    if "content" in kw and "json" not in kw and not path.startswith("/v1/voices"):
        headers["Content-Type"] = "application/json"
    before = await snapshot(client, KEYS)
    extra = {k: v for k, v in kw.items() if k != "headers"}
    r = await http.request(method, path.format(**tokens), headers=headers, **extra)
    detail = str(r.json().get("detail", ""))
    assert r.status_code == status, (r.status_code, detail)
    assert one_line(detail) and words.lower() in detail.lower(), detail
    assert await snapshot(client, KEYS) == before


async def test_traversal_file_name_is_kept_inside_the_store(
    world: tuple[httpx.AsyncClient, JobClient, dict[str, str]], tmp_path: Path
) -> None:
    http, client, tokens = world
    r = await http.put(
        "/v1/voices/trav",
        params={"filename": "../../../../etc/passwd.wav"},
        headers={"X-API-Key": tokens["alice"]},
        content=wav_bytes(3.0),
    )
    assert r.status_code == 202, r.text
    req = await client.get(r.json()["id"])
    assert req.upload_key == f"uploads/{req.id}/source.wav"
    assert client.storage.exists(req.upload_key)
    assert [p for p in tmp_path.parent.rglob("passwd*")] == []
