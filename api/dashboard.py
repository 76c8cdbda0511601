"""The dashboard: server-rendered pages over the same client calls as the JSON API.

Login stores the API key in an HttpOnly, SameSite=Strict cookie. Form posts are also checked
for a same-origin `Origin`/`Referer`, so another site cannot make a logged-in browser act.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.auth import COOKIE, keys_of
from api.deps import Client, Config
from api.health import readiness
from api.keys import ApiKey
from api.metrics import count_accepted
from api.renders import API_ORIGIN, owned, view, views
from jayavatar.errors import Forbidden, NotFound, UserError, one_line
from jobs import keys
from jobs.client import JobClient
from jobs.hosts import list_workers
from storage.keys import quality_plot_key

router = APIRouter(prefix="/dashboard", include_in_schema=False)
# The order stages happen in; engine calls (synthesize_s, render_s) nest in their stage.
STAGE_ORDER = (
    "voice_wait_s",
    "voice_stage_s",
    "synthesize_s",
    "enroll_wait_s",
    "enroll_stage_s",
    "enroll_s",
    "prepare_s",
    "lipsync_wait_s",
    "lipsync_stage_s",
    "render_s",
)


class LoginNeeded(Exception):
    """No valid dashboard cookie; answered with a redirect to the login page."""


def templates(request: Request) -> Jinja2Templates:
    """Return the app's template set."""
    found: Jinja2Templates = request.app.state.templates
    return found


async def viewer(request: Request) -> ApiKey:
    """Return the logged-in key; redirect to login without one; refuse cross-site posts."""
    token = request.cookies.get(COOKIE)
    key = await keys_of(request).check(token) if token else None
    if key is None:
        raise LoginNeeded()
    if request.method == "POST" and not same_origin(request):
        raise Forbidden("cross-site form post refused")
    return key


def same_origin(request: Request) -> bool:
    """Tell whether a form post came from a page of this site."""
    source = request.headers.get("origin") or request.headers.get("referer") or ""
    return urlsplit(source).netloc == request.headers.get("host", "")


Viewer = Annotated[ApiKey, Depends(viewer)]


def page(
    request: Request, name: str, key: ApiKey | None, status: int = 200, **ctx: Any
) -> Response:
    """Render a template with the common context."""
    ctx.update(request=request, key=key)
    return templates(request).TemplateResponse(request, name, ctx, status_code=status)


def quality_line(quality: dict[str, Any], result: dict[str, Any] | None = None) -> str:
    """Format a render's quality numbers as one short line.

    Without quality scores, fall back to the engine's render statistics (audio length, frames,
    frames with a face), which already tell a bad render (no face found) from a good one.
    """
    if not quality and result:
        return _stats_line(result)
    if isinstance(quality.get("summary"), str):  # the quality report (engines.quality.report)
        return str(quality["summary"])
    parts = []
    for name, value in sorted(quality.items()):
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        parts.append(f"{name} {shown}")
    return " · ".join(parts)


def _stats_line(result: dict[str, Any]) -> str:
    parts = []
    if isinstance(result.get("audio_s"), int | float):
        parts.append(f"{result['audio_s']:.1f} s of speech")
    frames, faces = result.get("frames"), result.get("face_frames")
    if isinstance(frames, int) and frames > 0:
        parts.append(f"{frames} frames")
        if isinstance(faces, int):
            parts.append(f"face in {100 * faces / frames:.0f}%")
    return " · ".join(parts)


def timeline(timings: dict[str, float]) -> list[tuple[str, float, float, float]]:
    """Lay stage timings out as a Gantt chart: (name, seconds, left %, width %).

    Waits and stages (`*_wait_s`, `*_stage_s`) follow one another; an engine call such as
    `synthesize_s` sits inside the stage before it. Unknown names are listed last.
    """
    known = [k for k in STAGE_ORDER if k in timings]
    names = known + sorted(k for k in timings if k not in STAGE_ORDER)
    cursor = stage_start = 0.0
    spans = []
    for name in names:
        seconds = max(0.0, float(timings[name]))
        if name.endswith(("_wait_s", "_stage_s")):
            stage_start, cursor = cursor, cursor + seconds
        spans.append((name, seconds, stage_start))
    total = max([cursor] + [start + sec for _n, sec, start in spans]) or 1.0
    return [(n, sec, 100 * start / total, 100 * sec / total) for n, sec, start in spans]


@router.get("/login")
async def login_form(request: Request) -> Response:
    """Show the login form."""
    return page(request, "login.html", None)


