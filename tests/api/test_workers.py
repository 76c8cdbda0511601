"""Several API processes: /metrics adds up every process's counters and counts a completion once.

Starts the real `jayavatar api --workers 2` on the private Redis, submits renders until both
processes have answered some (each process's counters are a file of its own in the API start's
folder), cancels them, and reads the totals from /metrics over fresh connections, so whichever
process answers must report the sum.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.keys import ApiKeys
from jayavatar.settings import Settings
from jobs.client import JobClient
from jobs.completions import stream_key
from tests.api.live import headers, make_settings
from tests.support.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
#: A bound on waiting, not a timing assertion: the processes and the completions come well before.
PATIENCE_S = 60


@pytest.fixture
def roomy(redis_url: str, tmp_path: Path) -> Settings:
    """Settings whose quotas let one user queue many renders."""
    return make_settings(redis_url, tmp_path / "data", max_concurrent=500, daily_quota=500)


def api_env(settings: Settings, tmp: Path) -> dict[str, str]:
    """The environment of an API started on these settings, with its temporary files in `tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAYAVATAR_")}
    for name in ("redis_url", "key_prefix", "voice_queue", "lipsync_queue", "data_dir"):
        env[f"JAYAVATAR_{name.upper()}"] = str(getattr(settings, name))
    env["JAYAVATAR_MAX_CONCURRENT"] = str(settings.max_concurrent)
    env["JAYAVATAR_DAILY_QUOTA"] = str(settings.daily_quota)
    env.update(TMPDIR=str(tmp), PYTHONPATH=str(ROOT))
    return env


@contextmanager
def two_processes(
    roomy: Settings, tmp_path: Path
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """`jayavatar api --workers 2`: yield its base URL, temporary folder and process; stop it."""
    tmp = tmp_path / "run"
    tmp.mkdir()
    port = free_port()
    cmd = [sys.executable, "-m", "cli.main", "api", "--workers", "2", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=api_env(roomy, tmp), cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PATIENCE_S
        while not _answers(base):
            assert proc.poll() is None and time.monotonic() < deadline, "the API did not start"
            time.sleep(0.2)
        yield base, tmp, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def make_user(client: JobClient, keys: ApiKeys) -> str:
    """A user with a voice and an avatar named "me"; return the user's key."""
    for kind in ("voice", "avatar"):
        client.storage.put_bytes(f"{kind}s/carol/me/meta.json", b"{}")
        await client.accounts.register(kind, "carol", "me", {})
    return (await keys.create("carol"))[0]


def counter_pids(tmp: Path) -> set[str]:
    """The processes that have written counters in the API start's metrics folder."""
    return {p.stem.rpartition("_")[2] for p in tmp.glob("jayavatar-metrics-*/counter_*.db")}


def sample(base: str, name: str, **labels: str) -> float:
    """Read one sample from /metrics over a fresh connection (0 if absent)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


async def test_two_processes_report_summed_counters(roomy: Settings, tmp_path: Path) -> None:
    client = await JobClient.connect(roomy)
    try:
        with two_processes(roomy, tmp_path) as (base, tmp, _proc):
            token = await make_user(client, ApiKeys(client.redis, roomy, client.accounts))
            ids = submit_until_both_answered(base, tmp, token)
            accepted = "jayavatar_requests_accepted_total"
            for _ in range(4):  # whichever process answers has every process's count
                assert sample(base, accepted, kind="render") == len(ids)
            for rid in ids:
                cancel = httpx.post(f"{base}/v1/requests/{rid}/cancel", headers=headers(token))
                assert cancel.status_code == 200
            finished = "jayavatar_requests_finished_total"
            deadline = time.monotonic() + PATIENCE_S
            while sample(base, finished, kind="render", state="cancelled") < len(ids):
                assert time.monotonic() < deadline, "the completions were not counted"
                time.sleep(0.2)
            for _ in range(4):  # each completion once, not once per process
                assert sample(base, finished, kind="render", state="cancelled") == len(ids)
                assert sample(base, "jayavatar_failures_total", reason="cancelled") == len(ids)
            # The two processes read the completion stream in one group.
            assert len(await client.redis.xinfo_groups(stream_key(roomy))) == 1
    finally:
        await client.close()


def submit_until_both_answered(base: str, tmp: Path, token: str) -> list[str]:
    """Submit renders (a fresh connection each) until both processes have counted some."""
    ids: list[str] = []
    deadline = time.monotonic() + PATIENCE_S
    while len(counter_pids(tmp)) < 2 or len(ids) < 10:
        assert time.monotonic() < deadline, "one process never answered a submission"
        r = httpx.post(f"{base}/v1/renders", json={"text": "Hi."}, headers=headers(token))
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids


async def test_a_stopped_api_leaves_no_metrics_folder_or_group(
    roomy: Settings, tmp_path: Path
) -> None:
    with two_processes(roomy, tmp_path) as (base, tmp, _proc):
        assert sample(base, "jayavatar_requests_accepted_total") == 0
        assert list(tmp.glob("jayavatar-metrics-*"))
    # Stopped with SIGINT, as Ctrl-C would.
    assert not list(tmp.glob("jayavatar-metrics-*"))
    client = await JobClient.connect(roomy)
    try:
        assert await client.redis.xinfo_groups(stream_key(roomy)) == []
    finally:
        await client.close()


def test_a_killed_api_takes_its_processes_with_it(roomy: Settings, tmp_path: Path) -> None:
    with two_processes(roomy, tmp_path) as (_base, tmp, proc):
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        served = [int(c) for c in children if b"spawn_main" in _cmdline(int(c))]
        assert len(served) == 2
        proc.kill()
        deadline = time.monotonic() + PATIENCE_S
        while any(_running(pid) for pid in served):
            assert time.monotonic() < deadline, "the API's processes outlived it"
            time.sleep(0.2)
    assert list(tmp.glob("jayavatar-metrics-*"))  # a killed API cannot remove its folder


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _running(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
