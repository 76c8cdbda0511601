"""Every API body is capped and every write authenticated before the body is read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from jayavatar.settings import Settings
from tests.api.live import headers

CHUNK = 16 * 1024


class Body:
    """A chunked body (the start of a JSON object, then padding) that counts chunks pulled."""

    def __init__(self, chunks: int) -> None:
        self.total = chunks
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(self.total):
            self.sent += 1
            head = b'{"text": "' if i == 0 else b""
            yield head + b"a" * (CHUNK - len(head))


async def test_a_body_without_a_key_is_not_read(api: httpx.AsyncClient) -> None:
    body = Body(25_000)  # 400 MB, were it read
    r = await api.post("/v1/renders", content=body, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["detail"]) == (401, "missing API key: send 'X-API-Key: <key>'")
    assert body.sent == 0


async def test_a_body_with_a_forged_key_is_not_read(api: httpx.AsyncClient) -> None:
    body = Body(25_000)
    forged = {"X-API-Key": "jya_000000000000_" + "x" * 43, "Content-Type": "application/json"}
    r = await api.post("/v1/renders", content=body, headers=forged)
    assert (r.status_code, r.json()["detail"]) == (401, "unknown or revoked API key")
    assert body.sent == 0


async def test_a_json_body_is_cut_off_at_its_cap(
    api: httpx.AsyncClient, alice: str, settings: Settings
) -> None:
    body = Body(1000)
    r = await api.post(
        "/v1/renders", content=body, headers={**headers(alice), "Content-Type": "application/json"}
    )
    assert (r.status_code, r.json()["detail"]) == (413, "the body is larger than 64 KiB, the limit")
    assert body.sent == settings.max_json_bytes // CHUNK + 1


async def test_a_declared_length_over_the_cap_is_refused_unread(
    api: httpx.AsyncClient, alice: str
) -> None:
    body = Body(4)
    sent = {**headers(alice), "Content-Type": "application/json", "Content-Length": "400000000"}
    r = await api.post("/v1/renders", content=body, headers=sent)
    assert (r.status_code, r.json()["detail"]) == (
        413,
        "the body is 400,000,000 bytes; the limit is 64 KiB",
    )
    assert body.sent == 0


async def test_forms_are_capped_too(api: httpx.AsyncClient) -> None:
    r = await api.post("/dashboard/login", data={"api_key": "k" * 100_000})
    assert r.status_code == 413
