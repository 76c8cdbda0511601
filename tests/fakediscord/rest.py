"""The fake Discord's REST API: routing, auth, fault injection, recording, and the simple routes."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.fakediscord import messages, payloads
from tests.fakediscord.common import (
    BODY,
    CTX,
    Body,
    Ctx,
    Handler,
    bot_authorized,
    error,
    needs_bot,
    read_body,
    reply,
)
from tests.fakediscord.state import Post

API = "/api/v10"


def route_key(request: web.Request) -> str:
    """Return a rate-limit bucket key: method plus path without the query."""
    return f"{request.method} {request.path}"


@web.middleware
async def record_and_inject(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Parse the body, apply faults, serve, and record the exchange."""
    ctx = request.app[CTX]
    if not request.path.startswith(API):
        return await handler(request)
    body = await read_body(request)
    request[BODY] = body
    key = route_key(request)
    ctx.faults.rate_limits.note_request(key)
    rule = ctx.faults.match(request.method, request.path)
    if rule is not None:
        response = reply(rule.status, rule.body, rule.headers)
        if rule.status == 429:
            ctx.faults.rate_limits.note_429(key, float(rule.body["retry_after"]))
    else:
        response = await handler(request)  # type: ignore[assignment]
    _record(ctx, request, body, response.status)
    stall = ctx.faults.stall_for(request.method, request.path, bool(body.files))
    if stall is not None and response.status < 300:
        await stall.hold()
    return response


def _record(ctx: Ctx, request: web.Request, body: Body, status: int) -> None:
    ctx.world.posts.append(
        Post(
            method=request.method,
            path=request.path,
            status=status,
            json=body.json,
            files=[(name, len(data)) for name, data in body.files],
            at_monotonic=time.monotonic(),
            at_sim=ctx.world.clock.now(),
            authorized=bot_authorized(ctx, request),
        )
    )


@needs_bot
async def get_me(request: web.Request) -> web.StreamResponse:
    """`GET /users/@me`: the bot user."""
    ctx = request.app[CTX]
    return reply(200, payloads.user(ctx.world.bot))


@needs_bot
async def get_application(request: web.Request) -> web.StreamResponse:
    """`GET /oauth2/applications/@me`."""
    ctx = request.app[CTX]
    return reply(200, payloads.application(ctx.world))


async def get_gateway(request: web.Request) -> web.StreamResponse:
    """`GET /gateway` and `/gateway/bot`."""
    ctx = request.app[CTX]
    ws = ctx.base_url.replace("http://", "ws://") + "/gateway"
    limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
    return reply(200, {"url": ws, "shards": 1, "session_start_limit": limit})


@needs_bot
async def put_commands(request: web.Request) -> web.StreamResponse:
    """`PUT /applications/{app}/commands` (and the guild variant): store the command schemas."""
    ctx = request.app[CTX]
    raw: Any = request[BODY].json
    commands = raw if isinstance(raw, list) else []
    stored = []
    for command in commands:
        entry = {
            **command,
            "id": str(ctx.world.ids.next()),
            "application_id": str(ctx.world.application_id),
        }
        entry.setdefault("version", "1")
        entry.setdefault("type", 1)
        stored.append(entry)
    guild_id = request.match_info.get("guild_id")
    if guild_id is None:
        ctx.world.global_commands = stored
    else:
        ctx.world.guild_commands[int(guild_id)] = stored
    return reply(200, stored)


@needs_bot
async def get_commands(request: web.Request) -> web.StreamResponse:
    """`GET /applications/{app}/commands`."""
    ctx = request.app[CTX]
    guild_id = request.match_info.get("guild_id")
    if guild_id is None:
        return reply(200, ctx.world.global_commands)
    return reply(200, ctx.world.guild_commands.get(int(guild_id), []))


@needs_bot
async def open_dm(request: web.Request) -> web.StreamResponse:
    """`POST /users/@me/channels`: the DM channel with a user."""
    ctx = request.app[CTX]
    recipient = int(request[BODY].json.get("recipient_id", 0))
    user = ctx.world.users.get(recipient)
    if user is None:
        return error(400, 50035, "Invalid Form Body")
    return reply(200, payloads.channel(ctx.world, ctx.world.dm_channel(user)))


async def get_attachment(request: web.Request) -> web.StreamResponse:
    """Serve a stored file until its signed URL expires (simulated clock)."""
    ctx = request.app[CTX]
    att = ctx.world.attachments.get(int(request.match_info["attachment_id"]))
    ctx.world.fetches.append(int(request.match_info["attachment_id"]))
    if att is None or ctx.world.clock.now() > att.expires_at:
        return web.Response(status=404, text="This content is no longer available.")
    return web.Response(body=att.data, headers={"Content-Type": att.content_type})


def build_app(ctx: Ctx) -> web.Application:
    """Return the aiohttp application with every REST route."""
    app = web.Application(middlewares=[record_and_inject], client_max_size=200 * 1024 * 1024)
    app[CTX] = ctx
    app.router.add_get(f"{API}/users/@me", get_me)
    app.router.add_get(f"{API}/oauth2/applications/@me", get_application)
    app.router.add_get(f"{API}/gateway", get_gateway)
    app.router.add_get(f"{API}/gateway/bot", get_gateway)
    app.router.add_put(f"{API}/applications/{{app_id}}/commands", put_commands)
    app.router.add_get(f"{API}/applications/{{app_id}}/commands", get_commands)
    guild_cmds = f"{API}/applications/{{app_id}}/guilds/{{guild_id}}/commands"
    app.router.add_put(guild_cmds, put_commands)
    app.router.add_get(guild_cmds, get_commands)
    app.router.add_post(f"{API}/users/@me/channels", open_dm)
    app.router.add_get("/attachments/{attachment_id}/{filename}", get_attachment)
    messages.add_routes(app, API)
    return app
