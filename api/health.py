"""Liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api.deps import Client, Config
from api.metrics import Metrics
from jobs import keys

router = APIRouter(tags=["health"])
PROBE_TIMEOUT_S = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answer while the process serves requests (liveness)."""
    return {"status": "ok"}


async def readiness(client: Client, settings: Config) -> dict[str, Any]:
    """Check Redis and that each queue has a worker whose ARQ health check is fresh."""
    report: dict[str, Any] = {"redis": "ok", "queues": {}}
    try:
        # The client retries through Redis restarts for a minute; a probe must answer now.
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await client.redis.ping()
            for queue in keys.queues(settings):
                # ARQ rewrites this key every health_check_interval with a short TTL.
                alive = await client.redis.exists(keys.arq_health_check(queue))
                report["queues"][queue] = "ok" if alive else "no live worker"
    except (RedisError, OSError, TimeoutError) as exc:
        report["redis"] = f"unreachable: {type(exc).__name__}"
    report["ready"] = report["redis"] == "ok" and all(v == "ok" for v in report["queues"].values())
    return report


@router.get(
    "/readyz",
    responses={503: {"description": "Redis unreachable or a queue has no live worker."}},
)
async def readyz(client: Client, settings: Config) -> JSONResponse:
    """Answer 200 only if Redis answers and every queue has a live worker."""
    report = await readiness(client, settings)
    return JSONResponse(report, status_code=200 if report["ready"] else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(request: Request, client: Client) -> Response:
    """Expose queue depths, stage durations, failures by reason and renders per engine."""
    registry: Metrics = request.app.state.metrics
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            body = await registry.render(client)
    except (RedisError, OSError, TimeoutError):
        return Response("redis unreachable\n", status_code=503, media_type="text/plain")
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
