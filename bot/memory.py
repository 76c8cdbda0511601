"""The bot's own small Redis state: reply message ids, delivery intents, dead tokens.

Kept apart from the request records (which the workers own) under `<prefix>:discord:*`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis.asyncio import Redis

from jayavatar.settings import Settings
from jobs import keys


def _text(raw: object) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class BotMemory:
    """Reads and writes the bot's keys."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.ttl_s = settings.keep_result_s

    def _k(self, *parts: str) -> str:
        return keys.bot(self.settings, *parts)

    async def set_message(self, rid: str, message_id: int) -> None:
        """Remember the id of the reply that shows a request."""
        await self.redis.set(self._k("msg", rid), str(message_id), ex=self.ttl_s)

    async def message(self, rid: str) -> int | None:
        """Return the id of a request's reply, if known."""
        raw = _text(await self.redis.get(self._k("msg", rid)))
        return int(raw) if raw and raw.isdigit() else None

    async def set_intent(self, rid: str, how: str, **where: Any) -> None:
        """Write down, before posting, where a result is about to be posted."""
        value = json.dumps({"how": how, "at": time.time(), **where})
        await self.redis.set(self._k("intent", rid), value, ex=self.ttl_s)

    async def intent(self, rid: str) -> dict[str, Any] | None:
        """Return the last recorded delivery intent of a request."""
        raw = _text(await self.redis.get(self._k("intent", rid)))
        return json.loads(raw) if raw else None

    async def clear_intent(self, rid: str) -> None:
        """Forget an intent once its delivery is recorded."""
        await self.redis.delete(self._k("intent", rid))

    async def mark_token_dead(self, rid: str) -> None:
        """Remember that a request's interaction token was refused: never use it again."""
        await self.redis.set(self._k("deadtoken", rid), "1", ex=self.ttl_s)

    async def token_dead(self, rid: str) -> bool:
        """Whether a request's token was refused before."""
        return bool(await self.redis.exists(self._k("deadtoken", rid)))

    async def beat(self, ttl_s: int) -> None:
        """Say the bot is connected and delivering; the key lapses `ttl_s` after the last beat."""
        await self.redis.set(self._k("alive"), f"{time.time():.0f}", ex=ttl_s)

    async def commands_synced(self, fingerprint: str) -> bool:
        """Whether these exact command schemas were already synced."""
        return _text(await self.redis.get(self._k("commands"))) == fingerprint

    async def set_commands_synced(self, fingerprint: str) -> None:
        """Remember the last synced command schemas."""
        await self.redis.set(self._k("commands"), fingerprint)
