"""The API's request and response bodies; request records are re-shaped, never exposed raw."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

# Re-exported: the API speaks of the same kinds and states as the records.
from jobs.records import Kind as Kind
from jobs.records import Request
from jobs.records import State as State

# The same shapes storage.keys enforces, stated in the schema so clients (and fuzzers) know them.
USER_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"
RID_PATTERN = r"^[0-9a-f]{32}$"

RequestId = Annotated[str, Path(pattern=RID_PATTERN, description="A request id (32 hex digits).")]
AssetName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="A voice or avatar name (case-folded).")
]
UserId = Annotated[str, Path(pattern=USER_PATTERN, description="A user id.")]


class RenderCreate(BaseModel):
    """What to render; unset voice, avatar and language fall back to the user's defaults."""

    # Strict: a JSON `false` is not the number 0, nor `1` the string "1".
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field(min_length=1, max_length=20_000, description="What the avatar says.")
    language: str | None = Field(None, max_length=16, description="Language code, e.g. `en`.")
    voice: str | None = Field(None, max_length=100, description="`name` or `owner/name`.")
    avatar: str | None = Field(None, max_length=100, description="`name` or `owner/name`.")
    max_bytes: int = Field(
        0, ge=0, le=2**40, description="Encode the MP4 to fit this many bytes (0: no cap)."
    )


class QuotaBody(BaseModel):
    """A user's limits."""

    model_config = ConfigDict(extra="forbid", strict=True)

    daily: int = Field(ge=0, le=1_000_000, description="Renders per day.")
    concurrent: int = Field(ge=1, le=1000, description="Requests running at once.")


class RequestOut(BaseModel):
    """A render or enrolment request as the API shows it (front-end data left out)."""

    id: str
    kind: Kind
    state: State
    user: str
    text: str
    language: str
    voice: str
    avatar: str
    name: str
    created_at: float
    updated_at: float
    started_at: float
    finished_at: float
    progress: float
    phase: str
    error: str
    refused: bool = Field(
        False, description="The failure was a refusal of the input (a bad file, text or name)."
    )
    retry_of: str
    timings: dict[str, float]
    quality: dict[str, Any]
    result: dict[str, Any] = Field(
        default_factory=dict, description="Render statistics or enrolment metadata."
    )
    queue_position: int | None = Field(None, description="Queue place while waiting; 1 = next.")
    video_url: str | None = Field(None, description="Where the MP4 is, once the render is done.")
    events_url: str

    @classmethod
    def of(cls, req: Request, queue_position: int | None = None) -> RequestOut:
        """Re-shape a request record for the API."""
        done_render = req.kind == "render" and req.state == "done"
        return cls(
            **req.model_dump(
                include=set(cls.model_fields) - {"queue_position", "video_url"} - {"events_url"}
            ),
            queue_position=queue_position,
            video_url=f"/v1/requests/{req.id}/video" if done_render else None,
            events_url=f"/v1/requests/{req.id}/events",
        )


class RequestPage(BaseModel):
    """One page of requests, newest first."""

    items: list[RequestOut]
    limit: int
    offset: int


class AssetOut(BaseModel):
    """A voice or avatar the user may use: their own or one shared with them."""

    kind: str
    owner: str
    name: str
    ref: str
    created_at: float
    meta: dict[str, Any]
    shared_with: list[str]


class KeyInfo(BaseModel):
    """Who the presented API key belongs to."""

    user: str
    admin: bool
    key_id: str


class Problem(BaseModel):
    """Every error body: one line a person can act on."""

    detail: str


class ValidationProblem(BaseModel):
    """A 422 body: one summary line plus each field's error."""

    detail: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


# Answers every authenticated route may give, documented once for the OpenAPI schema.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body could not be parsed (e.g. not UTF-8)."},
    401: {"model": Problem, "description": "No API key, or an unknown or revoked one."},
    403: {"model": Problem, "description": "Not allowed (consent, admin, quota, pause)."},
    404: {"model": Problem, "description": "Unknown, or someone else's."},
    413: {"model": Problem, "description": "The body is over its cap (JSON: 64 KiB by default)."},
    422: {"model": ValidationProblem, "description": "Invalid input; `detail` says what."},
    503: {"model": Problem, "description": "Redis is unreachable; retry later."},
}
