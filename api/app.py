"""The FastAPI app: `create_app(settings)` wires routes, auth, errors, metrics and the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api import admin, assets, dashboard, health, problems, renders
from api.auth import Caller
from api.guard import BodyGuard
from api.keys import ApiKeys
from api.metrics import Metrics
from api.schemas import ERRORS, KeyInfo
from jayavatar.lifeline import watch_parent
from jayavatar.settings import Settings
from jobs.client import JobClient

HERE = Path(__file__).parent


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Connect Redis and follow the completion stream while the app runs."""
    settings: Settings = app.state.settings
    client = await JobClient.connect(settings)
    app.state.client = client
    app.state.keys = ApiKeys(client.redis, settings, client.accounts)
    follower = asyncio.create_task(app.state.metrics.follow(client))
    try:
        yield
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await client.close()


def create_app(settings: Settings) -> FastAPI:
    """Build the API for these settings; Redis is connected when the app starts."""
    app = FastAPI(
        title="JayAvatar",
        version="1",
        summary="Render talking-avatar videos in your own cloned voice.",
        description=(
            "Authenticate with `X-API-Key: <key>` (or `Authorization: Bearer <key>`); "
            "keys come from `jayavatar apikey create USER`. Unknown ids and other users' ids "
            "both answer 404."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics(settings)
    app.add_middleware(BodyGuard, settings=settings)
    problems.install(app)
    app.include_router(health.router)
    app.include_router(renders.router)
    app.include_router(assets.router)
    app.include_router(admin.router)
    dashboard.install(app)
    app.add_api_route(
        "/v1/me", whoami, methods=["GET"], response_model=KeyInfo, tags=["auth"], responses=ERRORS
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app


def app_from_env() -> FastAPI:
    """Build the API from the environment's settings (each process of a several-process API)."""
    _die_with_parent()
    return create_app(Settings())


def _die_with_parent() -> None:
    """Stop this process (SIGTERM: uvicorn's own shutdown) when its supervisor dies."""
    # uvicorn's processes otherwise outlive a killed supervisor and keep serving its port.
    parent = multiprocessing.parent_process()
    supervisor = parent.pid if parent is not None and parent.pid else os.getppid()
    if not watch_parent(supervisor, lambda: os.kill(os.getpid(), signal.SIGTERM)):
        raise SystemExit("the API's supervisor is gone")


async def whoami(key: Caller) -> KeyInfo:
    """Return the user and role of the presented API key."""
    return KeyInfo(user=key.user, admin=key.admin, key_id=key.key_id)
