"""Who owns what and who may do what: assets, shares, profiles, allow/deny, quotas, admins.

Both fronts (Discord bot and HTTP API) call these same methods, so the consent and quota rules
live in one place. A voice or avatar belongs to the user who enrolled it; others may use it only
once the owner shared it with them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from jayavatar import ids
from jayavatar.errors import BadInput, Forbidden, NotFound
from jayavatar.settings import Settings
from jobs import keys
from storage.base import Storage
from storage.keys import avatar_prefix, validate_name, validate_user, voice_prefix

AssetKind = Literal["voice", "avatar"]


class Asset(BaseModel):
    """An enrolled voice or avatar."""

    model_config = ConfigDict(frozen=True)

    kind: AssetKind
    owner: str
    name: str
    created_at: float
    meta: dict[str, Any] = Field(default_factory=dict)
    shared_with: list[str] = Field(default_factory=list)

    @property
    def ref(self) -> str:
        """Return the full reference `owner/name`."""
        return f"{self.owner}/{self.name}"

    @property
    def prefix(self) -> str:
        """Return the storage folder of this asset."""
        make = voice_prefix if self.kind == "voice" else avatar_prefix
        return make(self.owner, self.name)


class Profile(BaseModel):
    """A user's defaults for /say."""

    voice: str = ""
    avatar: str = ""
    language: str = ""


class Quota(BaseModel):
    """Per-user limits; None means the deployment default."""

    daily: int | None = None
    concurrent: int | None = None


@dataclass(frozen=True)
class Standing:
    """What a submission checks about its user: may they render, their defaults and limits."""

    allowed: bool
    paused: bool
    admin: bool
    profile: Profile
    daily: int
    concurrent: int
    active: int  # requests of the user not yet final, read with the rest


