"""What every stage of a worker works with, built once per worker process."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis

from jayavatar.settings import Settings
from jobs.accounts import Accounts
from jobs.enginehost import EngineHost
from jobs.records import RecordStore
from storage.base import Storage


@dataclass
class StageContext:
    """What every stage needs, built once per worker."""

    settings: Settings
    redis: ArqRedis
    store: RecordStore
    storage: Storage
    accounts: Accounts
    host: EngineHost
    timeout_s: int
    #: Names this worker in the requests it claims (`jobs.liveness`).
    worker_id: str = ""
