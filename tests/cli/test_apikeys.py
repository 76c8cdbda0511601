"""`jayavatar apikey create|list|revoke` and `jayavatar api`, run as real processes."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from api.keys import ApiKeys
from jayavatar.settings import Settings
from jobs.client import JobClient
from tests.support.stack import ROOT, RedisProcess, Stack, env_python, free_port


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A Redis and the stack's environment, without workers (keys need none)."""
    folder = tmp_path_factory.mktemp("apicli")
    server = RedisProcess(folder / "redis")
    server.start()
    try:
        yield Stack(folder, server)
    finally:
        server.stop()


def jayavatar(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in the core environment with the stack's settings."""
    cmd = [str(env_python("core")), "-m", "cli.main", *args]
    return subprocess.run(cmd, env=stack.env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def check(stack: Stack, token: str) -> tuple[str, bool] | None:
    """Return (user, admin) of a token as the API would see it, or None."""
    settings: Settings = stack.settings()  # type: ignore[assignment]

    async def go() -> tuple[str, bool] | None:
        client = await JobClient.connect(settings)
        try:
            key = await ApiKeys(client.redis, settings, client.accounts).check(token)
            return None if key is None else (key.user, key.admin)
        finally:
            await client.close()

    return asyncio.run(go())


def test_create_prints_only_the_token_on_stdout(bare: Stack) -> None:
    made = jayavatar(bare, "apikey", "create", "alice", "--label", "ci runner")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("jya_") and "\n" not in token
    assert made.stderr.startswith(f"created key {token[4:16]} for alice")
    assert check(bare, token) == ("alice", False)


def test_admin_keys_list_and_revoke(bare: Stack) -> None:
    token = jayavatar(bare, "apikey", "create", "root", "--admin").stdout.strip()
    key_id = token[4:16]
    assert check(bare, token) == ("root", True)
    listed = jayavatar(bare, "apikey", "list", "--user", "root")
    assert listed.returncode == 0
    fields = listed.stdout.strip().split("\t")
    assert fields[:3] == [key_id, "root", "admin"]
    assert fields[4] != "never"  # `check` above used it
    assert token not in listed.stdout

    gone = jayavatar(bare, "apikey", "revoke", key_id)
    assert (gone.returncode, gone.stdout.strip()) == (0, f"revoked {key_id} (root)")
    assert check(bare, token) is None
    again = jayavatar(bare, "apikey", "revoke", key_id)
    assert again.returncode == 3  # refused
    assert again.stderr.strip() == f"error: no API key with id '{key_id}'"


@pytest.mark.parametrize("user", ["Not Valid", "eve\n", "eve\r", "\neve", "eve\t"])
def test_bad_user_ids_fail_with_one_line(bare: Stack, user: str) -> None:
    bad = jayavatar(bare, "apikey", "create", user)
    assert bad.returncode == 3
    assert bad.stderr.strip().splitlines() == [f"error: invalid user id {user!r}"]
    assert bad.stdout == ""
    keys = redis.Redis.from_url(bare.redis.url).keys("*")
    assert not [k for k in keys if b"\n" in k or b"\r" in k or b"\0" in k]
    assert not [p for p in bare.folder.rglob("*") if "\n" in p.name or "\r" in p.name]


@pytest.mark.slow  # JobClient.connect retries a refused connection for about a minute
def test_an_unreachable_redis_is_one_line(bare: Stack) -> None:
    env = {**bare.env, "JAYAVATAR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    cmd = [str(env_python("core")), "-m", "cli.main", "apikey", "list"]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Redis" in lines[0]


@pytest.mark.parametrize("workers", ["65", "-1", "two"])
def test_a_bad_process_count_is_refused_before_serving(bare: Stack, workers: str) -> None:
    """`api --workers` out of 0..64 stops with click's usage error; no metrics folder is made."""
    before = set(Path(tempfile.gettempdir()).glob("jayavatar-metrics-*"))
    out = jayavatar(bare, "api", "--workers", workers, "--port", str(free_port()))
    assert out.returncode == 2
    assert "Invalid value for '--workers'" in out.stderr
    assert set(Path(tempfile.gettempdir()).glob("jayavatar-metrics-*")) == before


def test_the_api_command_serves(bare: Stack) -> None:
    port = free_port()
    cmd = [str(env_python("core")), "-m", "cli.main", "api", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, env=bare.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the API did not start within 60 s"
                time.sleep(0.2)
        assert r.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/me").status_code == 401
    finally:
        proc.terminate()
        proc.wait(20)
