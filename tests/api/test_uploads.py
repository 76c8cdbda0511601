"""Enrolment uploads: the size cap stops the upload while it streams, and names stay safe."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from jayavatar.settings import Settings
from jobs.client import JobClient
from tests.abuse.discord import wav_bytes
from tests.api.live import headers

CHUNK = 16 * 1024


class Body:
    """A chunked request body (a WAV) that counts how many chunks the server pulled."""

    def __init__(self, chunks: int) -> None:
        self.total = chunks
        self.sent = 0
        # A WAV header and 8 kHz 16-bit samples, padded to exactly `chunks` chunks.
        data = wav_bytes((chunks * CHUNK - 44) / 16_000)
        self.data = data + b"\0" * (chunks * CHUNK - len(data))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(self.total):
            self.sent += 1
            yield self.data[i * CHUNK : (i + 1) * CHUNK]


async def test_an_oversized_stream_is_cut_off_at_the_cap(
    api: httpx.AsyncClient, alice: str, settings: Settings, client: JobClient
) -> None:
    cap_chunks = settings.max_sample_bytes // CHUNK
    body = Body(cap_chunks * 20)
    r = await api.put("/v1/voices/big", headers=headers(alice), content=body)
    assert r.status_code == 413
    assert r.json()["detail"] == "the voice upload is larger than 64 KiB, the limit"
    # The server stopped reading one chunk past the cap, not at the end of the body.
    assert body.sent == cap_chunks + 1
    assert await client.list_requests("alice") == []


async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    api: httpx.AsyncClient, alice: str, settings: Settings
) -> None:
    body = Body(4)
    big = str(settings.max_sample_bytes + 1)
    r = await api.put(
        "/v1/voices/big",
        headers={**headers(alice), "Content-Length": big},
        content=body,
    )
    assert r.status_code == 413
    assert r.json()["detail"] == "the voice upload is 65,537 bytes; the limit is 64 KiB"
    assert body.sent == 0


async def test_an_upload_under_the_cap_queues_an_enrolment(
    api: httpx.AsyncClient, alice: str, client: JobClient
) -> None:
    body = Body(2)
    r = await api.put(
        "/v1/voices/Mine?filename=take1.wav",
        headers=headers(alice),
        content=body,
    )
    assert r.status_code == 202, r.text
    out = r.json()
    assert (out["kind"], out["state"], out["name"], out["user"]) == (
        "voice_enroll",
        "queued",
        "mine",
        "alice",
    )
    req = await client.get(out["id"])
    assert req.upload_key == f"uploads/{req.id}/source.wav"  # named by content, not by name
    stored = client.storage.local_path(req.upload_key)
    assert stored.stat().st_size == 2 * CHUNK
    assert out["queue_position"] == 1


async def test_an_invalid_name_is_refused_before_the_body_is_read(
    api: httpx.AsyncClient, alice: str
) -> None:
    body = Body(4)
    r = await api.put("/v1/avatars/no%20spaces!", headers=headers(alice), content=body)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("path.name: String should match pattern")
    assert body.sent == 0


async def test_an_empty_body_is_refused(api: httpx.AsyncClient, alice: str) -> None:
    r = await api.put("/v1/voices/empty", headers=headers(alice), content=b"")
    assert r.status_code == 422
    assert "empty" in r.json()["detail"]
