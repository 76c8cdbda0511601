"""Bad payloads get 422 with one clear line; the error tree maps to fixed statuses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.problems import Conflict, status_of
from api.uploads import TooLarge
from jayavatar import errors
from tests.api.live import headers


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, "body.text: Field required"),
        ({"text": ""}, "body.text: String should have at least 1 character"),
        ({"text": 5}, "body.text: Input should be a valid string"),
        ({"text": "hi", "max_bytes": False}, "body.max_bytes: Input should be a valid integer"),
        ({"text": "hi", "colour": "red"}, "body.colour: Extra inputs are not permitted"),
        (
            {"text": "hi", "max_bytes": -1},
            "body.max_bytes: Input should be greater than or equal to 0",
        ),
        ([], "body: Input should be a valid dictionary or object to extract fields from"),
    ],
)
async def test_invalid_render_bodies_are_422_with_the_field_named(
    api: httpx.AsyncClient, alice: str, body: Any, detail: str
) -> None:
    r = await api.post("/v1/renders", headers=headers(alice), json=body)
    assert r.status_code == 422
    assert r.json()["detail"] == detail
    assert r.json()["errors"][0]["loc"][0] == "body"


async def test_malformed_json_is_422(api: httpx.AsyncClient, alice: str) -> None:
    r = await api.post(
        "/v1/renders", headers={**headers(alice), "Content-Type": "application/json"}, content=b"{"
    )
    assert r.status_code == 422
    assert r.json()["detail"].startswith("body.1: JSON decode error")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "query.limit"),
        ("limit=abc", "query.limit"),
        ("offset=-1", "query.offset"),
        ("state=running", "query.state.0"),
        ("kind=other", "query.kind"),
    ],
)
async def test_invalid_list_queries_are_422(
    api: httpx.AsyncClient, alice: str, query: str, field: str
) -> None:
    r = await api.get(f"/v1/requests?{query}", headers=headers(alice))
    assert r.status_code == 422
    assert r.json()["detail"].startswith(f"{field}: ")


async def test_core_refusals_keep_their_message(api: httpx.AsyncClient, alice: str) -> None:
    # Refused by the shared pipeline code (no voice enrolled), not by the API layer.
    r = await api.post("/v1/renders", headers=headers(alice), json={"text": "hello"})
    assert r.status_code == 422
    assert r.json() == {"detail": "no voice given and no default voice set; enroll one or name one"}


async def test_too_long_text_is_refused_by_the_shared_check(
    api: httpx.AsyncClient, alice: str
) -> None:
    r = await api.post("/v1/renders", headers=headers(alice), json={"text": "a" * 5000})
    assert r.status_code == 422
    assert "1000" in r.json()["detail"]


async def test_quota_bodies_are_validated(api: httpx.AsyncClient, root: str) -> None:
    r = await api.put("/v1/admin/users/bob/quota", headers=headers(root), json={"daily": 1})
    assert (r.status_code, r.json()["detail"]) == (422, "body.concurrent: Field required")
    r = await api.put(
        "/v1/admin/users/BAD!/quota", headers=headers(root), json={"daily": 1, "concurrent": 1}
    )
    assert r.status_code == 422
    assert r.json()["detail"].startswith("path.user: String should match pattern")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (TooLarge("x"), 413),
        (Conflict("x"), 409),
        (errors.NotFound("x"), 404),
        (errors.Forbidden("x"), 403),
        (errors.BadInput("x"), 422),
        (errors.TransientError("x"), 503),
        (errors.ModelMissing("x"), 500),
        (errors.UserError("x"), 400),
        (errors.EngineError("x"), 500),
    ],
)
def test_the_error_tree_maps_to_statuses(exc: errors.JayAvatarError, code: int) -> None:
    assert status_of(exc) == code
