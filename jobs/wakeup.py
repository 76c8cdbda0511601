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
from typing import Any

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import as_int, timestamp_ms
from arq.worker import Worker
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from jobs.keys import wake_key

log = logging.getLogger(__name__)

#: The longest an idle worker sleeps without a token (deferred retries become due meanwhile).
IDLE_WAIT_S = 0.5
MAX_TOKENS = 64
#: How far back a job may be placed in its queue (`at`); ARQ's job key expiry needs a bound.
MAX_BACKDATE_S = 3600.0


#: ARQ's `enqueue_job` (skip a job id that exists or has a result; store the job; queue it) plus
#: the wake-up token, in one atomic round trip instead of WATCH, EXISTS, MULTI and a push.
#: KEYS: job, result, queue, wake list. ARGV: expiry ms, job, score, job id, last token index.
ENQUEUE_LUA = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then
  redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
end
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, ARGV[5])
return 1
"""


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
    async with redis.pipeline(transaction=False) as pipe:
        queue_job(pipe, redis, function, payload, job_id, queue, at)
        await pipe.execute()


def queue_job(
    pipe: Pipeline,
    redis: ArqRedis,
    function: str,
    payload: dict[str, Any],
    job_id: str,
    queue: str,
    at: float | None = None,
) -> None:
    """Add `enqueue`'s one command to a pipeline (a transaction commits it with the rest)."""
    now_ms = timestamp_ms()
    score = now_ms
    if at is not None:
        score = as_int(max(at, time.time() - MAX_BACKDATE_S) * 1000)
    # As ARQ computes it: a job placed in the past expires that much sooner.
    expires_ms = score - now_ms + redis.expires_extra_ms
    job = serialize_job(function, (payload,), {}, None, now_ms, serializer=redis.job_serializer)
    keys = (job_key_prefix + job_id, result_key_prefix + job_id, queue, wake_key(queue))
    args = (str(expires_ms), job, str(score), job_id, str(MAX_TOKENS - 1))
    pipe.eval(ENQUEUE_LUA, 4, *keys, *args)  # type: ignore[arg-type]  # the job is bytes


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
