"""Settings: how many API processes a start runs by default."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jayavatar.settings import Settings

COUNT = "from jayavatar.settings import Settings; print(Settings(_env_file=None).api_processes())"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity")
def test_default_api_processes_follow_the_cores_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JAYAVATAR_API_WORKERS", raising=False)
    # A process pinned to one core (taskset, a container's cpuset) runs one.
    one_core = subprocess.run(
        [sys.executable, "-c", COUNT],
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "JAYAVATAR_API_WORKERS": "0"},
    )
    assert one_core.stdout.strip() == "1"
    cores = len(os.sched_getaffinity(0))
    assert Settings(_env_file=None).api_processes() == min(cores, 4)


def test_a_count_given_wins_over_the_setting() -> None:
    settings = Settings(_env_file=None, api_workers=3)
    assert settings.api_processes() == 3
    assert settings.api_processes(workers=1) == 1
