"""A child process's tie to the process that started it: act once that parent is gone.

Engine children and the processes of a several-process API must not outlive a worker or
supervisor that was killed (SIGKILL runs no clean-up). Each watches its parent's pid in a
daemon thread; a poll, not prctl's parent-death signal, because that signal follows the
parent *thread* that started the child and would fire when a pool thread retires.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

#: How often the parent is looked for, seconds.
POLL_S = 0.5


def watch_parent(parent: int, on_gone: Callable[[], None]) -> bool:
    """Call `on_gone` once this process's parent is no longer `parent`; False if it is already."""
    if os.getppid() != parent:
        return False

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        on_gone()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return True
