"""Who is calling: an API key from a header (scripts) or a cookie (the dashboard)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.keys import ApiKey, ApiKeys

COOKIE = "jayavatar_key"

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key.")
_bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token.")
_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="The dashboard's login.")
# Cookies ride along on cross-site requests, so they only authorise reads; writes need a header
# (the dashboard's own forms are checked for same origin in api.dashboard).
_SAFE = frozenset({"GET", "HEAD"})


def keys_of(request: Request) -> ApiKeys:
    """Return the app's key store."""
    keys: ApiKeys = request.app.state.keys
    return keys


async def caller(
    request: Request,
    header: Annotated[str | None, Depends(_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> ApiKey:
    """Return the caller's key; 401 if none was presented or it is unknown or revoked."""
    checked: ApiKey | None = getattr(request.state, "api_key", None)
    if checked is not None:
        return checked  # API writes are checked by `api.guard` before their body is read
    token = header or (bearer.credentials if bearer else None)
    if token is None and request.method in _SAFE:
        token = cookie
    if not token:
        raise HTTPException(
            401, "missing API key: send 'X-API-Key: <key>'", {"WWW-Authenticate": "Bearer"}
        )
    key = await keys_of(request).check(token)
    if key is None:
        raise HTTPException(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
    return key


async def admin(key: Annotated[ApiKey, Depends(caller)]) -> ApiKey:
    """Return the caller's key if it is an admin key; 403 otherwise."""
    if not key.admin:
        raise HTTPException(403, "this needs an admin API key")
    return key


Caller = Annotated[ApiKey, Depends(caller)]
Admin = Annotated[ApiKey, Depends(admin)]
