"""The served OpenAPI schema, fuzzed with Schemathesis: no generated input may cause a 5xx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from api.keys import ApiKeys
from jayavatar.settings import Settings
from jobs.client import JobClient
from tests.api.live import live_server, make_settings

# Deliberately few examples per operation in the default suite; the slow test runs many more.
QUICK_EXAMPLES = 12
THOROUGH_EXAMPLES = 300


def admin_token(settings: Settings) -> str:
    """Create an admin key, so generated calls reach every route's handler."""

    async def go() -> str:
        client = await JobClient.connect(settings)
        try:
            keys = ApiKeys(client.redis, settings, client.accounts)
            return (await keys.create("fuzz", admin=True))[0]
        finally:
            await client.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The API on uvicorn and an admin token: (base URL, token)."""
    cfg = make_settings(redis_url, Path(tmp_path_factory.mktemp("fuzz")), max_sample_bytes=4096)
    token = admin_token(cfg)
    with live_server(cfg) as base:
        yield base, token


@pytest.fixture(scope="module")
def api_schema(served: tuple[str, str]) -> schemathesis.BaseSchema:
    """The schema as the server serves it."""
    base, _ = served
    return schemathesis.openapi.from_url(f"{base}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")
# Not checked, with reasons:
# - positive_data_acceptance: a schema-valid render can still be refused by state (no voice yet,
#   quota, pause) with a 4xx; that is the contract, not a schema gap.
# - unsupported_method, allow_header_conformance: Starlette answers 405 from the first route
#   whose path matches, so its Allow header names only that route's method.
NOT_CHECKED = [
    schemathesis.checks.positive_data_acceptance,
    schemathesis.checks.unsupported_method,
    schemathesis.checks.allow_header_conformance,
]
QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture]


#: The guard answers 413 to a JSON body over this many bytes before any validation.
JSON_CAP = int(Settings.model_fields["max_json_bytes"].default)


def over_json_cap(case: schemathesis.Case[Any]) -> bool:
    """Whether a generated JSON body is over the API's cap (as requests serialises it)."""
    body = case.body
    if case.media_type != "application/json" or body is None:
        return False
    if isinstance(body, (bytes, bytearray)):  # negative cases may send raw bytes
        return len(body) > JSON_CAP
    try:
        return len(json.dumps(body).encode()) > JSON_CAP
    except (TypeError, ValueError):
        return False


def call(case: schemathesis.Case[Any], served: tuple[str, str]) -> None:
    """Send one generated request with the admin key; fail on any 5xx or schema breach."""
    base, token = served
    if over_json_cap(case):
        # Refused by size before its fields are looked at: a 413, whatever else is wrong.
        response = case.call(base_url=base, headers={"X-API-Key": token}, timeout=20)
        assert response.status_code == 413, response.text
        assert "the limit is" in response.json()["detail"]
        return
    if case.operation.path == "/readyz":
        # 503 is /readyz's documented answer here: this module runs no workers.
        response = case.call(base_url=base, timeout=20)
        if case.method.upper() == "GET":
            assert response.status_code == 503 and response.json()["redis"] == "ok"
        else:
            assert response.status_code < 500
        return
    case.call_and_validate(
        base_url=base, headers={"X-API-Key": token}, timeout=20, excluded_checks=NOT_CHECKED
    )


@schema.parametrize()
@settings(max_examples=QUICK_EXAMPLES, deadline=None, suppress_health_check=QUIET)
def test_generated_requests_get_no_5xx(
    case: schemathesis.Case[Any], served: tuple[str, str]
) -> None:
    call(case, served)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=THOROUGH_EXAMPLES, deadline=None, suppress_health_check=QUIET)
def test_many_generated_requests_get_no_5xx(
    case: schemathesis.Case[Any], served: tuple[str, str]
) -> None:
    call(case, served)


def test_the_schema_is_served_and_documents_auth(served: tuple[str, str]) -> None:
    base, _ = served
    doc = httpx.get(f"{base}/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert {"APIKeyHeader", "HTTPBearer"} <= set(schemes)
    assert all(p.startswith(("/v1/", "/healthz", "/readyz", "/metrics")) for p in doc["paths"])
    # The body guard's answer is part of every write's contract.
    assert "413" in doc["paths"]["/v1/renders"]["post"]["responses"]
    assert httpx.get(f"{base}/docs").status_code == 200
