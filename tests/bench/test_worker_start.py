"""The worker-start bench's smoke mode: a real lip-sync worker launched alone, on a CPU.

Slow (each launch imports torch); it checks that the script runs and prints its table, never
how fast a start was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bench import run_smoke

pytestmark = pytest.mark.slow


def test_smoke_run_prints_a_row_per_launch_and_the_imports(tmp_path: Path) -> None:
    """Two launches give two rows whose steps are in order; the import lines name modules."""
    args = ("lipsync", str(tmp_path / "w"), "--smoke", "--launches", "2", "--imports")
    lines = run_smoke("worker_start.py", *args, envs=("lipsync",), timeout=900).splitlines()
    assert any(line.startswith("engine imports: torch ") for line in lines)
    rows = [line.split("|")[1:5] for line in lines if line.startswith("| ") and "---" not in line]
    assert [cells[0].strip() for cells in rows[1:]] == ["1", "2"]
    for _, arq, engine, ready in rows[1:]:
        assert 0 < float(arq) <= float(engine) <= float(ready)
