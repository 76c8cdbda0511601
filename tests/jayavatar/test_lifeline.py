"""A child acts when the process that started it is killed, and says so if it is gone already."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jayavatar.lifeline import watch_parent
from tests.support.stack import ROOT

# A parent that starts a watching child, prints the child's pid, then waits to be killed.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
print(child.pid, flush=True)
time.sleep(600)
"""
CHILD = """
import os, sys, time
from pathlib import Path
from jayavatar.lifeline import watch_parent
marker = Path(sys.argv[1])
watch_parent(os.getppid(), lambda: (marker.write_text("gone"), os._exit(0)))
time.sleep(600)
"""


def test_a_child_acts_once_its_parent_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", PARENT, CHILD, str(marker)]
    parent = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # the child is watching by now
    assert not marker.exists()
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    for _ in range(100):
        if marker.exists():
            break
        time.sleep(0.1)
    assert marker.read_text() == "gone"
    for _ in range(50):  # the child exits after acting
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the child outlived its parent")


def test_a_parent_already_gone_is_reported_not_watched() -> None:
    called: list[bool] = []
    assert watch_parent(os.getppid() + 1_000_000, lambda: called.append(True)) is False
    assert watch_parent(os.getppid(), lambda: called.append(True)) is True
    assert called == []
