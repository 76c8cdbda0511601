"""Prometheus metrics: queue depths read at scrape time, stage timings from the completion stream.

A single API process follows the completion stream from its start (plain XREAD, no consumer
group, so it never takes a message from the bot) and observes every finished request once.
Counters therefore start at zero with the process, as Prometheus expects of counters.

Several API processes (`JAYAVATAR_API_WORKERS`) share one API start's counters through
prometheus_client's multiprocess mode: `shared_metrics` gives the start a fresh folder
(PROMETHEUS_MULTIPROC_DIR) and its processes read the stream in one consumer group named after
it, so each finished request is counted by exactly one of them and /metrics, whichever process
answers, sums the folder. The gauges are read from Redis at scrape time and never shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar

import redis as sync_redis
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError
from starlette.requests import Request as StarletteRequest

from api.keys import done
from jayavatar.settings import Settings
from jobs import keys
from jobs.client import JobClient
from jobs.completions import CompletionReader
from jobs.records import Request

log = logging.getLogger(__name__)

STAGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
#: Set (by `shared_metrics`) before the API's processes import prometheus_client: it picks
#: file-backed values at import time.
SHARED_DIR = "PROMETHEUS_MULTIPROC_DIR"
GROUP_PREFIX = "api-metrics-"


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


class Gauges:
    """The gauges, set from Redis at scrape time and yielded as plain families.

    Not `Gauge` objects: in multiprocess mode those would be written to the shared folder
    and reported once per process.
    """

    HELP: ClassVar[dict[str, str]] = {
        "jayavatar_queue_depth": "Jobs waiting or running per queue.",
        "jayavatar_queue_worker_alive": (
            "1 if a worker of the queue wrote its health check recently."
        ),
        "jayavatar_active_requests": "Requests not yet final.",
        "jayavatar_paused": "1 while an admin paused rendering.",
    }

    def __init__(self) -> None:
        self.per_queue: dict[str, dict[str, float]] = {}
        self.single: dict[str, float] = {}

    def collect(self) -> Iterable[Metric]:
        """Yield the values of the last refresh."""
        for name, values in self.per_queue.items():
            family = GaugeMetricFamily(name, self.HELP[name], labels=["queue"])
            for queue, value in values.items():
                family.add_metric([queue], value)
            yield family
        for name, value in self.single.items():
            yield GaugeMetricFamily(name, self.HELP[name], value=value)


class Metrics:
    """The API process's metrics registry and the task that feeds it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.shared = os.environ.get(SHARED_DIR) or None
        # Shared: the counters live in the folder and the registry reads all processes' files.
        r = None if self.shared else self.registry
        if self.shared:
            MultiProcessCollector(self.registry, self.shared)
        self.gauges = Gauges()
        self.registry.register(self.gauges)
        self._counters(r)

    def _counters(self, r: CollectorRegistry | None) -> None:
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
        self.accepted = Counter(
            "jayavatar_requests_accepted",
            "Requests queued through this API (renders, retries, enrolments).",
            ["kind"],
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
        depth, alive = {}, {}
        for queue in keys.queues(self.settings):
            depth[queue] = float(await redis.zcard(queue))
            alive[queue] = 1.0 if await redis.exists(keys.arq_health_check(queue)) else 0.0
        self.gauges.per_queue = {
            "jayavatar_queue_depth": depth,
            "jayavatar_queue_worker_alive": alive,
        }
        self.gauges.single = {
            "jayavatar_active_requests": float(await done(redis.scard(client.store.active_key))),
            "jayavatar_paused": 1.0 if await client.accounts.is_paused() else 0.0,
        }

    async def render(self, client: JobClient) -> bytes:
        """Return the exposition text with fresh gauges."""
        await self.refresh(client)
        return generate_latest(self.registry)

    async def follow(self, client: JobClient) -> None:
        """Observe every request announced on the completion stream until cancelled."""
        stream = self._reader(client)
        joined = stream.group is None
        while True:
            try:
                if not joined:
                    await stream.join(start="$")
                    joined = True
                await self._observe_batch(client, stream)
            except (RedisError, OSError) as exc:
                log.warning("metrics: completion stream unreadable, retrying: %s", exc)
                joined = stream.group is None  # the group may have gone with Redis's data
                await asyncio.sleep(2)

    async def _observe_batch(self, client: JobClient, stream: CompletionReader) -> None:
        entries = await stream.new(count=100, block_ms=5000)
        for entry in entries:
            await self._observe_entry(client, entry.rid)
        if stream.group is not None:
            await stream.ack(*(entry.id for entry in entries))

    def _reader(self, client: JobClient) -> CompletionReader:
        if self.shared is None:
            return CompletionReader(client.redis, self.settings)
        # One group per API start: each entry goes to one of its processes.
        group = GROUP_PREFIX + Path(self.shared).name
        return CompletionReader(client.redis, self.settings, group, f"pid-{os.getpid()}")

    async def _observe_entry(self, client: JobClient, rid: str) -> None:
        try:
            req = await client.store.get(rid)
        except Exception:  # purged before we looked: nothing to count
            return
        self.observe(req)


def count_accepted(request: StarletteRequest, req: Request) -> None:
    """Count a request the API just queued, in the metrics of the app that queued it."""
    metrics: Metrics = request.app.state.metrics
    metrics.accepted.labels(req.kind).inc()


@contextlib.contextmanager
def shared_metrics(settings: Settings) -> Iterator[Path]:
    """Give an API start of several processes a fresh metrics folder; remove it and its group after.

    Set before the processes start (they inherit it), so their counters are file-backed.
    """
    folder = Path(tempfile.mkdtemp(prefix="jayavatar-metrics-"))
    os.environ[SHARED_DIR] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(SHARED_DIR, None)
        shutil.rmtree(folder, ignore_errors=True)
        _drop_group(settings, GROUP_PREFIX + folder.name)


def _drop_group(settings: Settings, group: str) -> None:
    """Destroy an API start's consumer group; Redis may be gone by now, which is fine."""
    with contextlib.suppress(RedisError, OSError):
        conn = sync_redis.Redis.from_url(settings.redis_url, socket_timeout=2)
        try:
            conn.xgroup_destroy(keys.completions(settings), group)
        finally:
            conn.close()
