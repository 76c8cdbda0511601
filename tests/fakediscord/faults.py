"""Fault injection for the fake Discord: canned error answers, 429s and stalled responses."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Rule:
    """Answer matching requests with `status`/`body` instead of serving them, `times` times."""

    method: str
    pattern: re.Pattern[str]
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request."""
        return self.times > 0 and method == self.method and bool(self.pattern.search(path))


class Stall:
    """Serve matching requests, then hold the answer until released (the caller sees nothing)."""

    def __init__(
        self, method: str, pattern: str, loop: asyncio.AbstractEventLoop, files_only: bool = False
    ) -> None:
        self.method = method
        self.files_only = files_only
        self.pattern = re.compile(pattern)
        self.reached = threading.Event()
        self._loop = loop
        self._released = asyncio.Event()
        self.armed = True

    def matches(self, method: str, path: str, has_files: bool) -> bool:
        """Whether this stall applies to a request (with `files_only`, only uploads)."""
        if self.files_only and not has_files:
            return False
        return self.armed and method == self.method and bool(self.pattern.search(path))

    async def hold(self) -> None:
        """Wait on the server loop until released; only the first matching request is held."""
        self.armed = False
        self.reached.set()
        await self._released.wait()

    def release(self) -> None:
        """Let the held answer go (from any thread)."""
        self._loop.call_soon_threadsafe(self._released.set)


@dataclass
class RateLimitWatch:
    """Remembers routes answered with 429 and requests that came back too early."""

    blocked_until: dict[str, float] = field(default_factory=dict)
    early: list[tuple[str, float]] = field(default_factory=list)
    limited: int = 0

    def note_request(self, key: str) -> None:
        """Record a request that arrived while its route was still rate limited."""
        until = self.blocked_until.get(key)
        now = time.monotonic()
        if until is not None and now < until:
            self.early.append((key, until - now))

    def note_429(self, key: str, retry_after: float) -> None:
        """Remember that `key` may not be called for `retry_after` seconds."""
        self.limited += 1
        self.blocked_until[key] = time.monotonic() + retry_after


class Faults:
    """All active fault rules."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.stalls: list[Stall] = []
        self.rate_limits = RateLimitWatch()

    def add(
        self, method: str, pattern: str, status: int, code: int, message: str, **kw: Any
    ) -> Rule:
        """Answer the next matching requests with a Discord JSON error."""
        rule = Rule(method, re.compile(pattern), status, {"code": code, "message": message}, **kw)
        self.rules.append(rule)
        return rule

    def add_rate_limit(self, method: str, pattern: str, retry_after: float, times: int = 1) -> Rule:
        """Answer the next matching requests with 429 and `retry_after`, as Discord does."""
        headers = {
            # discord.py treats a 429 without `Via` as a Cloudflare ban and gives up.
            "Via": "1.1 google",
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": "fakebucket",
            "X-RateLimit-Scope": "user",
            "Retry-After": str(max(1, round(retry_after))),
        }
        body = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": False,
        }
        rule = Rule(method, re.compile(pattern), 429, body, headers, times)
        self.rules.append(rule)
        return rule

    def match(self, method: str, path: str) -> Rule | None:
        """Return (and use up one shot of) the first rule matching a request."""
        for rule in self.rules:
            if rule.matches(method, path):
                rule.times -= 1
                return rule
        return None

    def stall_for(self, method: str, path: str, has_files: bool) -> Stall | None:
        """Return an armed stall for a request, if any."""
        for stall in self.stalls:
            if stall.matches(method, path, has_files):
                return stall
        return None
