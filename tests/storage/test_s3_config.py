"""A bad S3 configuration stops every process at start-up with one clear line.

Wrong endpoint, refused credentials, a missing bucket and a skewed clock each make the workers,
the API and the bot exit with code 1 and a single `error:` line on stderr that names the
setting to fix, before they take any work.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.s3server import S3Server, SkewedS3
from tests.support.stack import ROOT, RedisProcess, env_python, free_port

PROCESSES = {
    "lipsync worker": ("lipsync", ["worker", "lipsync"]),
    "voice worker": ("voice", ["worker", "voice"]),
    "api": ("core", ["api", "--port", "0"]),
    "bot": ("core", ["bot"]),
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Redis, S3 servers that do and do not check signatures, an endpoint with a skewed clock."""
    folder = tmp_path_factory.mktemp("badconf")
    redis = RedisProcess(folder / "redis")
    redis.start()
    # After one unsigned request (making the bucket) moto checks every signature.
    strict = S3Server(folder / "s3", extra_env={"INITIAL_NO_AUTH_ACTION_COUNT": "1"})
    strict.start()
    strict.make_bucket("present")
    lenient = S3Server(folder / "s3-lenient")
    lenient.start()
    lenient.make_bucket("present")
    skewed = SkewedS3()
    try:
        yield {"redis": redis, "strict": strict, "s3": lenient, "skewed": skewed}
    finally:
        skewed.stop()
        lenient.stop()
        strict.stop()
        redis.stop()


def bad_env(servers: dict[str, object], case: str) -> dict[str, str]:
    """Return the environment of one bad configuration."""
    s3: S3Server = servers["strict" if case == "bad credentials" else "s3"]  # type: ignore[assignment]
    env = s3.env("present")
    if case == "wrong endpoint":
        env["JAYAVATAR_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    elif case == "missing bucket":
        env["JAYAVATAR_S3_BUCKET"] = "absent"
    elif case == "clock skew":
        env["JAYAVATAR_S3_ENDPOINT_URL"] = servers["skewed"].url  # type: ignore[attr-defined]
    # "bad credentials": moto knows no user with the test keys once it checks signatures.
    return env


EXPECT = {
    "wrong endpoint": "cannot reach the object store",
    "bad credentials": "refused the credentials",
    "missing bucket": "bucket 'absent' does not exist",
    "clock skew": "clock",
}
CASES = [(case, "lipsync worker") for case in EXPECT] + [
    (case, proc) for case in ("missing bucket", "bad credentials") for proc in PROCESSES
]


@pytest.mark.parametrize(("case", "process"), sorted(set(CASES)))
def test_bad_configuration_is_one_line_at_start_up(
    servers: dict[str, object], case: str, process: str, tmp_path: Path
) -> None:
    env_name, args = PROCESSES[process]
    redis: RedisProcess = servers["redis"]  # type: ignore[assignment]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "JAYAVATAR_REDIS_URL": redis.url,
        "JAYAVATAR_DATA_DIR": str(tmp_path / "data"),
        "JAYAVATAR_DISCORD_TOKEN": "not-used-before-the-check",
        **bad_env(servers, case),
    }
    done = subprocess.run(
        [str(env_python(env_name)), "-m", "cli.main", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr  # a setting that cannot work
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert EXPECT[case] in lines[0]
    assert "secret" not in lines[0].lower() or "SECRET_ACCESS_KEY" in lines[0]
