"""`jayavatar demo`: the whole pipeline on the offline engines, through the real queues.

It starts Redis if none answers, builds the demo assets once (a voice sample and the astronaut
portrait, both made from sources that ship in registry packages), starts one voice and one
lip-sync worker in their own environments, enrolls, renders, and prints per-stage timings.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cli.progress import Board, choose_mode, follow
from jayavatar import ids, redis_server
from jayavatar.errors import EngineError, TransientError, UserError
from jayavatar.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEMO_TEXT = "Hi! I'm JayAvatar. Type a line in Discord, and a minute later I say it, in your voice."
USER = ids.LOCAL


def env_python(kind: str) -> Path:
    """Return the Python of a worker environment built by `make envs`."""
    path = ROOT / ".venvs" / kind / "bin" / "python"
    if not path.exists():
        raise EngineError(f"the {kind} environment is missing; run `make envs`")
    return path


def demo_assets(settings: Settings, board: Board | None = None) -> tuple[Path, Path]:
    """Build (once) and return the demo voice sample and avatar photo."""
    folder = settings.data_dir / "demo-assets"
    voice, avatar = folder / "voice.wav", folder / "avatar.png"
    if board is not None and not (voice.exists() and avatar.exists()):
        board.step("building the demo voice and avatar (first run only, under a minute)")
    if not voice.exists():
        _run_in("voice", ["-m", "engines.voice.demo_voice", str(voice)])
    if not avatar.exists():
        code = (
            "import sys; from pathlib import Path; from engines.lipsync.demo_assets import "
            "make_demo_avatar; make_demo_avatar(Path(sys.argv[1]))"
        )
        _run_in("lipsync", ["-c", code, str(avatar)])
    return voice, avatar


def _run_in(kind: str, args: list[str]) -> None:
    proc = subprocess.run([str(env_python(kind)), *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EngineError(f"building a demo asset failed: {proc.stderr.strip().splitlines()[-1:]}")


@dataclass
class Workers:
    """The worker processes the demo started, with their logs."""

    settings: Settings
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, kind: str) -> None:
        """Start one worker in its environment."""
        log_dir = self.settings.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_dir / f"worker-{kind}.log", "ab")  # noqa: SIM115 - the child owns it
        cmd = [str(env_python(kind)), "-m", "cli.main", "worker", kind]
        self.procs[kind] = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,
        )

    def peak_rss_mib(self) -> dict[str, float]:
        """Return each worker's peak RSS in MiB, its engine child included."""
        return {kind: _tree_peak_rss(p.pid) for kind, p in self.procs.items()}

    def stop(self) -> None:
        """Stop every worker the demo started."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _tree_peak_rss(pid: int) -> float:
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(c) for c in children.read_text().split()]
    for one in pids:
        status = Path(f"/proc/{one}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


async def _enroll_and_render(
    settings: Settings, voice: Path, avatar: Path, text: str, board: Board
) -> Any:
    from jobs.client import JobClient

    client = await JobClient.connect(settings)
    try:
        for kind, path, submit in (
            ("voice", voice, client.submit_voice_enroll),
            ("avatar", avatar, client.submit_avatar_enroll),
        ):
            asset = await client.accounts.get_asset(kind, USER, "demo")  # type: ignore[arg-type]
            # Enroll unless both the record and its files exist (another checkout may share Redis).
            if asset is None or not client.storage.exists(asset.prefix):
                board.step(f"enrolling the demo {kind}")
                req = await submit(USER, "demo", path, replace=True)
                done = await follow(client, req.id, board.line(f"{kind} demo"), 600, USER)
                if done.state != "done":
                    raise UserError(f"demo {kind} enrollment {done.state}: {done.error}")
        board.step("rendering the demo script")
        started = time.monotonic()
        req = await client.submit_render(USER, text, "demo", "demo", "en")
        done = await follow(client, req.id, board.line(f"render {req.id[:8]}"), 900, USER)
        if done.state != "done":
            raise UserError(f"demo render {done.state}: {done.error}")
        return done, client.output_path(done), time.monotonic() - started
    finally:
        await client.close()


def _wait_ready(settings: Settings, workers: Workers, timeout_s: float = 180) -> None:
    import redis

    from jobs.keys import arq_health_check, queues

    conn = redis.Redis.from_url(settings.redis_url)
    keys = [arq_health_check(q) for q in queues(settings)]
    conn.delete(*keys)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for kind, proc in workers.procs.items():
            if proc.poll() is not None:
                raise EngineError(
                    f"the {kind} worker exited; see {settings.data_dir}/logs/worker-{kind}.log"
                )
        if all(conn.exists(k) for k in keys):
            return
        time.sleep(0.2)
    raise TransientError("the workers did not start in time")


def run_demo(
    settings: Settings, output: Path, text: str = DEMO_TEXT, quiet: bool = False
) -> dict[str, Any]:
    """Run the demo end to end, saying which step it is in; return timings and peak memory."""
    with Board(choose_mode(quiet)) as board:
        board.step("starting Redis")
        board.note(f"redis: {redis_server.ensure(settings)}")
        voice, avatar = demo_assets(settings, board)
        workers = Workers(settings)
        try:
            board.step("starting the voice and lip-sync workers (they load their engines)")
            t0 = time.monotonic()
            workers.start("voice")
            workers.start("lipsync")
            _wait_ready(settings, workers)
            startup = time.monotonic() - t0
            done, path, wall = asyncio.run(_enroll_and_render(settings, voice, avatar, text, board))
            rss = workers.peak_rss_mib()
        finally:
            workers.stop()
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, output)
    report = {
        "workers_start_s": startup,
        "render_wall_s": wall,
        **done.timings,
        **{f"{k}_peak_rss_mib": v for k, v in rss.items()},
        **_flat(done.result),
    }
    for key, value in sorted(report.items()):
        click.echo(
            f"{key:32s} {value:10.2f}" if isinstance(value, float) else f"{key:32s} {value}",
            err=True,
        )
    click.echo(str(output))
    return report


def _flat(stats: dict[str, Any], prefix: str = "lipsync_") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in stats.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}_"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out
