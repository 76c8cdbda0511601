"""How fast and how small hostile uploads are refused: `python bench/hostile.py` (core env).

Starts Redis and both workers on the offline engines, enrolls each hostile file through the job
client (the path every front takes), and prints who refused it, the worker time it cost and the
reason; then the peak memory of each worker and engine process. A real face clip is enrolled
too, for scale.
"""

from __future__ import annotations

import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def files(folder: Path) -> list[tuple[str, str, Path]]:
    """(case, kind, file) for every hostile file and the real clip."""
    from tests.abuse.hostile import cached, png_bomb, tricks
    from tests.support.assets import face_clip

    out = [("real 2 s face clip", "avatar", face_clip())]
    bomb = folder / "huge.png"
    bomb.write_bytes(png_bomb())
    out += [("16000x16000 PNG bomb", "avatar", bomb)]
    out += [("119 s of 4K black", "avatar", cached("black4k", ".mp4"))]
    for name, sent, data in tricks(folder / "secret.mp4", "../../avatars/x/y/clip.mp4"):
        path = folder / f"{len(out)}-{sent}"
        path.write_bytes(data)
        out.append((name, "voice" if "ID3" in name else "avatar", path))
    return out


async def enroll(client: Any, kind: str, path: Path, n: int) -> tuple[str, str, str]:
    """Enroll one file; return (refused by, worker seconds, reason)."""
    from jayavatar.errors import UserError

    submit = client.submit_voice_enroll if kind == "voice" else client.submit_avatar_enroll
    start = time.perf_counter()
    try:
        req = await submit("bench", f"b{n}", path, replace=True)
    except UserError as exc:
        return "gate", f"0 ({(time.perf_counter() - start) * 1000:.0f} ms at the front)", str(exc)
    done = await client.wait(req.id, 600)
    spent = f"{done.finished_at - done.started_at:.2f}"
    return ("worker" if done.state == "failed" else "accepted"), spent, done.error or "enrolled"


def peaks(stack: Any) -> list[tuple[str, int]]:
    """Peak resident memory (MB) of each worker and its children."""
    out = []
    for kind, worker in stack.workers.items():
        pids = [worker.proc.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                    cmdline = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                if parent == worker.proc.pid and b"spawn_main" in cmdline:
                    pids.append(int(entry.name))
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            hwm = next(int(x.split()[1]) for x in status if x.startswith("VmHWM"))
            out.append((f"{kind} {'worker' if pid == worker.proc.pid else 'engine'} {pid}", hwm))
    return [(name, kb // 1024) for name, kb in out]


def main() -> None:
    """Run the cases and print the tables."""
    from jobs.client import JobClient
    from tests.support.stack import RedisProcess, Stack

    folder = Path(tempfile.mkdtemp(prefix="jayavatar-hostile-"))
    server = RedisProcess(folder / "redis")
    server.start()
    stack = Stack(folder, server, extra_env={"JAYAVATAR_MAX_CONCURRENT": "100"})
    try:
        stack.start_worker("voice")
        stack.start_worker("lipsync")

        async def run() -> list[tuple[str, str, str, str]]:
            client = await JobClient.connect(stack.settings())  # type: ignore[arg-type]
            rows = []
            for n, (case, kind, path) in enumerate(files(folder)):
                who, spent, why = await enroll(client, kind, path, n)
                rows.append((case, f"{path.stat().st_size:,}", who, spent, why[:70]))
            await client.close()
            return rows  # type: ignore[return-value]

        rows = asyncio.run(run())
        print(f"host: {platform.node()} ({platform.processor() or platform.machine()})")
        print("| case | bytes | refused by | worker s | reason |\n|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        print("\n| process | peak MB |\n|---|---|")
        for name, mb in peaks(stack):
            print(f"| {name} | {mb} |")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