class Accounts:
    """Redis-backed registry of assets, shares and per-user policy."""

    def __init__(self, redis: Redis, settings: Settings, storage: Storage) -> None:
        self.redis = redis
        self.settings = settings
        self.storage = storage

    def _k(self, *parts: str) -> str:
        return keys.account(self.settings, *parts)

    # Assets -------------------------------------------------------------------------------

    async def register(self, kind: AssetKind, owner: str, name: str, meta: dict[str, Any]) -> Asset:
        """Record a freshly enrolled asset (its files are already in storage)."""
        asset = Asset(kind=kind, owner=owner, name=name, created_at=time.time(), meta=meta)
        await self.redis.hset(self._k("assets", kind, owner), name, asset.model_dump_json())
        return asset

    async def get_asset(self, kind: AssetKind, owner: str, name: str) -> Asset | None:
        """Return an asset by owner and name, or None."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self._k("assets", kind, owner), name)
            pipe.smembers(self._k("shares", kind, owner, name))
            raw, shared = await pipe.execute()
        if raw is None:
            return None
        asset = Asset.model_validate_json(raw)
        return asset.model_copy(update={"shared_with": sorted(_s(m) for m in shared)})

    async def owned(self, kind: AssetKind, owner: str) -> list[Asset]:
        """Return a user's own assets, sorted by name."""
        names = sorted(_s(n) for n in await self.redis.hkeys(self._k("assets", kind, owner)))
        found = [await self.get_asset(kind, owner, n) for n in names]
        return [a for a in found if a is not None]

    async def usable(self, kind: AssetKind, user: str) -> list[Asset]:
        """Return the assets a user may use: their own, then those shared with them."""
        own = await self.owned(kind, user)
        refs = sorted(_s(m) for m in await self.redis.smembers(self._k("shared_with", kind, user)))
        shared = []
        for ref in refs:
            owner, name = ref.split("/", 1)
            asset = await self.get_asset(kind, owner, name)
            if asset is not None:
                shared.append(asset)
        return own + shared

    async def list_voices(self, user: str) -> list[Asset]:
        """Return the voices a user may use."""
        return await self.usable("voice", user)

    async def list_avatars(self, user: str) -> list[Asset]:
        """Return the avatars a user may use."""
        return await self.usable("avatar", user)

    async def resolve(self, kind: AssetKind, user: str, ref: str) -> Asset:
        """Turn `name` or `owner/name` into an asset the user may use, or raise."""
        owner, name = ref.split("/", 1) if "/" in ref else (user, ref)
        owner, name = validate_user(owner), validate_name(name)
        asset = await self.get_asset(kind, owner, name)
        if owner != user and (asset is None or user not in asset.shared_with):
            # One answer whether it exists or not, so others' names cannot be probed.
            raise NotFound(f"unknown {kind} {ref!r}, or not shared with you")
        if asset is None:
            raise NotFound(f"unknown {kind} {ref!r}")
        return asset

    async def share(self, kind: AssetKind, owner: str, name: str, other: str) -> None:
        """Let `other` use one of `owner`'s assets."""
        await self._must_exist(kind, owner, name)
        if validate_user(other) == owner:
            raise BadInput("you cannot share with yourself")
        await self.redis.sadd(self._k("shares", kind, owner, name), other)
        await self.redis.sadd(self._k("shared_with", kind, other), f"{owner}/{name}")

    async def unshare(self, kind: AssetKind, owner: str, name: str, other: str) -> None:
        """Withdraw a share."""
        await self._must_exist(kind, owner, name)
        await self.redis.srem(self._k("shares", kind, owner, name), other)
        await self.redis.srem(self._k("shared_with", kind, other), f"{owner}/{name}")

    async def remove(self, kind: AssetKind, owner: str, name: str) -> int:
        """Delete an asset's record, shares and files; return the number of files removed."""
        asset = await self._must_exist(kind, owner, name)
        for other in asset.shared_with:
            await self.redis.srem(self._k("shared_with", kind, other), asset.ref)
        await self.redis.delete(self._k("shares", kind, owner, name))
        await self.redis.hdel(self._k("assets", kind, owner), name)
        return self.storage.delete_prefix(asset.prefix)

    async def _must_exist(self, kind: AssetKind, owner: str, name: str) -> Asset:
        asset = await self.get_asset(kind, validate_user(owner), validate_name(name))
        if asset is None:
            raise NotFound(f"you have no {kind} named {name!r}")
        return asset

    # Profiles -----------------------------------------------------------------------------

    async def profile(self, user: str) -> Profile:
        """Return a user's defaults."""
        raw = await self.redis.get(self._k("profile", user))
        return Profile.model_validate_json(raw) if raw else Profile()

    async def set_default(self, user: str, **fields: str) -> Profile:
        """Change some of a user's defaults (voice, avatar, language)."""
        current = await self.profile(user)
        updated = current.model_copy(update=fields)
        await self.redis.set(self._k("profile", user), updated.model_dump_json())
        return updated

    # Policy -------------------------------------------------------------------------------

    async def is_admin(self, user: str) -> bool:
        """Tell whether a user may run admin actions (checked server-side)."""
        if self._admin_without_redis(user):
            return True
        return bool(await self.redis.sismember(self._k("admins"), user))

    def _admin_without_redis(self, user: str) -> bool:
        """The admin rules that need no lookup: the local operator and configured Discord ids."""
        if ids.is_local(user):
            return True  # the CLI runs on the server itself, as its operator
        snowflake = ids.discord_snowflake(user)
        return snowflake is not None and snowflake in self.settings.admin_user_ids

    async def add_admin(self, user: str) -> None:
        """Make a user an admin (e.g. the identity of an admin API key)."""
        await self.redis.sadd(self._k("admins"), validate_user(user))

    async def allow(self, user: str) -> None:
        """Let a user render (removes any deny)."""
        await self.redis.srem(self._k("deny"), validate_user(user))
        await self.redis.sadd(self._k("allow"), user)

    async def deny(self, user: str) -> None:
        """Stop a user from rendering."""
        await self.redis.srem(self._k("allow"), validate_user(user))
        await self.redis.sadd(self._k("deny"), user)

    async def is_allowed(self, user: str) -> bool:
        """Tell whether a user may render at all."""
        if await self.redis.sismember(self._k("deny"), user):
            return False
        if await self.redis.sismember(self._k("allow"), user):
            return True
        return self.settings.allow_by_default or await self.is_admin(user)

    async def standing(self, user: str) -> Standing:
        """Everything a submission checks about its user, read in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(self._k("deny"), user)
            pipe.sismember(self._k("allow"), user)
            pipe.sismember(self._k("admins"), user)
            pipe.exists(self._k("paused"))
            pipe.get(self._k("profile", user))
            pipe.get(self._k("quota", user))
            pipe.scard(keys.user_active(self.settings, user))
            denied, allowed, listed, paused, profile, quota, active = await pipe.execute()
        admin = self._admin_without_redis(user) or bool(listed)
        daily, concurrent = self._limits(quota)
        return Standing(
            allowed=not denied and (bool(allowed) or self.settings.allow_by_default or admin),
            paused=bool(paused),
            admin=admin,
            profile=Profile.model_validate_json(profile) if profile else Profile(),
            daily=daily,
            concurrent=concurrent,
            active=int(active),
        )

    async def set_quota(self, user: str, daily: int | None, concurrent: int | None) -> Quota:
        """Set a user's daily render and concurrent request limits."""
        quota = Quota(daily=daily, concurrent=concurrent)
        await self.redis.set(self._k("quota", validate_user(user)), quota.model_dump_json())
        return quota

    async def quota(self, user: str) -> tuple[int, int]:
        """Return a user's (daily, concurrent) limits in force."""
        return self._limits(await self.redis.get(self._k("quota", user)))

    def _limits(self, raw: bytes | str | None) -> tuple[int, int]:
        """(daily, concurrent) from a stored quota, the settings' defaults where unset."""
        quota = Quota.model_validate_json(raw) if raw else Quota()
        daily = self.settings.daily_quota if quota.daily is None else quota.daily
        conc = self.settings.max_concurrent if quota.concurrent is None else quota.concurrent
        return daily, conc

    async def take_daily(self, user: str, daily: int | None = None) -> None:
        """Count one render against today's quota (`daily`: the limit, if already read), or
        raise `Forbidden` if it is used up."""
        if daily is None:
            daily, _ = await self.quota(user)
        key = self._k("usage", user, time.strftime("%Y%m%d", time.gmtime()))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2 * 86400)
            used, _ = await pipe.execute()
        if int(used) > daily:
            await self.redis.decr(key)
            raise Forbidden(f"daily limit reached ({daily} renders); try again tomorrow")

    async def give_back_daily(self, user: str) -> None:
        """Undo `take_daily` when a submission did not go through."""
        await self.redis.decr(self._k("usage", user, time.strftime("%Y%m%d", time.gmtime())))

    async def pause(self) -> None:
        """Stop accepting new renders."""
        await self.redis.set(self._k("paused"), "1")

    async def resume(self) -> None:
        """Accept new renders again."""
        await self.redis.delete(self._k("paused"))

    async def is_paused(self) -> bool:
        """Tell whether new renders are refused."""
        return bool(await self.redis.exists(self._k("paused")))

    # Stats and purge ----------------------------------------------------------------------

    async def count(self, event: str, seconds: dict[str, float] | None = None) -> None:
        """Add one event (and stage seconds) to today's statistics."""
        key = self._k("stats", time.strftime("%Y%m%d", time.gmtime()))
        await self.redis.hincrby(key, event, 1)
        for stage, value in (seconds or {}).items():
            await self.redis.hincrbyfloat(key, f"{stage}_sum", value)
        await self.redis.expire(key, 90 * 86400)

    async def stats(self, days: int = 7) -> dict[str, dict[str, float]]:
        """Return per-day counters for the last `days` days, newest first."""
        out: dict[str, dict[str, float]] = {}
        now = time.time()
        for back in range(days):
            day = time.strftime("%Y%m%d", time.gmtime(now - back * 86400))
            raw = await self.redis.hgetall(self._k("stats", day))
            out[day] = {_s(k): float(v) for k, v in raw.items()}
        return out

    async def purge_user(self, user: str) -> dict[str, int]:
        """Delete every voice, avatar, render, record and setting of a user."""
        counts = {"voices": 0, "avatars": 0, "files": 0, "records": 0}
        kinds: tuple[AssetKind, ...] = ("voice", "avatar")
        for kind in kinds:
            for asset in await self.owned(kind, user):
                counts["files"] += await self.remove(asset.kind, user, asset.name)
                counts[f"{kind}s"] += 1
            for ref in await self.redis.smembers(self._k("shared_with", kind, user)):
                owner, name = _s(ref).split("/", 1)
                await self.redis.srem(self._k("shares", kind, owner, name), user)
        counts["files"] += self.storage.delete_prefix(f"renders/{validate_user(user)}")
        async for key in self.redis.scan_iter(match=self._k("usage", user, "*")):
            await self.redis.delete(key)
        counts["api_keys"] = await self._drop_api_keys(user)
        await self.redis.srem(self._k("admins"), user)
        for suffix in (
            ("profile", user),
            ("quota", user),
            ("shared_with", "voice", user),
            ("shared_with", "avatar", user),
        ):
            await self.redis.delete(self._k(*suffix))
        return counts

    async def _drop_api_keys(self, user: str) -> int:
        """Delete a user's API keys; return how many.

        The keys are hashes at `<prefix>:apikey:<id>`, indexed in `<prefix>:apikeys`. Keys are
        identity data: a purged user must not keep a working credential.
        """
        dropped = 0
        for key_id in [_s(k) for k in await self.redis.smembers(self._k("apikeys"))]:
            owner = await self.redis.hget(self._k("apikey", key_id), "user")
            if owner is not None and _s(owner) == user:
                await self.redis.delete(self._k("apikey", key_id))
                await self.redis.srem(self._k("apikeys"), key_id)
                dropped += 1
        return dropped


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def dumps(assets: list[Asset]) -> str:
    """Return assets as JSON text (for CLI output)."""
    return json.dumps([a.model_dump() | {"ref": a.ref} for a in assets], indent=2)
