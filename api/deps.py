"""What the routes take from the running app: the job client and the settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from jayavatar.settings import Settings
from jobs.client import JobClient


# Async although they only read app state: FastAPI runs a plain `def` dependency on a worker
# thread, two thread hops per request that cost more than the request's own work under a burst.
async def client_of(request: Request) -> JobClient:
    """Return the app's job client (connected in the lifespan)."""
    client: JobClient = request.app.state.client
    return client


async def settings_of(request: Request) -> Settings:
    """Return the settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


Client = Annotated[JobClient, Depends(client_of)]
Config = Annotated[Settings, Depends(settings_of)]
