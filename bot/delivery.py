"""Delivery: posts each finished request to Discord once, driven by the completion stream.

Exactly once, across crashes:

* The bot reads the stream through a consumer group under a fixed consumer name, so after a
  restart its own unacknowledged entries come back first; entries finished while it was down
  are simply new entries. An entry is acknowledged only after its delivery is recorded.
* `mark_delivered` (SET NX) records each delivery; a replay of a recorded one only acks.
* Before posting, the bot writes an intent (where it is about to post). If it dies after
  Discord took the post but before the record, the replay finds the intent and looks for the
  message first: the reply (by id), or the channel's recent history (by the request tag in the
  content). Only if it is not there does it post again; channel and DM posts carry a `nonce`
  with `enforce_nonce`, so Discord itself drops a repeat made within its dedup window.

Fallbacks, in order: edit the original reply while its token lives; a message in the channel
(where the bot is installed); a DM. A 401 marks the token dead and it is never used again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import discord
from redis.exceptions import RedisError

from bot.origin import DEFAULT_UPLOAD_LIMIT, Origin
from bot.posting import Posted, Poster, Skip
from jayavatar.errors import NotFound
from jobs.completions import Completion, CompletionReader, delivered_how, mark_delivered

if TYPE_CHECKING:
    from bot.memory import BotMemory
    from bot.progress import Tracker
    from jobs.client import JobClient
    from jobs.records import Request

log = logging.getLogger(__name__)
GROUP = "discord"
# Fixed, so a restarted bot is the same consumer and re-reads what it had not acknowledged.
CONSUMER = "bot"
SWEEP_EVERY_S = 15.0
CLAIM_IDLE_MS = 120_000
MAX_PARALLEL = 4
BACKOFF_S = (2.0, 5.0, 15.0, 30.0, 60.0, 120.0)
REDIS_RETRY_S = 2.0


class Deliverer:
    """Reads the completion stream and delivers every Discord request in it."""

    def __init__(
        self, bot: discord.Client, client: JobClient, memory: BotMemory, tracker: Tracker
    ) -> None:
        self.client = client
        self.settings = client.settings
        self.redis = client.redis
        self.memory = memory
        self.tracker = tracker
        self.poster = Poster(bot, client, memory)
        self.stream = CompletionReader(self.redis, self.settings, GROUP, CONSUMER)
        self._slots = asyncio.Semaphore(MAX_PARALLEL)
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: dict[str, int] = {}
        self._not_before: dict[str, float] = {}

    async def run(self) -> None:
        """Deliver until cancelled: replay own pending entries, then follow new ones."""
        next_sweep = 0.0
        while True:
            try:
                if time.monotonic() >= next_sweep:
                    await self.sweep()
                    next_sweep = time.monotonic() + SWEEP_EVERY_S
                entries = await self.stream.new(count=20, block_ms=int(SWEEP_EVERY_S * 1000))
            except (RedisError, OSError) as exc:
                # Redis restarts or blips: wait and read again; nothing is lost (pending entries).
                log.warning("cannot read the completion stream (%s); retrying", exc)
                await asyncio.sleep(REDIS_RETRY_S)
                continue
            for entry in entries:
                self.start(entry)

    async def sweep(self) -> None:
        """Retry this consumer's pending entries and claim those of consumers long gone."""
        await self.stream.join()
        after = "0"
        while True:
            entries = await self.stream.pending(after, count=100)
            for entry in entries:
                self.start(entry)
            if len(entries) < 100:
                break
            after = entries[-1].id
        for entry in await self.stream.claim_idle(CLAIM_IDLE_MS, count=100):
            self.start(entry)

    def start(self, entry: Completion) -> None:
        """Handle one stream entry in the background, unless already being handled or not due."""
        mid = entry.id
        if mid in self._in_flight or self._not_before.get(mid, 0.0) > time.monotonic():
            return
        self._in_flight.add(mid)
        task = asyncio.create_task(self._handle(mid, entry.rid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, mid: str, rid: str) -> None:
        try:
            async with self._slots:
                await self.handle(mid, rid)
            self._failures.pop(mid, None)
            self._not_before.pop(mid, None)
        except Exception:
            count = self._failures.get(mid, 0)
            self._failures[mid] = count + 1
            delay = BACKOFF_S[min(count, len(BACKOFF_S) - 1)]
            self._not_before[mid] = time.monotonic() + delay
            log.warning("delivery of %s failed; retrying in %.0f s", rid, delay, exc_info=True)
        finally:
            self._in_flight.discard(mid)

    async def handle(self, mid: str, rid: str) -> str:
        """Deliver the request of one entry (if it is ours) and acknowledge the entry."""
        try:
            req = await self.client.get(rid)
        except NotFound:
            how = "purged"
        else:
            how = await self.deliver(req)
        await self.stream.ack(mid)
        return how

    async def deliver(self, req: Request) -> str:
        """Post a final request where its requester will see it, once; return how."""
        origin = Origin.parse(req.origin)
        if origin is None:
            return "not-discord"
        done = await delivered_how(self.redis, self.settings, req.id)
        if done is not None:
            return done
        async with self.tracker.lock(req.id):
            self.tracker.finish(req.id)
            how = await self._post_once(req, origin)
            await mark_delivered(self.redis, self.settings, req.id, how)
            await self.memory.clear_intent(req.id)
        log.info("delivered %s (%s) by %s", req.id, req.state, how)
        return how

    async def _post_once(self, req: Request, origin: Origin) -> str:
        intent = await self.memory.intent(req.id)
        if intent is not None and await self.poster.already_posted(req, origin, intent):
            return str(intent["how"])
        for target in await self.targets(req, origin):
            await self.memory.set_intent(req.id, target)
            try:
                posted = await self.poster.post(target, req, origin, self.limit(target, origin))
            except Skip as skip:
                log.info("cannot deliver %s by %s: %s", req.id, target, skip)
                continue
            return _how(target, posted)
        return "undeliverable"

    async def targets(self, req: Request, origin: Origin) -> list[str]:
        """Return where to try, in order."""
        out = []
        if origin.token_fresh() and not await self.memory.token_dead(req.id):
            out.append("edit")
        # Enrollment replies are private: never fall back to a public channel for them.
        if req.kind == "render" and origin.guild is not None and origin.bot_can_post:
            out.append("channel")
        out.append("dm")
        return out

    @staticmethod
    def limit(target: str, origin: Origin) -> int:
        """Return the upload limit that applies where a target posts."""
        return DEFAULT_UPLOAD_LIMIT if target == "dm" else origin.limit

    async def drain(self) -> None:
        """Wait for deliveries in progress (used on shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _how(target: str, posted: Posted) -> str:
    return target if posted.with_file or not posted.too_large else f"{target}-too-large"
