"""Running a bench script's smoke mode from a test, as its docstring runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.stack import ROOT


def run_smoke(script: str, *args: str, envs: tuple[str, ...], timeout: int) -> str:
    """Run `bench/SCRIPT ARGS`; skip without the `envs`, fail on a non-zero exit; return stdout."""
    for env in envs:
        if not (ROOT / ".venvs" / env / "bin" / "python").exists():
            pytest.skip(f"the {env} environment is missing")
    proc = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT,
        # The repository on the path (a script's own folder is not).
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout
