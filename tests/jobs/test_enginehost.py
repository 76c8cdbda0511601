"""The engine child's memory cap: a runaway allocation ends in the child, not the worker."""

from __future__ import annotations

import subprocess
import sys

from jayavatar.settings import Settings
from jobs.enginehost import cap_memory
from tests.support.stack import ROOT

CHILD = """
import sys
from jayavatar.settings import Settings
from jobs.enginehost import cap_memory
cap = cap_memory(Settings(engine_memory_mb=int(sys.argv[1])), "lipsync")
try:
    hog = bytearray(2 * cap)
except MemoryError:
    print("refused", cap // 2**20)
else:
    print("allocated", len(hog))
"""


def test_a_capped_child_cannot_allocate_past_its_cap() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, "1024"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "refused 1024", out.stderr


def test_gpu_engines_and_zero_are_not_capped() -> None:
    assert cap_memory(Settings(engine_memory_mb=0), "voice") == 0
    gpu = Settings(lipsync_engine="wav2lip", device="auto", engine_memory_mb=1024)
    assert cap_memory(gpu, "lipsync") == 0
