"""Helpers for the API tests: settings on a test Redis, a live uvicorn server in a thread."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from api.app import create_app
from jayavatar.settings import Settings
from tests.support.stack import free_port


def make_settings(redis_url: str, data_dir: Path, **overrides: object) -> Settings:
    """Return Settings on a given Redis and data folder, with a fresh key prefix and queues."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    values: dict[str, object] = {
        "redis_url": redis_url,
        "data_dir": data_dir,
        "key_prefix": prefix,
        "voice_queue": f"{prefix}:voice",
        "lipsync_queue": f"{prefix}:lipsync",
    }
    values.update(overrides)
    # Ignore the developer's JAYAVATAR_* variables: tests state what they need.
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith("JAYAVATAR_")]:
            del os.environ[name]
        return Settings.model_validate(values)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """Serve `create_app(settings)` with uvicorn on a free port; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def headers(token: str) -> dict[str, str]:
    """Return the auth header for a key."""
    return {"X-API-Key": token}


def wait_until_final(base: str, token: str, rid: str, limit_s: float = 240) -> dict[str, object]:
    """Poll a request until it is final; fail the test (not a timing assertion) if it never is."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        body: dict[str, object] = httpx.get(
            f"{base}/v1/requests/{rid}", headers=headers(token), timeout=10
        ).json()
        if body["state"] in ("done", "failed", "cancelled"):
            return body
        time.sleep(0.3)
    raise AssertionError(f"request {rid} did not finish within {limit_s} s")


def wait_for_metric(base: str, needle: str, limit_s: float = 30) -> str:
    """Return /metrics once it contains `needle` (the API counts completions as they stream in)."""
    deadline = time.monotonic() + limit_s
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(f"{base}/metrics", timeout=10).text
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"/metrics never showed {needle!r}; last:\n{text[-2000:]}")
