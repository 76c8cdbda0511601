"""Live progress: edits each request's reply as it moves (queued #n → voice → lip-sync → encoding).

One loop polls every tracked request; an edit is sent only when the shown line changes, so a
request costs a handful of edits, well inside the per-token rate limit. The delivery takes a
request's lock and calls `finish`, so a late progress edit never overwrites the final message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import discord
from redis.exceptions import RedisError

from bot.memory import BotMemory
from bot.origin import Origin
from bot.text import progress_message
from bot.views import cancel_view
from jayavatar.errors import JayAvatarError

if TYPE_CHECKING:
    from jobs.client import JobClient
    from jobs.records import Request

log = logging.getLogger(__name__)
POLL_S = 1.5
MAX_FINISHED = 10_000


class Tracker:
    """Keeps every running request's reply up to date."""

    def __init__(self, bot: discord.Client, client: JobClient, memory: BotMemory) -> None:
        self.bot = bot
        self.client = client
        self.memory = memory
        self._tracked: dict[str, Origin] = {}
        self._shown: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._finished: dict[str, None] = {}

    def lock(self, rid: str) -> asyncio.Lock:
        """Return the lock that serialises edits of one request's reply."""
        return self._locks.setdefault(rid, asyncio.Lock())

    def track(self, rid: str, origin: Origin, shown: str = "") -> None:
        """Start following a request (no-op once it was delivered)."""
        if rid not in self._finished:
            self._tracked[rid] = origin
            self._shown[rid] = shown

    def finish(self, rid: str) -> None:
        """Stop following a request for good."""
        self._tracked.pop(rid, None)
        self._shown.pop(rid, None)
        self._locks.pop(rid, None)
        self._finished[rid] = None
        while len(self._finished) > MAX_FINISHED:
            self._finished.pop(next(iter(self._finished)))

    @property
    def tracked(self) -> list[str]:
        """Return the ids being followed."""
        return list(self._tracked)

    async def resume(self) -> int:
        """After a restart, pick up every unfinished Discord request whose token still works."""
        records = await self.client.store.get_many(await self.client.store.active_ids())
        for req in records:
            origin = Origin.parse(req.origin)
            if origin is not None and origin.token_fresh():
                self.track(req.id, origin)
        return len(self._tracked)

    async def run(self) -> None:
        """Poll and edit until cancelled."""
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self.tick()
            except (JayAvatarError, RedisError, OSError) as exc:
                log.warning("progress update skipped: %s", exc)

    async def tick(self) -> None:
        """Refresh every tracked request once: one read of the records and of each queue."""
        rids = self.tracked
        if not rids:
            return
        found = {r.id: r for r in await self.client.store.get_many(rids)}
        for rid in rids:
            if rid not in found:
                self.finish(rid)  # gone (expired or removed): nothing left to show
        live = [r for r in found.values() if not r.final and not r.running]
        places = dict(zip([r.id for r in live], await self.client.positions_of(live), strict=True))
        await asyncio.gather(*(self.refresh(req, places.get(req.id)) for req in found.values()))

    async def refresh(self, req: Request, position: int | None) -> None:
        """Edit one reply if its line changed (`position`: its place in line, if it waits)."""
        origin = self._tracked.get(req.id)
        if origin is None:
            return
        if not origin.token_fresh() or req.final:
            self._tracked.pop(req.id, None)  # if final, the delivery takes it from here
            return
        line = progress_message(req, position)
        if line != self._shown.get(req.id):
            await self.edit(req.id, origin, line)

    async def edit(self, rid: str, origin: Origin, line: str) -> None:
        """Send one progress edit under the request's lock."""
        async with self.lock(rid):
            if rid not in self._tracked:
                return
            message_id = await self.memory.message(rid) or origin.message
            if message_id is None:
                return
            webhook = discord.Webhook.partial(origin.app, origin.token, client=self.bot)
            try:
                await webhook.edit_message(
                    message_id,
                    content=line,
                    view=cancel_view(rid),
                    allowed_mentions=discord.AllowedMentions.none(),
                )
            except discord.HTTPException as exc:
                await self._edit_failed(rid, exc)
                return
            self._shown[rid] = line

    async def _edit_failed(self, rid: str, exc: discord.HTTPException) -> None:
        if exc.status == 401:
            # A refused token stays refused: mark it so nothing uses it again.
            await self.memory.mark_token_dead(rid)
        log.info("stopped progress edits of %s: HTTP %s (code %s)", rid, exc.status, exc.code)
        with contextlib.suppress(KeyError):
            del self._tracked[rid]
