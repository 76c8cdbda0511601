"""Liveness and readiness: Redis must answer and each queue must have a live ARQ worker."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from jayavatar.settings import Settings
from tests.api.live import live_server, make_settings
from tests.support.stack import RedisProcess


async def test_healthz_answers_without_workers(api: httpx.AsyncClient) -> None:
    r = await api.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


async def test_readyz_names_each_queue_without_a_worker(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    r = await api.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["redis"] == "ok"
    assert body["queues"] == {
        settings.voice_queue: "no live worker",
        settings.lipsync_queue: "no live worker",
    }
    assert body["ready"] is False


def test_readyz_is_503_while_redis_is_down_and_healthz_stays_up(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    settings = make_settings(redis.url, tmp_path / "data")
    try:
        with live_server(settings) as base:
            assert httpx.get(f"{base}/readyz").json()["redis"] == "ok"
            redis.kill()
            r = httpx.get(f"{base}/readyz", timeout=30)
            assert r.status_code == 503
            assert r.json()["redis"].startswith("unreachable")
            assert httpx.get(f"{base}/healthz").status_code == 200
            assert httpx.get(f"{base}/metrics", timeout=30).status_code == 503
    finally:
        redis.stop()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_probes_need_no_key(api: httpx.AsyncClient, path: str) -> None:
    assert (await api.get(path)).status_code in (200, 503)
