"""Routes for requests: create a render, read, list, cancel, retry, follow progress, download."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi import Request as HttpRequest
from fastapi.responses import FileResponse, StreamingResponse

from api.auth import Caller
from api.deps import Client
from api.events import progress_stream
from api.keys import ApiKey
from api.metrics import count_accepted
from api.problems import Conflict
from api.schemas import (
    ERRORS,
    Problem,
    RenderCreate,
    RequestId,
    RequestOut,
    RequestPage,
    State,
)
from jayavatar.errors import NotFound
from jobs.client import JobClient
from jobs.records import Request
from storage.keys import quality_plot_key

router = APIRouter(prefix="/v1", tags=["requests"], responses=ERRORS)

API_ORIGIN = {"front": "api"}


async def owned(client: JobClient, key: ApiKey, rid: str) -> Request:
    """Return a request the caller may see: their own, or anyone's with an admin key.

    Others' ids answer 404 exactly like unknown ids, so ids cannot be probed.
    """
    req = await client.get(rid, None)
    if req.user != key.user and not key.admin:
        raise NotFound(f"no such request: {rid}")
    return req


async def view(client: JobClient, req: Request) -> RequestOut:
    """Return the API view of a request, with its queue position while it waits."""
    position = None if req.final else await client.position_of(req)
    return RequestOut.of(req, position)


async def views(client: JobClient, reqs: list[Request]) -> list[RequestOut]:
    """`view` of many requests, their places in line from one read of each queue."""
    waiting = [r for r in reqs if not r.final]
    places = dict(zip([r.id for r in waiting], await client.positions_of(waiting), strict=True))
    return [RequestOut.of(r, places.get(r.id)) for r in reqs]


@router.post("/renders", status_code=202, response_model=RequestOut)
async def create_render(
    body: RenderCreate, key: Caller, client: Client, request: HttpRequest, response: Response
) -> RequestOut:
    """Queue a render of `text` in a voice on an avatar; poll it or follow its events."""
    req = await client.submit_render(
        key.user,
        body.text,
        voice=body.voice,
        avatar=body.avatar,
        language=body.language,
        origin=API_ORIGIN,
        max_bytes=body.max_bytes,
    )
    count_accepted(request, req)
    response.headers["Location"] = f"/v1/requests/{req.id}"
    return await view(client, req)


@router.get("/requests", response_model=RequestPage)
async def list_requests(
    key: Caller,
    client: Client,
    state: Annotated[list[State] | None, Query(description="Only these states.")] = None,
    kind: Annotated[str | None, Query(pattern="^(render|voice_enroll|avatar_enroll)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> RequestPage:
    """List your requests (renders and enrolments), newest first; admins see all at /v1/admin."""
    items = await client.list_requests(key.user, set(state) if state else None, limit, offset)
    if kind is not None:
        items = [r for r in items if r.kind == kind]
    return RequestPage(items=await views(client, items), limit=limit, offset=offset)


@router.get("/requests/{rid}", response_model=RequestOut)
async def get_request(rid: RequestId, key: Caller, client: Client) -> RequestOut:
    """Return a request's state, progress, per-stage timings and queue position."""
    return await view(client, await owned(client, key, rid))


@router.post("/requests/{rid}/cancel", response_model=RequestOut)
async def cancel_request(rid: RequestId, key: Caller, client: Client) -> RequestOut:
    """Cancel a queued or running request."""
    req = await owned(client, key, rid)
    return await view(client, await client.cancel(req.id, key.user))


@router.post("/requests/{rid}/retry", status_code=202, response_model=RequestOut)
async def retry_request(
    rid: RequestId, key: Caller, client: Client, request: HttpRequest, response: Response
) -> RequestOut:
    """Submit a finished render again with the same parameters; returns the new request."""
    req = await owned(client, key, rid)
    new = await client.retry(req.id, key.user)
    count_accepted(request, new)
    response.headers["Location"] = f"/v1/requests/{new.id}"
    return await view(client, new)


@router.get(
    "/requests/{rid}/video",
    response_class=FileResponse,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "The MP4."},
        206: {"content": {"video/mp4": {}}, "description": "The requested byte range."},
        409: {"model": Problem, "description": "Not finished yet."},
        416: {"description": "The range lies outside the file."},
    },
)
async def download_video(rid: RequestId, key: Caller, client: Client) -> FileResponse:
    """Download a finished render; honours HTTP range requests so players can seek."""
    req = await owned(client, key, rid)
    if req.kind != "render":
        raise NotFound(f"request {rid} is an enrolment, not a render")
    if req.state != "done":
        raise Conflict(f"request {rid} is {req.state}, not done")
    path = client.output_path(req)
    if not path.is_file():
        raise NotFound(f"the video of request {rid} was deleted")
    return FileResponse(
        path,
        media_type="video/mp4",
        filename=f"jayavatar-{rid}.mp4",
        content_disposition_type="inline",
    )


@router.get(
    "/requests/{rid}/quality.png",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {}}, "description": "The quality report as a picture."},
        404: {"model": Problem, "description": "No picture (yet): not a finished render."},
    },
)
async def quality_picture(rid: RequestId, key: Caller, client: Client) -> FileResponse:
    """The render's quality report as one PNG: sync curves, mouth crops, voice likeness."""
    req = await owned(client, key, rid)
    path = client.storage.local_path(quality_plot_key(req.user, req.id))
    if req.kind != "render" or req.state != "done" or not path.is_file():
        raise NotFound(f"request {rid} has no quality picture")
    return FileResponse(path, media_type="image/png", content_disposition_type="inline")


@router.get(
    "/requests/{rid}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream."}},
)
async def request_events(rid: RequestId, key: Caller, client: Client) -> StreamingResponse:
    """Stream a request's progress as server-sent events until it is done, failed or cancelled.

    Events: `progress` (on every change), then one of `done`, `failed` or `cancelled`; each
    `data` is the same JSON as GET /v1/requests/{id}.
    """
    await owned(client, key, rid)

    async def snapshot() -> dict[str, Any]:
        req = await client.get(rid, None)
        return (await view(client, req)).model_dump(mode="json")

    return StreamingResponse(
        progress_stream(snapshot),
        media_type="text/event-stream",
        # Proxies must neither buffer nor cache a live stream.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
