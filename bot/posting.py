"""Posting one final result to one place: the original reply, the channel, or a DM.

Discord's answers decide what happens next: 401 on the reply means the token is dead (never
retried), 403/404 mean this place is closed (try the next), 413 means the file is too large
(post the message without it, saying why). Anything else is a passing fault: the delivery is
retried later. 429s are waited out by discord.py, honouring `retry_after`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord

from bot.text import final_message, tag, too_large_note
from bot.views import final_view

if TYPE_CHECKING:
    from bot.memory import BotMemory
    from bot.origin import Origin
    from jobs.client import JobClient
    from jobs.records import Request

HISTORY_SCAN = 50


class Skip(Exception):
    """This place cannot take the post; the next one is tried."""


class RefusedAsTooLarge(Exception):
    """Discord refused the file as too large (413 / 40005)."""


@dataclass(frozen=True)
class Posted:
    """What a post turned out to be."""

    message_id: int
    with_file: bool
    too_large: bool


@dataclass(frozen=True)
class Draft:
    """The content of a final post for one place."""

    content: str
    file: Path | None
    too_large: bool


class Poster:
    """Posts final messages for the delivery."""

    def __init__(self, bot: discord.Client, client: JobClient, memory: BotMemory) -> None:
        self.bot = bot
        self.client = client
        self.memory = memory

    def draft(self, req: Request, limit: int, file_ok: bool = True) -> Draft:
        """Return what to post: the message, and the video if it fits under `limit`."""
        path = self._video(req)
        if path is None:
            return Draft(final_message(req), None, False)
        size = path.stat().st_size
        if file_ok and size <= limit:
            return Draft(final_message(req), path, False)
        return Draft(final_message(req, too_large_note(size, limit)), None, True)

    def _video(self, req: Request) -> Path | None:
        if req.kind != "render" or req.state != "done" or not req.output_key:
            return None
        path = self.client.output_path(req)
        return path if path.is_file() else None

    async def post(self, target: str, req: Request, origin: Origin, limit: int) -> Posted:
        """Post to `target`; on 413, post again without the file and say why."""
        try:
            return await self._send(target, req, origin, self.draft(req, limit))
        except RefusedAsTooLarge:
            return await self._send(target, req, origin, self.draft(req, limit, file_ok=False))

    async def _send(self, target: str, req: Request, origin: Origin, draft: Draft) -> Posted:
        file = discord.File(draft.file, filename=f"{req.id}.mp4") if draft.file else None
        try:
            message = await self._dispatch(target, req, origin, draft.content, file)
        except discord.HTTPException as exc:
            await self._refused(target, req, exc)
            raise  # not a refusal: a passing fault, retried later
        return Posted(message.id, file is not None, draft.too_large)

    async def _dispatch(
        self, target: str, req: Request, origin: Origin, content: str, file: discord.File | None
    ) -> discord.Message:
        view = final_view(req.state, req.kind, req.id)
        quiet = discord.AllowedMentions.none()
        if target == "edit":
            message_id = await self.memory.message(req.id) or origin.message
            if message_id is None:
                raise Skip("the reply's message id is unknown")
            webhook = discord.Webhook.partial(origin.app, origin.token, client=self.bot)
            return await webhook.edit_message(
                message_id,
                content=content,
                attachments=[file] if file else [],
                view=view,
                allowed_mentions=quiet,
            )
        kw: dict[str, Any] = {"file": file} if file else {}
        if view is not None:
            kw["view"] = view
        # Discord drops a repeat with the same nonce (enforce_nonce) within its dedup window.
        nonce = f"{target[0]}{req.id[:24]}"
        if target == "channel":
            channel = self.bot.get_partial_messageable(origin.channel or 0, guild_id=origin.guild)
            # Ping the requester, and only them: echoed text never pings anyone.
            mention = discord.AllowedMentions(
                everyone=False, roles=False, users=[discord.Object(origin.user)]
            )
            text = f"<@{origin.user}> {content}"
            return await channel.send(text, nonce=nonce, allowed_mentions=mention, **kw)
        dm = await self.bot.create_dm(discord.Object(origin.user))
        return await dm.send(content, nonce=nonce, allowed_mentions=quiet, **kw)

    async def _refused(self, target: str, req: Request, exc: discord.HTTPException) -> None:
        if exc.status == 413 or exc.code == 40005:
            raise RefusedAsTooLarge() from exc
        if target == "edit" and exc.status == 401:
            await self.memory.mark_token_dead(req.id)
            raise Skip("the interaction token expired (401)") from exc
        if exc.status in (403, 404) or (target == "edit" and exc.code in (10008, 10015)):
            raise Skip(f"HTTP {exc.status} (code {exc.code})") from exc

    async def already_posted(self, req: Request, origin: Origin, intent: dict[str, Any]) -> bool:
        """Whether an earlier, unrecorded attempt did reach Discord (looked up, not assumed)."""
        try:
            return await self._find(req, origin, str(intent.get("how")))
        except (discord.HTTPException, Skip):
            return False

    async def _find(self, req: Request, origin: Origin, how: str) -> bool:
        marker = tag(req.id)
        if how == "edit":
            message_id = await self.memory.message(req.id) or origin.message
            if message_id is None:
                return False
            found: discord.Message
            if origin.token_fresh() and not await self.memory.token_dead(req.id):
                webhook = discord.Webhook.partial(origin.app, origin.token, client=self.bot)
                found = await webhook.fetch_message(message_id)
            elif origin.bot_can_post and origin.channel:
                channel = self.bot.get_partial_messageable(origin.channel, guild_id=origin.guild)
                found = await channel.fetch_message(message_id)
            else:
                return False
            return marker in found.content
        if how == "channel" and origin.channel:
            where: discord.abc.Messageable = self.bot.get_partial_messageable(origin.channel)
        else:
            where = await self.bot.create_dm(discord.Object(origin.user))
        me = self.bot.user.id if self.bot.user else 0
        async for message in where.history(limit=HISTORY_SCAN):
            if message.author.id == me and marker in message.content:
                return True
        return False
