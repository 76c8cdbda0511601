"""Every Redis key of the project, in one place.

Our own keys live under the deployment's prefix (`Settings.key_prefix`); ARQ's keys are built
from ARQ's own constants, so a change there shows up here and nowhere else. The queue a stage
runs on is chosen here too. Keys that end in a request id are found by `JobClient.purge`.
"""

from __future__ import annotations

from arq.constants import (
    health_check_key_suffix,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

from jayavatar.settings import Settings

#: The stages that run on the lip-sync queue; every other stage runs on the voice queue.
LIPSYNC_STAGES = frozenset({"lipsync", "enroll_avatar"})


# Queues ----------------------------------------------------------------------------------------


def queue_of(settings: Settings, stage: str) -> str:
    """Return the ARQ queue a stage runs on."""
    return settings.lipsync_queue if stage in LIPSYNC_STAGES else settings.voice_queue


def worker_queue(settings: Settings, lipsync: bool) -> str:
    """Return the queue a worker takes jobs from: lip-sync workers, or voice workers."""
    return queue_of(settings, "lipsync" if lipsync else "voice")


def queues(settings: Settings) -> tuple[str, str]:
    """Return both ARQ queues: voice, then lip-sync."""
    return settings.voice_queue, settings.lipsync_queue


def wake_key(queue: str) -> str:
    """Return the key of the wake-up list beside an ARQ queue."""
    return f"{queue}:wake"


# ARQ's own keys --------------------------------------------------------------------------------


def arq_job(job_id: str) -> str:
    """Return the key holding a queued ARQ job's definition."""
    return job_key_prefix + job_id


def arq_in_progress(job_id: str) -> str:
    """Return the key ARQ holds while a worker runs the job."""
    return in_progress_key_prefix + job_id


def arq_retry(job_id: str) -> str:
    """Return the key counting an ARQ job's tries."""
    return retry_key_prefix + job_id


def arq_result(job_id: str) -> str:
    """Return the key holding an ARQ job's result."""
    return result_key_prefix + job_id


def arq_health_check(queue: str) -> str:
    """Return the key an ARQ worker of `queue` writes its health line to."""
    return queue + health_check_key_suffix


# Requests --------------------------------------------------------------------------------------


def request(settings: Settings, rid: str) -> str:
    """Return the key of a request record."""
    return settings.prefixed("req", rid)


def active(settings: Settings) -> str:
    """Return the key of the set of requests not yet final."""
    return settings.prefixed("active")


def all_requests(settings: Settings) -> str:
    """Return the key of all requests, scored by creation time."""
    return settings.prefixed("reqs")


def user_requests(settings: Settings, user: str) -> str:
    """Return the key of a user's requests, scored by creation time."""
    return settings.prefixed("user", user, "reqs")


def user_active(settings: Settings, user: str) -> str:
    """Return the key of a user's requests not yet final."""
    return settings.prefixed("user", user, "active")


def completions(settings: Settings) -> str:
    """Return the key of the completion stream."""
    return settings.prefixed("completions")


def delivered(settings: Settings, rid: str) -> str:
    """Return the key marking how a request's result was delivered."""
    return settings.prefixed("delivered", rid)


def quality_pending(settings: Settings) -> str:
    """Return the key of the renders waiting for a quality report."""
    return settings.prefixed("quality", "pending")


def quality_claim(settings: Settings, rid: str) -> str:
    """Return the key naming the worker that measures a render."""
    return settings.prefixed("quality", "claim", rid)


# Workers ---------------------------------------------------------------------------------------


def worker_alive(settings: Settings, worker_id: str) -> str:
    """Return the key that exists while a worker is alive."""
    return settings.prefixed("worker", worker_id, "alive")


def worker_presence(settings: Settings, host_pid: str) -> str:
    """Return the key of a worker process's presence (`host:pid`; `*` for a scan)."""
    return settings.prefixed("workers", host_pid)


# Accounts --------------------------------------------------------------------------------------


def account(settings: Settings, *parts: str) -> str:
    """Return the key of an account record: `assets`, `shares`, `profile`, `quota`, `usage`...

    The parts name the record as `jobs.accounts` lays them out (e.g. `("quota", user)`).
    """
    return settings.prefixed(*parts)


def api_keys(settings: Settings) -> str:
    """Return the key of the set of API key ids."""
    return settings.prefixed("apikeys")


def api_key(settings: Settings, key_id: str) -> str:
    """Return the key of one API key's record."""
    return settings.prefixed("apikey", key_id)


# The Discord bot's memory ----------------------------------------------------------------------


def bot(settings: Settings, *parts: str) -> str:
    """Return a key of the bot's memory: `("msg", rid)`, `("intent", rid)`, `("alive",)`..."""
    return settings.prefixed("discord", *parts)


def everything(settings: Settings) -> str:
    """Return the pattern matching every key under the deployment's prefix."""
    return settings.prefixed("*")
