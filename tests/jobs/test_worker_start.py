"""A worker whose model file is missing or broken stops at start with one line naming the fix."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import RedisProcess, Stack, env_python

# Random generator weights with one NaN, saved the way the official training script does.
WRITE_BROKEN = """
import sys, torch
from engines.lipsync.wav2lip_model import Wav2Lip
torch.manual_seed(0)
state = {"module." + k: v for k, v in Wav2Lip().state_dict().items()}
state["module.output_block.1.weight"][0, 0, 0, 0] = float("nan")
torch.save({"state_dict": state, "global_step": 0}, sys.argv[1])
"""


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One redis-server for the module's workers."""
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def start_and_wait(folder: Path, server: RedisProcess, models_dir: Path) -> tuple[int, str]:
    """Start a wav2lip lip-sync worker; return its exit code and its log once it stops."""
    env = {"JAYAVATAR_LIPSYNC_ENGINE": "wav2lip", "JAYAVATAR_MODELS_DIR": str(models_dir),
           "JAYAVATAR_DEVICE": "cpu"}  # fmt: skip
    stack = Stack(folder, server, extra_env=env)
    worker = stack.start_worker("lipsync", wait=False)
    assert worker.proc is not None
    try:
        code = worker.proc.wait(180)
    finally:
        worker.kill()
    return code, worker.log()


def test_missing_weights_stop_the_worker_at_start(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    code, log = start_and_wait(tmp_path, redis_server, tmp_path / "models")
    last = log.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in log
    assert last.startswith("error: Wav2Lip weights not found at ")
    assert last.endswith("then `jayavatar models import wav2lip_gan FILE`")


def test_broken_weights_stop_the_worker_at_start(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    weights = tmp_path / "models" / "wav2lip" / "wav2lip_gan.pth"
    weights.parent.mkdir(parents=True)
    subprocess.run([str(env_python("lipsync")), "-c", WRITE_BROKEN, str(weights)], check=True)
    code, log = start_and_wait(tmp_path, redis_server, tmp_path / "models")
    last = log.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in log
    assert last.startswith(f"error: {weights}: not a usable Wav2Lip generator checkpoint: ")
    assert "1 tensors hold NaN or infinite values (e.g. output_block.1.weight)" in last
    assert last.endswith("; fix: download wav2lip_gan.pth from the Wav2Lip README, then "
                         "`jayavatar models import wav2lip_gan FILE`")  # fmt: skip
