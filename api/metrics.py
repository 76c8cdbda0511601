"""Prometheus metrics: queue depths read at scrape time, stage timings from the completion stream.

Each API process follows the completion stream from its start (plain XREAD, no consumer group,
so it never takes a message from the bot) and observes every finished request once.
Counters therefore start at zero with the process, as Prometheus expects of counters.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from redis.exceptions import RedisError

from api.keys import done
from jayavatar.settings import Settings
from jobs import keys
from jobs.client import JobClient
from jobs.completions import CompletionReader
from jobs.records import Request

log = logging.getLogger(__name__)

STAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)


def failure_reason(req: Request) -> str:
    """Return a low-cardinality reason for a failed or cancelled request.

    The record holds `errors.one_line(exc)`, whose wording fixes the class of the error.
    """
    if req.state == "cancelled":
        return "cancelled"
    text = req.error.lower()
    if "timed out" in text or "timeout" in text or "took longer" in text:
        return "timeout"
    if text.startswith("temporarily unavailable"):
        return "transient"
    if text.startswith("the engine failed"):
        return "engine"
    if text.startswith("internal error"):
        return "internal"
    return "user"


class Metrics:
    """The API process's metrics registry and the task that feeds it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "jayavatar_queue_depth", "Jobs waiting or running per queue.", ["queue"], registry=r
        )
        self.workers = Gauge(
            "jayavatar_queue_worker_alive",
            "1 if a worker of the queue wrote its health check recently.",
            ["queue"],
            registry=r,
        )
        self.active = Gauge("jayavatar_active_requests", "Requests not yet final.", registry=r)
        self.paused = Gauge("jayavatar_paused", "1 while an admin paused rendering.", registry=r)
        self.stage_seconds = Histogram(
            "jayavatar_stage_seconds",
            "Per-stage durations of finished requests (waits, stages, engine calls).",
            ["kind", "stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.finished = Counter(
            "jayavatar_requests_finished",
            "Requests that reached a final state.",
            ["kind", "state"],
            registry=r,
        )
        self.failures = Counter(
            "jayavatar_failures",
            "Failed or cancelled requests by reason.",
            ["kind", "reason"],
            registry=r,
        )
        self.renders = Counter(
            "jayavatar_renders",
            "Finished renders per engine pair.",
            ["voice_engine", "lipsync_engine"],
            registry=r,
        )

    def observe(self, req: Request) -> None:
        """Count one finished request."""
        self.finished.labels(req.kind, req.state).inc()
        for stage, seconds in req.timings.items():
            self.stage_seconds.labels(req.kind, stage).observe(max(0.0, float(seconds)))
        if req.state != "done":
            self.failures.labels(req.kind, failure_reason(req)).inc()
        elif req.kind == "render":
            # Workers may name their engine in the result; else the deployment's setting.
            voice = str(req.result.get("voice_engine") or self.settings.voice_engine)
            lipsync = str(req.result.get("engine") or self.settings.lipsync_engine)
            self.renders.labels(voice, lipsync).inc()

    async def refresh(self, client: JobClient) -> None:
        """Read the gauges from Redis (called at scrape time)."""
        redis = client.redis
        for queue in keys.queues(self.settings):
            self.queue_depth.labels(queue).set(await redis.zcard(queue))
            self.workers.labels(queue).set(
                1 if await redis.exists(keys.arq_health_check(queue)) else 0
            )
        self.active.set(await done(redis.scard(client.store.active_key)))
        self.paused.set(1 if await client.accounts.is_paused() else 0)

    async def render(self, client: JobClient) -> bytes:
        """Return the exposition text with fresh gauges."""
        await self.refresh(client)
        return generate_latest(self.registry)

    async def follow(self, client: JobClient) -> None:
        """Observe every request announced on the completion stream until cancelled."""
        stream = CompletionReader(client.redis, self.settings)
        while True:
            try:
                for entry in await stream.new(count=100, block_ms=5000):
                    await self._observe_entry(client, entry.rid)
            except (RedisError, OSError) as exc:
                log.warning("metrics: completion stream unreadable, retrying: %s", exc)
                await asyncio.sleep(2)

    async def _observe_entry(self, client: JobClient, rid: str) -> None:
        try:
            req = await client.store.get(rid)
        except Exception:  # purged before we looked: nothing to count
            return
        self.observe(req)
