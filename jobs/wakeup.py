"""Picking a job up as soon as it is queued, instead of at ARQ's next poll.

ARQ polls its queue every `poll_delay` (0.5 s), so each hop of a request waited 0.25 s on average.
Every enqueue here also pushes a token on a short Redis list beside the queue; an idle worker
blocks on that list (BLPOP) and polls the moment a token arrives. A busy worker waits for its job
to end instead, so tokens stay for idle workers. The list is capped: a token only says "look now".
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis
from arq.worker import Worker
from redis.exceptions import RedisError

from jobs.keys import wake_key

log = logging.getLogger(__name__)

#: The longest an idle worker sleeps without a token (deferred retries become due meanwhile).
IDLE_WAIT_S = 0.5
MAX_TOKENS = 64
#: How far back a job may be placed in its queue (`at`); ARQ's job key expiry needs a bound.
MAX_BACKDATE_S = 3600.0


async def enqueue(
    redis: ArqRedis,
    function: str,
    payload: dict[str, Any],
    job_id: str,
    queue: str,
    at: float | None = None,
) -> None:
    """Enqueue an ARQ job under its deterministic id and wake an idle worker of its queue.

    `at` (a past time) places the job where it would have been queued then: a retried request
    goes back to its old place in line rather than behind everything queued since.
    """
    when = None
    if at is not None:
        when = datetime.fromtimestamp(max(at, time.time() - MAX_BACKDATE_S), tz=UTC)
    await redis.enqueue_job(function, payload, _job_id=job_id, _queue_name=queue, _defer_until=when)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.lpush(wake_key(queue), b"1")
        pipe.ltrim(wake_key(queue), 0, MAX_TOKENS - 1)
        await pipe.execute()


class WakeWorker(Worker):
    """An ARQ worker that sleeps on its queue's wake-up list between polls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, poll_delay=0, **kwargs)
        self.ctx["arq_worker"] = self

    @property
    def busy(self) -> bool:
        """Tell whether every job slot is taken."""
        return self.job_counter >= self.max_jobs

    async def _poll_iteration(self) -> None:
        await super()._poll_iteration()
        if self.burst:
            return
        await self._wait()

    async def _wait(self) -> None:
        running = [t for t in self.tasks.values() if not t.done()]
        if self.busy and running:
            await asyncio.wait(running, timeout=IDLE_WAIT_S, return_when=asyncio.FIRST_COMPLETED)
            return
        try:
            # Redis 6+ takes a decimal timeout; the stubs say int.
            await self.pool.blpop([wake_key(self.queue_name)], timeout=IDLE_WAIT_S)  # type: ignore[arg-type]
        except (RedisError, OSError) as exc:
            log.warning("waiting for work failed (%s); polling again shortly", exc)
            await asyncio.sleep(IDLE_WAIT_S)