@router.post("/login")
async def login(request: Request, api_key: Annotated[str, Form(max_length=200)]) -> Response:
    """Check a key and keep it in a cookie."""
    if not same_origin(request):
        return page(request, "login.html", None, 403, error="cross-site login refused")
    key = await keys_of(request).check(api_key)
    if key is None:
        return page(request, "login.html", None, 401, error="unknown or revoked API key")
    response = RedirectResponse("/dashboard", status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(
        COOKIE, api_key.strip(), httponly=True, samesite="strict", secure=secure, path="/"
    )
    return response


@router.post("/logout")
async def logout(key: Viewer) -> Response:
    """Forget the key."""
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


async def _overview(key: ApiKey, client: JobClient, settings: Config) -> dict[str, Any]:
    who = None if key.admin else key.user
    recent = await client.list_requests(who, None, 20, 0)
    return {
        "ready": await readiness(client, settings),
        "depths": {q: await client.redis.zcard(q) for q in keys.queues(settings)},
        "paused": await client.accounts.is_paused(),
        # Host names and GPUs are the operator's business, not every user's.
        "workers": await list_workers(client.redis, settings) if key.admin else [],
        "recent": await views(client, recent),
        "voices": await client.accounts.list_voices(key.user),
        "avatars": await client.accounts.list_avatars(key.user),
        "quality_line": quality_line,
    }


@router.get("")
async def overview(request: Request, key: Viewer, client: Client, settings: Config) -> Response:
    """Queues and workers at a glance, a render form and recent renders."""
    return page(request, "overview.html", key, **await _overview(key, client, settings))


@router.post("/renders")
async def submit(
    request: Request,
    key: Viewer,
    client: Client,
    settings: Config,
    text: Annotated[str, Form(max_length=20_000)],
    voice: Annotated[str, Form(max_length=100)] = "",
    avatar: Annotated[str, Form(max_length=100)] = "",
    language: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Queue a render from the form and show its page."""
    try:
        req = await client.submit_render(
            key.user, text, voice or None, avatar or None, language or None, API_ORIGIN
        )
    except UserError as exc:
        ctx = await _overview(key, client, settings)
        return page(request, "overview.html", key, 422, error=one_line(exc), **ctx)
    count_accepted(request, req)
    return RedirectResponse(f"/dashboard/requests/{req.id}", status_code=303)


@router.get("/requests/{rid}")
async def detail(request: Request, rid: str, key: Viewer, client: Client) -> Response:
    """A request's state, live progress, stage timeline and video."""
    req = await owned(client, key, rid)
    return page(
        request,
        "request.html",
        key,
        req=await view(client, req),
        timeline=timeline(req.timings),
        quality=quality_line(req.quality, req.result),
        pictures=pictures(client, req),
    )


def pictures(client: JobClient, req: Any) -> dict[str, str | bool]:
    """The request page's pictures: the avatar's poster, and the quality report's picture.

    `measuring` is true while a finished render's report is still being made, so the page
    can wait for it.
    """
    out: dict[str, str | bool] = {"poster": "", "quality": "", "measuring": False}
    if req.kind != "render":
        return out
    if "/" in req.avatar:
        out["poster"] = f"/v1/avatars/{req.avatar}/poster.jpg"
    if req.state == "done":
        if client.storage.exists(quality_plot_key(req.user, req.id)):
            out["quality"] = f"/v1/requests/{req.id}/quality.png"
        out["measuring"] = not req.quality and client.settings.quality_report
    return out


@router.post("/requests/{rid}/cancel")
async def cancel(rid: str, key: Viewer, client: Client) -> Response:
    """Cancel a request from its page."""
    req = await owned(client, key, rid)
    await client.cancel(req.id, key.user)
    return RedirectResponse(f"/dashboard/requests/{rid}", status_code=303)


@router.post("/requests/{rid}/retry")
async def retry(request: Request, rid: str, key: Viewer, client: Client) -> Response:
    """Retry a finished request and show the new one."""
    req = await owned(client, key, rid)
    new = await client.retry(req.id, key.user)
    count_accepted(request, new)
    return RedirectResponse(f"/dashboard/requests/{new.id}", status_code=303)


@router.get("/assets")
async def assets(request: Request, key: Viewer, client: Client) -> Response:
    """Voices and avatars, avatars with their thumbnails."""
    return page(
        request,
        "assets.html",
        key,
        voices=await client.accounts.list_voices(key.user),
        avatars=await client.accounts.list_avatars(key.user),
    )


@router.post("/admin/{action}")
async def admin_action(action: str, key: Viewer, client: Client) -> Response:
    """Pause or resume rendering (admin keys only)."""
    if not key.admin:
        raise Forbidden("this needs an admin API key")
    if action == "pause":
        await client.accounts.pause()
    elif action == "resume":
        await client.accounts.resume()
    else:
        raise NotFound(f"no admin action {action[:20]!r}")
    return RedirectResponse("/dashboard", status_code=303)


def install(app: FastAPI) -> None:
    """Add the templates, the login redirect and the root redirect to an app."""
    app.state.templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

    async def to_login(request: Request, exc: Exception) -> Response:
        return RedirectResponse("/dashboard/login", status_code=303)

    async def root() -> Response:
        return RedirectResponse("/dashboard", status_code=303)

    app.add_exception_handler(LoginNeeded, to_login)
    app.add_api_route("/", root, methods=["GET"], include_in_schema=False)
    app.include_router(router)


def _queues(settings: Config) -> tuple[str, str]:
    return keys.queues(settings)
