"""How many CPU cores this process may use: its affinity, not the host's count."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    # A process pinned to a share of a host (taskset, a container's cpuset) sizes its threads
    # and processes to that share, as FFmpeg and x264 already do.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
