"""Message routes of the fake Discord: channel messages, interaction callbacks and webhooks."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakediscord import payloads
from tests.fakediscord.common import BODY, CTX, Body, Ctx, error, needs_bot, reply
from tests.fakediscord.state import Channel, Interaction, Message

EPHEMERAL = 1 << 6
LOADING = 1 << 7
MAX_CONTENT = 2000


def ctx_of(request: web.Request) -> Ctx:
    """Return the server context."""
    ctx = request.app[CTX]
    return ctx


def store_files(ctx: Ctx, body: Body, limit: int) -> list[int] | web.Response:
    """Store uploaded files, or answer 413 / 40005 if one is over `limit`."""
    if any(len(data) > limit for _, data in body.files):
        return error(413, 40005, "Request entity too large")
    ids = []
    for filename, data in body.files:
        ids.append(ctx.world.add_attachment(filename, "video/mp4", data).id)
    return ids


def check_content(payload: dict[str, Any]) -> web.Response | None:
    """Refuse content over Discord's 2000 characters."""
    content = payload.get("content")
    if isinstance(content, str) and len(content) > MAX_CONTENT:
        return error(400, 50035, "Invalid Form Body: content must be 2000 or fewer in length.")
    return None


def apply_edit(ctx: Ctx, message: Message, body: Body, limit: int) -> web.Response | None:
    """Apply a PATCH-style edit (content, components, attachments) to a message."""
    payload = body.json
    refused = check_content(payload)
    if refused is not None:
        return refused
    new_ids = store_files(ctx, body, limit)
    if isinstance(new_ids, web.Response):
        return new_ids
    if "content" in payload:
        message.content = payload["content"] or ""
    if "components" in payload:
        message.components = payload["components"] or []
    if "attachments" in payload:
        kept = {int(a["id"]) for a in payload["attachments"] or [] if int(a["id"]) > 1 << 22}
        message.attachments = [a for a in message.attachments if a in kept] + new_ids
    else:
        message.attachments += new_ids
    message.flags &= ~LOADING
    message.edited_at = ctx.world.clock.now()
    names = [ctx.world.attachments[a].filename for a in message.attachments]
    message.history.append((message.content, names))
    return None


def new_message(ctx: Ctx, channel: Channel, body: Body, **fields: Any) -> Message:
    """Create a message from a request body (files already checked)."""
    payload = body.json
    message = Message(
        id=ctx.world.ids.next(),
        channel_id=channel.id,
        author_id=ctx.world.bot.id,
        content=payload.get("content") or "",
        created_at=ctx.world.clock.now(),
        components=payload.get("components") or [],
        flags=int(payload.get("flags") or 0),
        **fields,
    )
    ctx.world.messages[message.id] = message
    return message


def channel_access(ctx: Ctx, channel_id: int, write: bool) -> Channel | web.Response:
    """Return a channel the bot may use, or the error Discord would give."""
    channel = ctx.world.channels.get(channel_id)
    if channel is None:
        return error(404, 10003, "Unknown Channel")
    if channel.guild_id is not None and not ctx.world.guilds[channel.guild_id].bot_installed:
        return error(403, 50001, "Missing Access")
    if write and channel.forbidden:
        return error(403, 50013, "Missing Permissions")
    if write and channel.is_dm and ctx.world.users[channel.recipient_id or 0].dms_closed:
        return error(403, 50007, "Cannot send messages to this user")
    return channel


@needs_bot
async def create_channel_message(request: web.Request) -> web.StreamResponse:
    """`POST /channels/{id}/messages`, honouring `nonce` + `enforce_nonce` like Discord."""
    ctx = ctx_of(request)
    body = request[BODY]
    channel = channel_access(ctx, int(request.match_info["channel_id"]), write=True)
    if isinstance(channel, web.Response):
        return channel
    nonce = body.json.get("nonce")
    if nonce is not None and body.json.get("enforce_nonce"):
        earlier = ctx.world.find_nonce(channel.id, ctx.world.bot.id, str(nonce))
        if earlier is not None:
            return reply(200, payloads.message(ctx.world, ctx.base_url, earlier))
    refused = check_content(body.json)
    if refused is not None:
        return refused
    ids = store_files(ctx, body, ctx.world.upload_limit(channel))
    if isinstance(ids, web.Response):
        return ids
    message = new_message(ctx, channel, body, nonce=None if nonce is None else str(nonce))
    message.attachments = ids
    return reply(200, payloads.message(ctx.world, ctx.base_url, message))


@needs_bot
async def list_channel_messages(request: web.Request) -> web.StreamResponse:
    """`GET /channels/{id}/messages`: newest first."""
    ctx = ctx_of(request)
    channel = channel_access(ctx, int(request.match_info["channel_id"]), write=False)
    if isinstance(channel, web.Response):
        return channel
    limit = min(100, int(request.query.get("limit", "50")))
    found = [m for m in ctx.world.messages.values() if m.channel_id == channel.id]
    found.sort(key=lambda m: m.id, reverse=True)
    return reply(200, [payloads.message(ctx.world, ctx.base_url, m) for m in found[:limit]])


@needs_bot
async def get_channel_message(request: web.Request) -> web.StreamResponse:
    """`GET /channels/{id}/messages/{message_id}`."""
    ctx = ctx_of(request)
    channel = channel_access(ctx, int(request.match_info["channel_id"]), write=False)
    if isinstance(channel, web.Response):
        return channel
    message = ctx.world.messages.get(int(request.match_info["message_id"]))
    if message is None or message.channel_id != channel.id:
        return error(404, 10008, "Unknown Message")
    return reply(200, payloads.message(ctx.world, ctx.base_url, message))


