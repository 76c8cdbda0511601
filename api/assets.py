"""Routes for voices and avatars: enroll by upload, list, delete, share, unshare, poster."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from api.auth import Caller
from api.deps import Client
from api.metrics import count_accepted
from api.renders import API_ORIGIN, view
from api.schemas import ERRORS, AssetName, AssetOut, Problem, RequestOut, UserId
from api.uploads import receive_upload, upload_dir
from jayavatar.errors import Forbidden, NotFound
from jobs.accounts import Asset, AssetKind
from storage.keys import validate_name, validate_user

router = APIRouter(prefix="/v1", tags=["voices and avatars"], responses=ERRORS)

# The upload is the raw request body (curl -T / --data-binary), so it can be capped mid-stream.
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "audio/*": {"schema": {"type": "string", "format": "binary"}},
            "video/*": {"schema": {"type": "string", "format": "binary"}},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_UPLOAD_ERRORS: dict[int | str, dict[str, object]] = {
    413: {"model": Problem, "description": "The file is over the size cap."}
}

Replace = Annotated[bool, Query(description="Overwrite an existing asset of that name.")]
FileName = Annotated[
    str | None,
    Query(max_length=200, description="Original file name, to name it in messages (only)."),
]


def asset_out(asset: Asset) -> AssetOut:
    """Re-shape an asset for the API."""
    return AssetOut(**asset.model_dump(), ref=asset.ref)


async def _enroll(
    kind: AssetKind,
    name: str,
    replace: bool,
    filename: str | None,
    request: Request,
    key_user: str,
    client: Client,
) -> RequestOut:
    name = validate_name(name)  # before reading a byte of the body
    label = _label(filename, kind)
    with upload_dir() as tmp:
        path = await receive_upload(request, kind, client.settings, Path(tmp), label)
        submit = client.submit_voice_enroll if kind == "voice" else client.submit_avatar_enroll
        req = await submit(key_user, name, path, replace=replace, origin=API_ORIGIN, label=label)
    count_accepted(request, req)
    return await view(client, req)


def _label(filename: str | None, kind: AssetKind) -> str:
    """Name the upload in messages: the client's file name (quoted, never used as a path)."""
    shown = Path(filename).name if filename else ""
    return repr(shown[-100:]) if shown else f"the {kind} upload"


@router.put(
    "/voices/{name}",
    status_code=202,
    response_model=RequestOut,
    openapi_extra=_UPLOAD_BODY,
    responses=_UPLOAD_ERRORS,
)
async def enroll_voice(
    name: AssetName,
    request: Request,
    key: Caller,
    client: Client,
    replace: Replace = False,
    filename: FileName = None,
) -> RequestOut:
    """Enroll a voice from a speech sample sent as the body; returns the enrolment request."""
    return await _enroll("voice", name, replace, filename, request, key.user, client)


@router.put(
    "/avatars/{name}",
    status_code=202,
    response_model=RequestOut,
    openapi_extra=_UPLOAD_BODY,
    responses=_UPLOAD_ERRORS,
)
async def enroll_avatar(
    name: AssetName,
    request: Request,
    key: Caller,
    client: Client,
    replace: Replace = False,
    filename: FileName = None,
) -> RequestOut:
    """Enroll an avatar from a video or photo sent as the body; returns the enrolment request."""
    return await _enroll("avatar", name, replace, filename, request, key.user, client)


@router.get("/voices", response_model=list[AssetOut])
async def list_voices(key: Caller, client: Client) -> list[AssetOut]:
    """List the voices you may use: your own, then those shared with you."""
    return [asset_out(a) for a in await client.accounts.list_voices(key.user)]


@router.get("/avatars", response_model=list[AssetOut])
async def list_avatars(key: Caller, client: Client) -> list[AssetOut]:
    """List the avatars you may use: your own, then those shared with you."""
    return [asset_out(a) for a in await client.accounts.list_avatars(key.user)]


class Plural(StrEnum):
    """The two asset collections."""

    voices = "voices"
    avatars = "avatars"


def _kind(plural: Plural) -> AssetKind:
    return "voice" if plural is Plural.voices else "avatar"


@router.delete("/{plural}/{name}", status_code=204)
async def delete_asset(plural: Plural, name: AssetName, key: Caller, client: Client) -> Response:
    """Delete one of your own voices or avatars, with its files and shares."""
    await client.accounts.remove(_kind(plural), key.user, validate_name(name))
    return Response(status_code=204)


@router.put("/{plural}/{name}/shares/{other}", status_code=204)
async def share_asset(
    plural: Plural, name: AssetName, other: UserId, key: Caller, client: Client
) -> Response:
    """Let another user use one of your voices or avatars (the owner's consent)."""
    await client.accounts.share(_kind(plural), key.user, validate_name(name), validate_user(other))
    return Response(status_code=204)


@router.delete("/{plural}/{name}/shares/{other}", status_code=204)
async def unshare_asset(
    plural: Plural, name: AssetName, other: UserId, key: Caller, client: Client
) -> Response:
    """Withdraw a share."""
    await client.accounts.unshare(
        _kind(plural), key.user, validate_name(name), validate_user(other)
    )
    return Response(status_code=204)


@router.get(
    "/avatars/{owner}/{name}/poster.jpg",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}, "description": "The avatar's thumbnail."}},
)
async def avatar_poster(
    owner: UserId, name: AssetName, key: Caller, client: Client
) -> FileResponse:
    """Return the thumbnail of an avatar you may use."""
    try:
        asset = await client.accounts.resolve("avatar", key.user, f"{owner}/{name}")
    except Forbidden:
        raise NotFound(f"unknown avatar '{owner}/{name}'") from None  # never confirm others'

    path = client.storage.local_path(f"{asset.prefix}/poster.jpg")
    if not path.is_file():
        raise NotFound(f"avatar {asset.ref!r} has no thumbnail")
    return FileResponse(path, media_type="image/jpeg")
