"""One place that turns the error tree and validation failures into HTTP answers."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from api.uploads import TooLarge
from jayavatar.errors import (
    BadInput,
    EngineError,
    Forbidden,
    JayAvatarError,
    NotFound,
    TransientError,
    UserError,
    one_line,
)

log = logging.getLogger(__name__)


class Conflict(BadInput):
    """The request is valid but the resource is not in a state for it (e.g. no video yet)."""


# Most specific first: TooLarge is a BadInput.
STATUS: tuple[tuple[type[JayAvatarError], int], ...] = (
    (TooLarge, 413),
    (Conflict, 409),
    (NotFound, 404),
    (Forbidden, 403),
    (BadInput, 422),
    (UserError, 400),
    (TransientError, 503),
    (EngineError, 500),
)


def status_of(exc: JayAvatarError) -> int:
    """Return the HTTP status for an error of the tree."""
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 500)


def validation_summary(exc: RequestValidationError) -> str:
    """Summarise pydantic errors as one line: `body.text: Field required; query.limit: ...`."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts) or "invalid request"


async def _tree(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, JayAvatarError)
    code = status_of(exc)
    if code >= 500 and code != 503:
        log.error("request failed: %s %s", request.method, request.url.path, exc_info=exc)
    headers = {"Retry-After": "5"} if code == 503 else None
    if request.url.path.startswith("/dashboard/"):
        return _page(request, code, one_line(exc))
    return JSONResponse({"detail": one_line(exc)}, status_code=code, headers=headers)


def _page(request: Request, code: int, message: str) -> Response:
    """Answer a dashboard page's error with a page, not JSON."""
    templates = request.app.state.templates
    ctx = {"request": request, "key": None, "status": code, "error": message}
    response: Response = templates.TemplateResponse(request, "error.html", ctx, status_code=code)
    return response


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": validation_summary(exc), "errors": errors}, status_code=422)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _redis_down(request: Request, exc: Exception) -> Response:
    # Any route may touch Redis before the client maps its errors (the API-key check does):
    # an outage is a 503 to retry, never a 500 or a dropped connection.
    log.warning("Redis unreachable during %s %s: %s", request.method, request.url.path, exc)
    return await _tree(request, TransientError("the service is busy; try again shortly"))


def install(app: FastAPI) -> None:
    """Register the handlers on an app."""
    app.add_exception_handler(JayAvatarError, _tree)
    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(RedisTimeoutError, _redis_down)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http)