def find_interaction(ctx: Ctx, token: str) -> Interaction | web.Response:
    """Return the interaction of a live token, or 401 / 50027 once it expired."""
    interaction = ctx.world.interactions_by_token.get(token)
    if interaction is None or not ctx.world.token_alive(interaction):
        return error(401, 50027, "Invalid Webhook Token")
    return interaction


def callback_answer(ctx: Ctx, interaction: Interaction, kind: int) -> dict[str, Any]:
    """Return the body of a `with_response=1` callback."""
    info: dict[str, Any] = {"id": str(interaction.id), "type": interaction.type}
    answer: dict[str, Any] = {"interaction": info, "resource": {"type": kind}}
    message = ctx.world.messages.get(interaction.original_id or 0)
    if message is not None and kind in (4, 5, 7):
        info["response_message_id"] = str(message.id)
        info["response_message_loading"] = bool(message.flags & LOADING)
        info["response_message_ephemeral"] = bool(message.flags & EPHEMERAL)
        answer["resource"]["message"] = payloads.message(ctx.world, ctx.base_url, message)
    return answer


async def interaction_callback(request: web.Request) -> web.StreamResponse:
    """`POST /interactions/{id}/{token}/callback`: acknowledge once, within the deadline."""
    ctx = ctx_of(request)
    interaction = ctx.world.interactions.get(int(request.match_info["interaction_id"]))
    if interaction is None or interaction.token != request.match_info["token"]:
        return error(404, 10062, "Unknown interaction")
    if interaction.ack_type is not None:
        return error(400, 40060, "Interaction has already been acknowledged.")
    if not ctx.world.within_ack_deadline(interaction):
        ctx.world.late_acks.append(interaction.id)
        return error(404, 10062, "Unknown interaction")
    body = request[BODY]
    kind = int(body.json.get("type", 0))
    data = body.json.get("data") or {}
    refused = check_content(data)
    if refused is not None:
        return refused
    ctx.world.acknowledge(interaction, kind, data)
    channel = ctx.world.channels[interaction.channel_id]
    if kind in (4, 5):
        flags = int(data.get("flags") or 0) | (LOADING if kind == 5 else 0)
        inner = Body(json={**data, "flags": flags}, files=body.files)
        original = new_message(
            ctx, channel, inner, webhook_id=ctx.world.application_id, interaction_id=interaction.id
        )
        interaction.original_id = original.id
    elif kind == 7 and interaction.original_id is not None:
        message = ctx.world.messages[interaction.original_id]
        refused = apply_edit(
            ctx, message, Body(json=data, files=body.files), interaction.size_limit
        )
        if refused is not None:
            return refused
    return reply(200, callback_answer(ctx, interaction, kind))


async def webhook_message(request: web.Request) -> web.StreamResponse:
    """`GET`/`PATCH`/`DELETE /webhooks/{app}/{token}/messages/{id|@original}`."""
    ctx = ctx_of(request)
    interaction = find_interaction(ctx, request.match_info["token"])
    if isinstance(interaction, web.Response):
        return interaction
    wanted = request.match_info["message_id"]
    message_id = interaction.original_id if wanted == "@original" else int(wanted)
    message = ctx.world.messages.get(message_id or 0)
    if message is None or message.interaction_id != interaction.id:
        return error(404, 10008, "Unknown Message")
    if request.method == "DELETE":
        del ctx.world.messages[message.id]
        return reply(204)
    if request.method == "PATCH":
        refused = apply_edit(ctx, message, request[BODY], interaction.size_limit)
        if refused is not None:
            return refused
    return reply(200, payloads.message(ctx.world, ctx.base_url, message))


async def webhook_execute(request: web.Request) -> web.StreamResponse:
    """`POST /webhooks/{app}/{token}`: a follow-up (the first one after a defer edits it)."""
    ctx = ctx_of(request)
    interaction = find_interaction(ctx, request.match_info["token"])
    if isinstance(interaction, web.Response):
        return interaction
    limit = ctx.world.user_install_followup_limit
    if interaction.user_install_only and interaction.followups >= limit:
        return error(
            400, 40094, "This interaction has hit the maximum number of follow up messages"
        )
    body = request[BODY]
    refused = check_content(body.json)
    if refused is not None:
        return refused
    interaction.followups += 1
    original = ctx.world.messages.get(interaction.original_id or 0)
    if original is not None and original.flags & LOADING:
        message = original
        refused = apply_edit(ctx, message, body, interaction.size_limit)
    else:
        ids = store_files(ctx, body, interaction.size_limit)
        if isinstance(ids, web.Response):
            return ids
        channel = ctx.world.channels[interaction.channel_id]
        message = new_message(
            ctx, channel, body, webhook_id=ctx.world.application_id, interaction_id=interaction.id
        )
        message.attachments = ids
        refused = None
    if refused is not None:
        return refused
    if request.query.get("wait") in ("1", "true", "True"):
        return reply(200, payloads.message(ctx.world, ctx.base_url, message))
    return reply(204)


def add_routes(app: web.Application, api: str) -> None:
    """Register the message routes under `api`."""
    app.router.add_post(f"{api}/channels/{{channel_id}}/messages", create_channel_message)
    app.router.add_get(f"{api}/channels/{{channel_id}}/messages", list_channel_messages)
    app.router.add_get(
        f"{api}/channels/{{channel_id}}/messages/{{message_id}}", get_channel_message
    )
    callback = f"{api}/interactions/{{interaction_id}}/{{token}}/callback"
    app.router.add_post(callback, interaction_callback)
    hook = f"{api}/webhooks/{{app_id}}/{{token}}"
    app.router.add_post(hook, webhook_execute)
    for method in ("GET", "PATCH", "DELETE"):
        app.router.add_route(method, f"{hook}/messages/{{message_id}}", webhook_message)
