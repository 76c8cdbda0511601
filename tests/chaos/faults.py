"""A seeded random schedule of faults, and the thread that inflicts it on a cluster.

Faults: SIGKILL (crash), SIGTERM (graceful stop) and SIGSTOP/SIGCONT (a frozen process, longer
than a job timeout for workers). Killed or stopped processes come back after a random delay.
Each fault's recovery time runs from the signal until the process serves again.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass, field

from tests.chaos.cluster import Cluster

TARGETS = ("redis", "voice", "lipsync", "bot")
ACTIONS = ("kill", "term", "stop")
RECOVER_LIMIT_S = 240.0
SIGNALS = {"kill": signal.SIGKILL, "term": signal.SIGTERM}


@dataclass(frozen=True)
class Fault:
    """One planned fault: at `at_s` after the start, do `action` to `target` for `hold_s`."""

    at_s: float
    target: str
    action: str
    hold_s: float


@dataclass
class Outcome:
    """What happened to one fault."""

    fault: Fault
    applied: bool = False
    recover_s: float | None = None


def plan(rng: random.Random, count: int, span_s: float, job_timeout_s: float) -> list[Fault]:
    """Return `count` faults spread over `span_s`, covering every target and action first.

    The first faults SIGKILL every process once, SIGTERM a worker and freeze a worker for longer
    than a job timeout; the rest are drawn at random.
    """
    covering = [(t, "kill") for t in TARGETS]
    covering += [
        (rng.choice(("voice", "lipsync")), "term"),
        (rng.choice(("voice", "lipsync")), "stop"),
    ]
    picks = covering[:count]
    weights = {"kill": 5, "term": 2, "stop": 2}
    while len(picks) < count:
        action = rng.choices(ACTIONS, [weights[a] for a in ACTIONS])[0]
        picks.append((rng.choice(TARGETS), action))
    rng.shuffle(picks)
    step = span_s / max(count, 1)
    faults = []
    for i, (target, action) in enumerate(picks):
        at = i * step + rng.uniform(0.2, 0.8) * step
        faults.append(
            Fault(round(at, 2), target, action, _hold(rng, target, action, job_timeout_s))
        )
    return faults


def _hold(rng: random.Random, target: str, action: str, job_timeout_s: float) -> float:
    if action != "stop":
        return round(rng.uniform(0.5, 5.0), 2)  # down time before the restart
    if target in ("voice", "lipsync"):
        return round(job_timeout_s + rng.uniform(2.0, 6.0), 2)  # frozen past the job timeout
    return round(rng.uniform(1.0, 5.0), 2)


@dataclass
class Chaos:
    """Inflicts a schedule on a cluster in a background thread."""

    cluster: Cluster
    faults: list[Fault]
    outcomes: list[Outcome] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _busy: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Start the schedule now."""
        thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run(self) -> None:
        began = time.monotonic()
        for fault in self.faults:
            delay = began + fault.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            outcome = Outcome(fault)
            self.outcomes.append(outcome)
            thread = threading.Thread(target=self._inflict, args=(outcome,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _inflict(self, outcome: Outcome) -> None:
        fault = outcome.fault
        member = self.cluster.members[fault.target]
        with self._lock:
            # One fault at a time per process, and only on a running one.
            if fault.target in self._busy or not member.alive() or member.paused:
                return
            self._busy.add(fault.target)
        try:
            snapshot = member.snapshot()
            began = time.monotonic()
            outcome.applied = True
            if fault.action == "stop":
                self.cluster.pause(fault.target)
                time.sleep(fault.hold_s)
                self.cluster.resume(fault.target)
            else:
                victim = member.proc()
                self.cluster.hold_down(fault.target, SIGNALS[fault.action], fault.hold_s)
                if victim is not None:
                    victim.wait(60)  # recovery means a new process, not the dying one
            ready = self.cluster.wait_ready(fault.target, snapshot, RECOVER_LIMIT_S)
            outcome.recover_s = None if ready is None else round(ready - began, 2)
        finally:
            with self._lock:
                self._busy.discard(fault.target)

    def join(self) -> None:
        """Wait until every fault was inflicted and recovered from (or gave up)."""
        while any(t.is_alive() for t in list(self._threads)):
            time.sleep(0.2)
