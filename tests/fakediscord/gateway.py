"""The fake Discord gateway: HELLO, heartbeats, IDENTIFY/READY, RESUME, dispatch, op 7 and op 9.

Frames go out as plain JSON text: discord.py asks for zlib-stream but only inflates binary frames.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakediscord import payloads
from tests.fakediscord.common import Ctx

HELLO, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, REQUEST_MEMBERS = 10, 1, 2, 6, 7, 8
INVALID_SESSION, HEARTBEAT_ACK, DISPATCH = 9, 11, 0
BAD_TOKEN_CLOSE = 4004


@dataclass
class Session:
    """One gateway session; its events are kept so a RESUME can replay what was missed."""

    id: str
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    valid: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, frame: dict[str, Any]) -> None:
        """Send a frame if connected."""
        async with self.lock:
            if self.ws is not None and not self.ws.closed:
                await self.ws.send_str(json.dumps(frame))

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Number, remember and send a DISPATCH event."""
        self.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": self.seq, "d": data}
        self.events.append(frame)
        del self.events[:-1000]
        await self.send(frame)


@dataclass
class GatewayStats:
    """What tests check about gateway behaviour."""

    connections: int = 0
    identifies: int = 0
    resumes: int = 0
    resume_urls: list[str] = field(default_factory=list)


class Gateway:
    """Serves gateway websockets for one bot."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.sessions: dict[str, Session] = {}
        self.current: Session | None = None
        self.stats = GatewayStats()

    @property
    def resume_url(self) -> str:
        """URL handed out in READY; a different path shows the client really uses it."""
        return self.ctx.base_url.replace("http://", "ws://") + "/gateway-resume"

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """Serve one websocket connection until it closes."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.stats.connections += 1
        await ws.send_str(json.dumps({"op": HELLO, "d": {"heartbeat_interval": 41250}}))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            await self.on_frame(ws, request, frame)
        for session in self.sessions.values():
            if session.ws is ws:
                session.ws = None
        return ws

    async def on_frame(
        self, ws: web.WebSocketResponse, request: web.Request, frame: dict[str, Any]
    ) -> None:
        """React to one client frame."""
        op, data = frame.get("op"), frame.get("d")
        if op == HEARTBEAT:
            await ws.send_str(json.dumps({"op": HEARTBEAT_ACK}))
        elif op == IDENTIFY:
            await self.identify(ws, data or {})
        elif op == RESUME:
            self.stats.resume_urls.append(str(request.url.with_query(None)))
            await self.resume(ws, data or {})
        elif op == REQUEST_MEMBERS and self.current is not None:
            asked = data or {}
            chunk: dict[str, Any] = {"guild_id": asked.get("guild_id"), "members": []}
            chunk.update(chunk_index=0, chunk_count=1, nonce=asked.get("nonce"))
            await self.current.dispatch("GUILD_MEMBERS_CHUNK", chunk)

    async def identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        """Start a fresh session: READY, then one GUILD_CREATE per guild the bot is in."""
        if data.get("token") != self.ctx.world.bot_token:
            await ws.close(code=BAD_TOKEN_CLOSE, message=b"Authentication failed.")
            return
        self.stats.identifies += 1
        session = Session(id=secrets.token_hex(16), ws=ws)
        self.sessions[session.id] = session
        self.current = session
        world = self.ctx.world
        installed = [g for g in world.guilds.values() if g.bot_installed]
        ready = {
            "v": 10,
            "user": {
                **payloads.user(world.bot),
                "verified": True,
                "mfa_enabled": False,
                "flags": 0,
            },
            "guilds": [{"id": str(g.id), "unavailable": True} for g in installed],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "shard": [0, 1],
            "application": {"id": str(world.application_id), "flags": 0},
        }
        await session.dispatch("READY", ready)
        for guild in installed:
            await session.dispatch("GUILD_CREATE", payloads.guild_create(world, guild))

    async def resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        """Resume a session, replaying missed events, or answer op 9 if it is gone."""
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or not session.valid or data.get("token") != self.ctx.world.bot_token:
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False}))
            return
        self.stats.resumes += 1
        session.ws = ws
        self.current = session
        after = int(data.get("seq") or 0)
        for frame in [f for f in session.events if f["s"] > after]:
            await session.send(frame)
        await session.dispatch("RESUMED", {})

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send an event on the current session (kept for a resume if nobody is connected)."""
        if self.current is not None:
            await self.current.dispatch(event, data)

    async def send_reconnect(self) -> None:
        """Ask the client to reconnect and resume (op 7)."""
        if self.current is not None:
            await self.current.send({"op": RECONNECT, "d": None})

    async def invalidate(self) -> None:
        """Invalidate the current session (op 9, not resumable): the client must IDENTIFY."""
        if self.current is not None:
            self.current.valid = False
            await self.current.send({"op": INVALID_SESSION, "d": False})

    def connected(self) -> bool:
        """Whether a live session has a websocket attached."""
        current = self.current
        return current is not None and current.valid and current.ws is not None

    def add_routes(self, app: web.Application) -> None:
        """Register the websocket routes."""
        app.router.add_get("/gateway", self.handle)
        app.router.add_get("/gateway-resume", self.handle)
