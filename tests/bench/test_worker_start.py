"""The worker-start bench's smoke mode: a real lip-sync worker launched alone, on a CPU.

Slow (each launch imports torch); it checks that the script runs and prints its table, never
how fast a start was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import ROOT

pytestmark = pytest.mark.slow


def test_smoke_run_prints_a_row_per_launch_and_the_imports(tmp_path: Path) -> None:
    """Two launches give two rows whose steps are in order; the import lines name modules."""
    if not (ROOT / ".venvs" / "lipsync" / "bin" / "python").exists():
        pytest.skip("the lipsync environment is missing")
    proc = subprocess.run(
        [
            sys.executable,
            "bench/worker_start.py",
            "lipsync",
            str(tmp_path / "w"),
            "--smoke",
            "--launches",
            "2",
            "--imports",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("engine imports: torch ") for line in lines)
    rows = [line.split("|")[1:5] for line in lines if line.startswith("| ") and "---" not in line]
    assert [cells[0].strip() for cells in rows[1:]] == ["1", "2"]
    for _, arq, engine, ready in rows[1:]:
        assert 0 < float(arq) <= float(engine) <= float(ready)
