"""Work a worker does beside its job slot: its liveness pulse, the reconciler, quality reports.

Each runs as an asyncio task in the worker process, not as ARQ jobs, so it never waits behind the
work queue (a reconciler in the queue came only after a 30-job backlog drained) and never delays
a render: reports are measured only while the worker is idle and stop when a job starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from jobs import reports
from jobs.context import StageContext
from jobs.enginehost import EngineHost
from jobs.keys import worker_queue
from jobs.liveness import PULSE_S, pulse
from jobs.reconciler import reconcile

log = logging.getLogger(__name__)

RECONCILE_EVERY_S = 2.0
DROP_DEAD_EVERY_S = 30.0


class Housekeeper:
    """The background task of one worker."""

    def __init__(self, ctx: dict[str, Any]) -> None:
        self.ctx = ctx
        self.sc: StageContext = ctx["stage"]
        self.lipsync = ctx["queue_kind"] == "lipsync"
        self.tools = EngineHost(self.sc.settings, "lipsync", engine=False)
        self._tasks: list[asyncio.Task[None]] = []
        self._last_reconcile = 0.0
        self._last_drop = 0.0

    def start(self) -> None:
        """Start the liveness pulse and the housekeeping loop."""
        self._tasks = [
            asyncio.create_task(self._forever(self.beat), name="liveness"),
            asyncio.create_task(self._forever(self.tick), name="reconciler"),
        ]
        if self.lipsync and self.sc.settings.quality_report:
            # Its own loop: a report may take seconds, and the reconciler must not wait for it.
            self._tasks.append(asyncio.create_task(self._forever(self.reports), name="reports"))

    async def stop(self) -> None:
        """Stop both tasks and the report process."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tools.kill()

    async def _forever(self, step: Any) -> None:
        while True:
            try:
                await step()
            except (RedisError, OSError) as exc:
                log.warning("housekeeping skipped a beat: %s", exc)
            except Exception:
                log.exception("housekeeping failed; carrying on")
            await asyncio.sleep(PULSE_S)

    async def beat(self) -> None:
        """Say this worker is alive (its own task, so a long report never silences it)."""
        await pulse(self.sc.redis, self.sc.settings, self.sc.worker_id)

    async def tick(self) -> None:
        """Reconcile when due (dropping dead jobs now and then)."""
        now = time.monotonic()
        if now - self._last_reconcile >= RECONCILE_EVERY_S:
            self._last_reconcile = now
            drop = now - self._last_drop >= DROP_DEAD_EVERY_S
            if drop:
                self._last_drop = now
            await reconcile(self.ctx, drop_dead=drop)

    async def reports(self) -> None:
        """Measure one pending report if this worker is idle."""
        if await self.idle():
            await self.report_once()

    def _queue(self) -> str:
        return worker_queue(self.sc.settings, self.lipsync)

    async def idle(self) -> bool:
        """Tell whether this worker runs no job and none is ready in its queue."""
        worker = self.ctx.get("arq_worker")
        if worker is not None and worker.job_counter > 0:
            return False
        ready = await self.sc.redis.zcount(self._queue(), "-inf", time.time() * 1000)
        return int(ready) == 0

    async def report_once(self) -> None:
        """Measure one pending render, stopping (and giving it back) if a job starts."""
        rid = await reports.claim_next(self.sc)
        if rid is None:
            return
        task = asyncio.ensure_future(reports.measure(self.sc, self.tools, rid))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=0.1)
                if not task.done() and not await self.idle():
                    log.info("stopped the report of %s for a render; it runs later", rid)
                    break
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await reports.release(self.sc, rid)
        if not task.cancelled() and task.exception() is not None:
            await reports.release(self.sc, rid)
            raise task.exception()
