"""API keys: random tokens stored only as SHA-256 hashes in Redis, each bound to one user id."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import re
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from jayavatar.errors import NotFound
from jobs import keys
from storage.keys import validate_user

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from jayavatar.settings import Settings
    from jobs.accounts import Accounts

T = TypeVar("T")
# A token is "jya_<key id>_<secret>": the id finds the record, the secret is only ever hashed.
TOKEN = re.compile(r"jya_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
#: A key check in one round trip: stamp `last_used_at` only when the token's hash matches, and
#: return the record. (Comparing SHA-256 digests tells a timer nothing about the secret; the
#: constant-time comparison in Python still decides.) KEYS: the record. ARGV: hash, now.
CHECK_LUA = """
if redis.call('HGET', KEYS[1], 'hash') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'last_used_at', ARGV[2])
end
return redis.call('HGETALL', KEYS[1])
"""


@dataclass(frozen=True)
class ApiKey:
    """One API key as stored: never the secret itself."""

    key_id: str
    user: str
    admin: bool
    label: str
    created_at: float
    last_used_at: float


def _digest(token: str) -> str:
    """Hash a token; the tokens are 256-bit random, so a fast hash cannot be brute-forced."""
    return hashlib.sha256(token.encode()).hexdigest()


def _from_hash(key_id: str, fields: dict[str, str]) -> ApiKey:
    """Build an ApiKey from its Redis hash."""
    return ApiKey(
        key_id=key_id,
        user=fields["user"],
        admin=fields.get("admin") == "1",
        label=fields.get("label", ""),
        created_at=float(fields.get("created_at", 0)),
        last_used_at=float(fields.get("last_used_at", 0)),
    )


class ApiKeys:
    """Creates, checks, lists and revokes API keys in Redis."""

    def __init__(self, redis: Redis, settings: Settings, accounts: Accounts) -> None:
        self.redis = redis
        self.accounts = accounts
        self.index_key = keys.api_keys(settings)
        self.settings = settings

    def _record_key(self, key_id: str) -> str:
        return keys.api_key(self.settings, key_id)

    async def create(
        self, user: str, *, admin: bool = False, label: str = ""
    ) -> tuple[str, ApiKey]:
        """Create a key for `user`; return the token (shown once) and its stored record.

        An admin key also makes its user an admin in `Accounts`, so the shared pipeline code
        lets that user act on others' requests exactly as it lets a Discord admin.
        """
        validate_user(user)
        label = " ".join(label.split())[:100]
        key_id = secrets.token_hex(6)
        token = f"jya_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id, user, admin, label, time.time(), 0.0)
        fields = {
            "hash": _digest(token),
            "user": user,
            "admin": "1" if admin else "0",
            "label": label,
            "created_at": repr(record.created_at),
            "last_used_at": "0",
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._record_key(key_id), mapping=fields)
            pipe.sadd(self.index_key, key_id)
            await pipe.execute()
        if admin:
            await self.accounts.add_admin(user)
        return token, record

    async def check(self, token: str) -> ApiKey | None:
        """Return the key a token belongs to, or None for unknown, revoked or malformed tokens."""
        match = TOKEN.fullmatch(token.strip())
        if match is None:
            return None
        key_id, digest, now = match.group(1), _digest(token.strip()), time.time()
        flat = await done(
            self.redis.eval(CHECK_LUA, 1, self._record_key(key_id), digest, repr(now))
        )
        if not flat:
            return None
        decoded = {_text(k): _text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}
        if not hmac.compare_digest(decoded.get("hash", ""), digest):
            return None
        return replace(_from_hash(key_id, decoded), last_used_at=now)

    async def revoke(self, key_id: str) -> ApiKey:
        """Delete a key by id (the token's 12 hex digits after `jya_`); NotFound if unknown."""
        record = await self.get(key_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._record_key(key_id))
            pipe.srem(self.index_key, key_id)
            await pipe.execute()
        return record

    async def get(self, key_id: str) -> ApiKey:
        """Return one key's record; NotFound if unknown."""
        fields = await done(self.redis.hgetall(self._record_key(key_id)))
        if not fields:
            raise NotFound(f"no API key with id {key_id!r}")
        return _from_hash(key_id, {_text(k): _text(v) for k, v in fields.items()})

    async def list(self, user: str | None = None) -> list[ApiKey]:
        """Return every key (or one user's keys), oldest first."""
        ids = sorted(_text(k) for k in await done(self.redis.smembers(self.index_key)))
        keys = []
        for key_id in ids:
            try:
                record = await self.get(key_id)
            except NotFound:
                continue  # revoked between SMEMBERS and HGETALL
            if user is None or record.user == user:
                keys.append(record)
        return sorted(keys, key=lambda k: k.created_at)


async def done(value: Awaitable[T] | T) -> T:
    """Await a redis-py asyncio reply; its stubs type some commands as `Awaitable[T] | T`."""
    return await value if inspect.isawaitable(value) else value


def _text(value: bytes | str) -> str:
    """Decode a Redis reply whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value
