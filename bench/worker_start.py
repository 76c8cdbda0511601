"""Worker start → ready, one worker kind alone: where a cold start goes, launch by launch.

Starts Redis, then launches `jayavatar worker KIND` alone `--launches` times (each killed once
ready) and prints a table: launch → ready, and the steps read from the worker's log (ARQ's start
line, the engine child's "ready"). With `--imports` it also prints the slowest top-level imports
of the worker's own process and of its engine, from `python -X importtime`.

    PYTHONPATH=. python3 bench/worker_start.py voice|lipsync WORK [--launches 4] [--imports]

WORK holds the models bench/e2e_stack.py builds (built here when missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

from bench.e2e_gpu import GPU, SMOKE
from bench.e2e_stack import (
    Profile,
    Worker,
    build_inputs,
    child_env,
    restart,
    worker_env,
    worker_pythons,
)
from jayavatar import catalog
from tests.support.stack import RedisProcess

STAMP = re.compile(rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (.*)$", re.M)
STEPS = {"arq start": rb"Starting worker", "engine ready": rb"engine ready in process"}


def stamps(log: bytes) -> dict[str, float]:
    """Seconds since the epoch of the first log line matching each step."""
    found: dict[str, float] = {}
    for when, line in STAMP.findall(log):
        for step, pattern in STEPS.items():
            if step not in found and re.search(pattern, line):
                found[step] = datetime.strptime(when.decode(), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return found


def launch_once(worker: Worker) -> dict[str, float]:
    """Launch the worker, wait until ready, kill it; return its steps in seconds from launch."""
    start_wall = time.time()
    ready = restart([worker])[worker.name]
    worker.kill()
    log = worker.log_path.read_bytes()[worker.log_from :]
    steps = {k: round(v - start_wall, 2) for k, v in stamps(log).items()}
    return {**steps, "ready": round(ready, 2)}


def engine_imports(profile: Profile, kind: catalog.Kind) -> str:
    """What the kind's engine fork server imports before any child builds, as Python code."""
    name = profile.voice_engine if kind == "voice" else profile.lipsync_engine
    return "; ".join(f"import {m}" for m in ("torch", *catalog.engine(name, kind).modules))


def slowest_imports(python: str, code: str, top: int = 8) -> list[tuple[float, str]]:
    """The `top` slowest top-level imports of `code` (cumulative seconds, module)."""
    out = subprocess.run(
        [python, "-X", "importtime", "-c", code],
        env=child_env({}),
        capture_output=True,
        check=True,
    ).stderr.decode()
    rows = []
    for line in out.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and not m[2]:
            rows.append((int(m[1]) / 1e6, m[3]))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    """Launch one worker kind alone several times and print where its start goes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("voice", "lipsync"))
    parser.add_argument("work", type=Path)
    parser.add_argument("--launches", type=int, default=4)
    parser.add_argument("--imports", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU")
    args = parser.parse_args()
    base = SMOKE if args.smoke else GPU
    pythons = worker_pythons(args.smoke)
    profile = dataclasses.replace(base, pythons=pythons)
    build_inputs(profile, args.work)
    python = pythons[args.kind]
    if args.imports:
        engine = engine_imports(profile, args.kind)
        for name, code in (("worker", "import cli.main"), ("engine", engine)):
            slow = slowest_imports(python, code)
            print(f"{name} imports: " + ", ".join(f"{m} {s:.2f} s" for s, m in slow), flush=True)
    redis = RedisProcess(args.work / "redis-start")
    redis.start()
    try:
        env = worker_env(profile, redis.url, args.work / "data-start", args.work / "models")
        log_path = args.work / f"start-{args.kind}.log"
        worker = Worker(args.kind, python, env, log_path, args.kind)
        print(f"| {args.kind} launch | ARQ start s | engine ready s | ready s |")
        print("| ---: | ---: | ---: | ---: |")
        for n in range(args.launches):
            row = launch_once(worker)
            cells = [row.get("arq start", float("nan")), row.get("engine ready", float("nan"))]
            print(f"| {n + 1} | {cells[0]:.2f} | {cells[1]:.2f} | {row['ready']:.2f} |", flush=True)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
