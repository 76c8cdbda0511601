"""Admin routes (admin API keys only): every request, pause/resume, user policy, statistics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from api.auth import Admin
from api.deps import Client
from api.renders import views
from api.schemas import ERRORS, USER_PATTERN, QuotaBody, RequestPage, State, UserId
from storage.keys import validate_user

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=ERRORS)


@router.get("/requests", response_model=RequestPage)
async def all_requests(
    key: Admin,
    client: Client,
    user: Annotated[
        str | None, Query(pattern=USER_PATTERN, description="Only this user's.")
    ] = None,
    state: Annotated[list[State] | None, Query(description="Only these states.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> RequestPage:
    """List every user's requests, newest first."""
    who = validate_user(user) if user else None
    items = await client.list_requests(who, set(state) if state else None, limit, offset)
    return RequestPage(items=await views(client, items), limit=limit, offset=offset)


@router.post("/pause", status_code=204)
async def pause(key: Admin, client: Client) -> Response:
    """Refuse new renders (running ones finish) until resumed."""
    await client.accounts.pause()
    return Response(status_code=204)


@router.post("/resume", status_code=204)
async def resume(key: Admin, client: Client) -> Response:
    """Accept new renders again."""
    await client.accounts.resume()
    return Response(status_code=204)


@router.get("/stats")
async def stats(
    key: Admin, client: Client, days: Annotated[int, Query(ge=1, le=90)] = 7
) -> dict[str, Any]:
    """Return per-day counters and the pause state."""
    return {
        "paused": await client.accounts.is_paused(),
        "days": await client.accounts.stats(days),
    }


@router.post("/users/{user}/allow", status_code=204)
async def allow(user: UserId, key: Admin, client: Client) -> Response:
    """Let a user render."""
    await client.accounts.allow(validate_user(user))
    return Response(status_code=204)


@router.post("/users/{user}/deny", status_code=204)
async def deny(user: UserId, key: Admin, client: Client) -> Response:
    """Stop a user from rendering."""
    await client.accounts.deny(validate_user(user))
    return Response(status_code=204)


@router.put("/users/{user}/quota", status_code=204)
async def set_quota(user: UserId, body: QuotaBody, key: Admin, client: Client) -> Response:
    """Set a user's daily renders and concurrent requests."""
    await client.accounts.set_quota(validate_user(user), body.daily, body.concurrent)
    return Response(status_code=204)


@router.delete("/users/{user}")
async def purge(user: UserId, key: Admin, client: Client) -> dict[str, int]:
    """Delete everything of a user: requests, renders, voices, avatars, settings."""
    return await client.purge_user(validate_user(user))
