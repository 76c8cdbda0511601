"""Shared plumbing of the fake Discord's REST handlers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakediscord.faults import Faults
from tests.fakediscord.state import World

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Body:
    """A parsed request body: the JSON part and any uploaded files as (filename, bytes)."""

    json: dict[str, Any] = field(default_factory=dict)
    files: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Ctx:
    """What every handler needs."""

    world: World
    faults: Faults
    base_url: str = ""


CTX = web.AppKey("ctx", Ctx)
BODY = web.RequestKey("body", Body)


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> web.Response:
    """Answer with JSON; Content-Type must be exactly `application/json` for discord.py."""
    if status == 204:
        return web.Response(status=204)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(status=status, body=json.dumps(body).encode(), headers=hdrs)


def error(status: int, code: int, message: str) -> web.Response:
    """Answer with a Discord JSON error."""
    return reply(status, {"code": code, "message": message})


async def read_body(request: web.Request) -> Body:
    """Parse a JSON or multipart (payload_json + files[n]) request body."""
    if not request.can_read_body:
        return Body()
    if request.content_type.startswith("multipart/"):
        body = Body()
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            data = await part.read()
            if part.name == "payload_json":
                body.json = json.loads(data)
            else:
                body.files.append((part.filename or part.name, bytes(data)))
        return body
    raw = await request.read()
    return Body(json=json.loads(raw) if raw else {})


def bot_authorized(ctx: Ctx, request: web.Request) -> bool:
    """Whether the request carries the bot token."""
    return request.headers.get("Authorization") == f"Bot {ctx.world.bot_token}"


def needs_bot(handler: Handler) -> Handler:
    """Refuse requests without the bot token, as Discord does."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not bot_authorized(request.app[CTX], request):
            return error(401, 0, "401: Unauthorized")
        return await handler(request)

    return wrapped
