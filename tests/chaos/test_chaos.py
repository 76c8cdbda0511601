"""Exactly-once delivery while Redis, both workers and the bot are killed, stopped and restarted.

The default suite runs 10 requests through a fault schedule that SIGKILLs every process once,
SIGTERMs a worker and freezes one past a job timeout; `make chaos` runs 100 requests with 60 random
faults. Set JAYAVATAR_CHAOS_SEED to replay another schedule.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.chaos.run import RunConfig, run_chaos

SEED = int(os.environ.get("JAYAVATAR_CHAOS_SEED", "6"))


def check(
    config: RunConfig, tmp_path_factory: pytest.TempPathFactory, table: Callable[[str], None]
) -> None:
    """Run chaos, record its table, and fail on any broken promise."""
    report = run_chaos(config, tmp_path_factory.mktemp("chaos"))
    table(report.table())
    print(report.table())
    problems = report.problems()
    assert not problems, "\n".join(problems)
    assert len(report.records) >= config.requests


@pytest.mark.timeout(600)
def test_every_request_is_posted_once_through_faults(
    tmp_path_factory: pytest.TempPathFactory, chaos_table: Callable[[str], None]
) -> None:
    config = RunConfig(requests=10, faults=6, seed=SEED, submit_span_s=40.0)
    check(config, tmp_path_factory, chaos_table)


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_hundred_requests_through_sixty_random_faults(
    tmp_path_factory: pytest.TempPathFactory, chaos_table: Callable[[str], None]
) -> None:
    config = RunConfig(requests=100, faults=60, seed=SEED, submit_span_s=400.0)
    check(config, tmp_path_factory, chaos_table)
