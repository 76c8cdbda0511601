"""Every request body is capped, and every API write authenticated, before a byte is read.

FastAPI reads a JSON body before it runs the route's dependencies, the API-key check among
them, so without this a client with no key could make the server hold any body it sends. This
ASGI middleware runs first: it answers 401 to an API write without a valid key and 413 to a
declared length over the cap, then counts the bytes as the app reads them and stops at the cap
(chunked bodies declare no length). Uploads are capped per kind by the upload gate instead.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from redis.exceptions import RedisError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.keys import ApiKey, ApiKeys
from jayavatar.settings import Settings
from jobs.gate import size_text

log = logging.getLogger(__name__)
_UPLOAD = re.compile(r"/v1/(voices|avatars)/[^/]+")
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyGuard:
    """ASGI middleware: authenticate API writes and cap bodies before the app reads them."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request's head, then pass it on with a counting `receive`."""
        if scope["type"] != "http" or scope["method"] in _BODYLESS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["path"].startswith("/v1/"):
            try:
                key = await self._key(scope, headers)
            except RedisError as exc:  # the key check needs Redis: an outage is a 503 to retry
                log.warning(
                    "Redis unreachable during %s %s: %s", scope["method"], scope["path"], exc
                )
                busy = "the service is busy; try again shortly"
                return await _answer(send, 503, busy, [(b"retry-after", b"5")])
            if key is None:
                return await _unauthorized(send, headers)
            scope.setdefault("state", {})["api_key"] = key
        # Uploads pass the upload gate, which caps them (per kind) while they stream.
        upload = scope["method"] == "PUT" and _UPLOAD.fullmatch(scope["path"]) is not None
        cap = self.settings.max_json_bytes
        declared = headers.get("content-length", "")
        if not upload and declared.strip().isdigit() and int(declared) > cap:
            await _answer(
                send, 413, f"the body is {int(declared):,} bytes; the limit is {size_text(cap)}"
            )
            return
        await self.app(scope, receive if upload else _counting(receive, cap), send)

    async def _key(self, scope: Scope, headers: Headers) -> ApiKey | None:
        token = headers.get("x-api-key") or _bearer(headers.get("authorization", ""))
        if not token:
            return None
        keys: ApiKeys = scope["app"].state.keys
        return await keys.check(token)


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _counting(receive: Receive, cap: int) -> Receive:
    """Wrap `receive` so that a body passing `cap` bytes stops with 413."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > cap:
                raise HTTPException(413, f"the body is larger than {size_text(cap)}, the limit")
        return message

    return counted


async def _unauthorized(send: Send, headers: Headers) -> None:
    has_token = headers.get("x-api-key") or _bearer(headers.get("authorization", ""))
    detail = (
        "unknown or revoked API key" if has_token else "missing API key: send 'X-API-Key: <key>'"
    )
    await _answer(send, 401, detail, [(b"www-authenticate", b"Bearer")])


async def _answer(
    send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a JSON problem without reading the request body."""
    body = json.dumps({"detail": detail}).encode()
    head: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
