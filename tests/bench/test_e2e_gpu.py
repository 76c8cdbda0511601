"""The end-to-end bench's smoke mode: the real chain (Redis, XTTS and Wav2Lip workers) on a CPU.

It takes minutes on a small machine (two worker processes loading torch, CPU renders), so it
is slow; it checks that the script runs and writes its report, never how fast anything was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bench import run_smoke

pytestmark = pytest.mark.slow


def test_smoke_run_writes_every_table(tmp_path: Path) -> None:
    """A smoke run (lip-sync worker pinned to a core) ends cleanly and writes every table."""
    out = tmp_path / "e2e.md"
    args = ("--smoke", "--work", str(tmp_path / "w"), "--out", str(out), "--pin", "1")
    run_smoke("e2e_gpu.py", *args, envs=("xtts", "lipsync"), timeout=1200)
    report = out.read_text(encoding="utf-8")
    assert "| voice | 2 |" in report and "| lipsync | 2 |" in report  # first start + 1 restart
    assert "| warm | 3 s (" in report and "| after restart | 3 s (" in report
    loads = [line.split("|") for line in report.splitlines()[-2:]]
    assert [cells[1].strip() for cells in loads] == ["1", "2"]
    # Host CPU per video is measured (no GPU here, so its column says so).
    assert all(float(cells[10]) > 0 and cells[11].strip() == "n/a" for cells in loads)
    assert "pinned to 1 cores of its own" in report
