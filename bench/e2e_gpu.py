"""End-to-end benchmark on one GPU machine: request submitted → MP4, through the real chain.

A redis-server (AOF, as deployed), one voice worker (engine xtts) and one lip-sync worker
(engine wav2lip), each its own `jayavatar worker` process with its engine in a child process,
requests submitted through `jobs.client.JobClient` as the API and the bot submit them. Both
models have random weights in the official layouts (bench/e2e_stack.py builds them); the avatar
is a 720p prepared clip with a synthetic face track; the voice is enrolled through the queue.

Random XTTS weights never emit the stop token, so every sentence runs to the engine's own code
budget for its text (`XttsEngine._code_budget`: 1 s + 0.11 s per character), the same rule in
every run; texts are chosen so the speech is about 3, 10 and 30 s long, and the tables give the
speech length each render really had (its frames / 25).

Measured: each worker's start to ready; per request submit → MP4 (record `finished_at` minus the
moment `submit_render` was called) with the per-stage wait and busy times the records keep, warm
and for the first request right after both workers restarted; throughput of 10 s requests with
1, 4 and 16 concurrent clients. Prints Markdown and writes it to --out.

    PYTHONPATH=. python3 bench/e2e_gpu.py --out bench/results/e2e_h100.md    # on the GPU host
    PYTHONPATH=. python3 bench/e2e_gpu.py --only-load --loads 16 --voice-workers 3 \
        --lipsync-workers 4 --pin 3 --mps                                  # the busiest set-up
    PYTHONPATH=. .venv/bin/python bench/e2e_gpu.py --smoke                   # tiny, on a CPU
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.e2e_stack import Profile, Worker, build_inputs, restart, worker_env, worker_pythons
from jayavatar.settings import Settings
from jobs.client import JobClient
from storage.keys import avatar_prefix
from tests.support.stack import RedisProcess

USER = "local"
FPS = 25
SHORT = [
    "Good morning, Sam.",
    "Thanks for coming.",
    "That sounds great.",
    "Call me back soon.",
    "Lunch is ready now.",
    "See you at noon.",
    "Have a good night.",
]
LONG = [
    "The train left the station on time.",
    "Everyone on board was ready to go.",
    "A child counted cows in every field.",
    "Her father smiled at every number.",
    "The river below was wide and grey.",
    "Houses appeared between the trees.",
    "The bakery sold out before nine.",
    "Two friends argued about the rice.",
    "The library stayed open very late.",
    "A gull landed on a rusty old post.",
]
LENGTHS = {3: (SHORT, 1), 10: (LONG, 2), 30: (LONG, 6)}  # speech s: (sentences, how many)
GPU = Profile("xtts", "wav2lip", "cuda", {}, 1280, 720, 10.0, tiny=False)
SMOKE = Profile("xtts", "wav2lip", "cpu", {}, 320, 240, 2.0, tiny=True)


def text_for(seconds: int, n: int) -> str:
    """The n-th text of a length class: a different choice of sentences each time."""
    pool, count = LENGTHS[seconds]
    return " ".join(pool[(n * count + i) % len(pool)] for i in range(count))


class Bench:
    """The running stack: Redis, two workers, a client; measures requests through it."""

    def __init__(
        self, profile: Profile, work: Path, counts: dict[str, int], pin: int = 0, mps: bool = False
    ) -> None:
        self.profile, self.work, self.counts, self.pin, self.mps = profile, work, counts, pin, mps
        self.redis = RedisProcess(work / "redis")
        self.env: dict[str, str] = {}
        self.workers: list[Worker] = []
        self.client: JobClient | None = None
        self.ready: dict[str, list[float]] = {}

    def settings(self) -> Settings:
        """The deployment settings every process of this bench shares."""
        return Settings(
            **{
                k[10:].lower(): v
                for k, v in self.env.items()  # type: ignore[arg-type]
                if k.startswith("JAYAVATAR_")
            }
        )

    async def start(self) -> None:
        """Start Redis and the workers, enroll the voice, publish the prepared avatar."""
        if self.mps:  # before any CUDA process, so every worker's context goes through it
            subprocess.run(["nvidia-cuda-mps-control", "-d"], check=True)
        self.redis.start()
        p = self.profile
        self.env = worker_env(
            p,
            self.redis.url,
            self.work / "data",
            self.work / "models",
            JAYAVATAR_KEY_PREFIX="e2e",
            JAYAVATAR_VOICE_QUEUE="e2e:voice",
            JAYAVATAR_LIPSYNC_QUEUE="e2e:lipsync",
            JAYAVATAR_HEALTH_CHECK_INTERVAL_S="1",
            JAYAVATAR_MAX_CONCURRENT="64",
            JAYAVATAR_DAILY_QUOTA="100000",
        )
        names = [
            (kind, f"{kind}-{i + 1}" if count > 1 else kind)
            for kind, count in self.counts.items()
            for i in range(count)
        ]
        cpus = core_shares(self.counts["lipsync"], self.pin)
        self.workers = [
            Worker(
                kind,
                p.pythons[kind],
                self.env,
                self.work / f"worker-{name}.log",
                name,
                cpus.get(name, cpus.get("rest")) if self.pin else None,
            )
            for kind, name in names
        ]
        self.restart()
        client = self.client = await JobClient.connect(self.settings())
        req = await client.submit_voice_enroll(
            USER, "bench", self.work / "reference.wav", replace=True
        )
        done = await client.wait(req.id, 600)
        assert done.state == "done", f"voice enrollment {done.state}: {done.error}"
        avatar = self.work / "avatar"
        client.storage.publish_dir(avatar_prefix(USER, "face"), avatar)
        meta = json.loads((avatar / "avatar.json").read_text())
        await client.accounts.register("avatar", USER, "face", meta)

    def restart(self) -> None:
        """Kill and start both workers together; note each one's seconds to ready."""
        for name, seconds in restart(self.workers).items():
            self.ready.setdefault(name, []).append(seconds)

    async def one(self, text: str) -> dict[str, float]:
        """Submit one render and wait for it; return its end-to-end and per-stage times."""
        assert self.client is not None
        t0 = time.time()
        req = await self.client.submit_render(USER, text, "bench", "face", "en")
        ack = time.time() - t0
        while not (rec := await self.client.get(req.id)).final:
            await asyncio.sleep(0.01)
        assert rec.state == "done", f"render {rec.state}: {rec.error}"
        row = {
            "total": rec.finished_at - t0,
            "ack": ack,
            "speech": rec.result.get("frames", 0) / FPS,
        }
        return {**row, **rec.timings}

    async def closed_loop(self, clients: int, total: int, seconds: int) -> dict[str, Any]:
        """`clients` users each submitting their next request when the last is done."""
        results: list[dict[str, float]] = []
        counter = iter(range(total))

        async def user() -> None:
            for n in counter:
                results.append(await self.one(text_for(seconds, n)))

        t0, cpu0 = time.monotonic(), host_cpu_seconds()
        with GpuSampler() as gpu:
            await asyncio.gather(*(user() for _ in range(clients)))
        wall = time.monotonic() - t0
        busy = host_cpu_seconds() - cpu0
        totals = sorted(r["total"] for r in results)
        return {
            "cpu_busy": busy / wall / (os.cpu_count() or 1),
            "cpu_per_video": busy / total,
            "gpu_busy": gpu.mean(),
            "clients": clients,
            "requests": total,
            "wall": wall,
            "per_min": 60 * total / wall,
            "p50": statistics.median(totals),
            "p95": totals[min(len(totals) - 1, round(0.95 * (len(totals) - 1)))],
            "max": totals[-1],
            "render": statistics.median(r["render_s"] for r in results),
            **{
                key: statistics.median(r.get(key, 0.0) for r in results)
                for key in ("voice_wait_s", "synthesize_s", "lipsync_wait_s")
            },
        }

    async def stop(self) -> None:
        """Stop the client, the workers and Redis."""
        if self.client is not None:
            await self.client.close()
        for worker in self.workers:
            worker.kill()
        self.redis.stop()
        if self.mps:
            subprocess.run(["nvidia-cuda-mps-control"], input=b"quit\n", check=False)


STAGES = [
    "ack",
    "voice_wait_s",
    "synthesize_s",
    "voice_stage_s",
    "lipsync_wait_s",
    "render_s",
    "lipsync_stage_s",
]


def core_shares(lipsync_workers: int, per_worker: int) -> dict[str, frozenset[int]]:
    """Disjoint cores for each lip-sync worker from the top of the host; the rest for voice."""
    cores = sorted(os.sched_getaffinity(0))
    shares: dict[str, frozenset[int]] = {}
    for i in range(lipsync_workers if per_worker else 0):
        name = f"lipsync-{i + 1}" if lipsync_workers > 1 else "lipsync"
        shares[name] = frozenset(cores[len(cores) - (i + 1) * per_worker :][:per_worker])
    taken = set().union(*shares.values()) if shares else set()
    shares["rest"] = frozenset(c for c in cores if c not in taken) or frozenset(cores)
    return shares


def host_cpu_seconds() -> float:
    """CPU seconds every core of this host has spent busy since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class GpuSampler:
    """nvidia-smi's GPU utilisation sampled every 100 ms while the block runs."""

    def __enter__(self) -> GpuSampler:
        self.proc: subprocess.Popen[str] | None = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-lms", "100"],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.samples: list[float] = []
        if self.proc is not None:
            self.proc.terminate()
            out, _ = self.proc.communicate(timeout=10)
            self.samples = [float(x) for x in out.split() if x.strip().isdigit()]

    def mean(self) -> float | None:
        """Mean utilisation, percent, or None without nvidia-smi."""
        return statistics.fmean(self.samples) if self.samples else None


def latency_row(case: str, seconds: int, rows: list[dict[str, float]]) -> str:
    """One Markdown row: p50 submit → MP4 (min–max) and the p50 of each stage's time."""
    med = {key: statistics.median(r.get(key, 0.0) for r in rows) for key in ["total", *STAGES]}
    speech = statistics.median(r["speech"] for r in rows)
    totals = [r["total"] for r in rows]
    cells = [f"{med['ack'] * 1000:.0f}"] + [f"{med[k]:.2f}" for k in STAGES[1:]]
    return (
        f"| {case} | {seconds} s ({speech:.1f} s) | {len(rows)} | **{med['total']:.2f}** "
        f"| {min(totals):.2f}–{max(totals):.2f} | " + " | ".join(cells) + " |"
    )


async def measure(
    bench: Bench, lengths: list[int], reps: int, loads: list[int], per_client: int
) -> dict[str, Any]:
    """Warm latencies, latencies right after a restart, then throughput under load."""
    out: dict[str, Any] = {"warm": {}, "cold": {}, "loads": []}
    for seconds in lengths:  # first use of each text shape (XTTS captures a CUDA graph per batch)
        await bench.one(text_for(seconds, 99))
    # Every worker's first job warms it up: as many at once as the most workers of a kind.
    await asyncio.gather(
        *(bench.one(text_for(10, 98 - n)) for n in range(max(bench.counts.values())))
    )
    for seconds in lengths if reps else []:
        out["warm"][seconds] = [await bench.one(text_for(seconds, n)) for n in range(reps)]
        print(latency_row("warm", seconds, out["warm"][seconds]), flush=True)
    for seconds in lengths if reps else []:
        bench.restart()
        out["cold"][seconds] = [await bench.one(text_for(seconds, 50))]
        print(latency_row("after restart", seconds, out["cold"][seconds]), flush=True)
    for clients in loads:
        await bench.one(text_for(10, 77))  # settle between loads
        total = max(per_client * 2, per_client * clients)
        out["loads"].append(await bench.closed_loop(clients, total, 10))
        print(out["loads"][-1], flush=True)
    return out


def card_name() -> str:
    """The GPU's name from nvidia-smi, or 'CPU'."""
    if shutil.which("nvidia-smi"):
        names = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()
        )
        if names:
            return names[0]
    return "CPU"


def report(card: str, profile: Profile, result: dict[str, Any], bench: Bench) -> str:
    """The Markdown report: cold starts, latencies, throughput."""
    ready, counts = bench.ready, bench.counts
    lines = [
        f"# End to end on one machine: {card}",
        "",
        f"Engines {profile.voice_engine} + {profile.lipsync_engine} on {profile.device}, "
        f"random weights; avatar {profile.width}x{profile.height}, {profile.clip_s:g} s clip; "
        f"{counts['voice']} voice and {counts['lipsync']} lip-sync worker process(es) on this "
        "machine"
        + (
            f", each lip-sync worker pinned to {bench.pin} cores of its own and the voice "
            "workers to the rest"
            if bench.pin
            else ""
        )
        + (", NVIDIA MPS daemon running" if bench.mps else "")
        + f" ({os.cpu_count()} cores); quality reports off.",
        "",
        "## Worker start → ready (s; first start, then each restart)",
        "",
        "| worker | starts | p50 s | all |",
        "| --- | ---: | ---: | --- |",
    ]
    for kind, values in ready.items():
        lines.append(
            f"| {kind} | {len(values)} | {statistics.median(values):.2f} | "
            + ", ".join(f"{v:.2f}" for v in values)
            + " |"
        )
    lines += [
        "",
        "## Submit → MP4, one request at a time (s; p50 of each column)",
        "",
        "Speech: nominal (measured). ack: the submit call (ms). wait: queued until a worker "
        "claimed the stage; synthesize/render: the engine call; stage: claim to hand-off.",
        "",
        "| case | speech | n | submit→MP4 p50 | range | ack ms | voice wait | synthesize "
        "| voice stage | lipsync wait | render | lipsync stage |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [latency_row("warm", s, rows) for s, rows in result["warm"].items()]
    lines += [latency_row("after restart", s, rows) for s, rows in result["cold"].items()]
    lines += [
        "",
        "## Throughput, 10 s requests, closed loop (each client submits when its last is done)",
        "",
        "CPU: the host's cores busy, and host CPU seconds per video; GPU: nvidia-smi's "
        "utilisation, mean of 100 ms samples.",
        "",
        "| clients | requests | wall s | videos/min | p50 s | p95 s | max s | render p50 s "
        "| CPU busy | CPU s/video | GPU busy | voice wait | synthesize | lipsync wait |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['clients']} | {r['requests']} | {r['wall']:.1f} | {r['per_min']:.1f} | "
        f"{r['p50']:.2f} | {r['p95']:.2f} | {r['max']:.2f} | {r['render']:.2f} | "
        f"{r['cpu_busy']:.0%} | {r['cpu_per_video']:.2f} | "
        + ("n/a" if r["gpu_busy"] is None else f"{r['gpu_busy']:.0f}%")
        + f" | {r['voice_wait_s']:.2f} | {r['synthesize_s']:.2f} | {r['lipsync_wait_s']:.2f} |"
        for r in result["loads"]
    ]
    return "\n".join(lines) + "\n"


async def run(args: argparse.Namespace) -> str:
    """Build inputs, start the stack, measure, return the report."""
    base = SMOKE if args.smoke else GPU
    profile = Profile(**{**base.__dict__, "pythons": worker_pythons(args.smoke)})
    work: Path = args.work or Path(tempfile.mkdtemp(prefix="e2e-"))
    t = time.monotonic()
    build_inputs(profile, work)
    print(f"inputs built in {time.monotonic() - t:.1f} s under {work}", flush=True)
    counts = {"voice": args.voice_workers, "lipsync": args.lipsync_workers}
    bench = Bench(profile, work, counts, args.pin, args.mps)
    try:
        await bench.start()
        lengths = [3] if args.smoke else [3, 10, 30]
        loads = args.loads or ([1, 2] if args.smoke else [1, 4, 16])
        reps, per_client = (1, 1) if args.smoke else (args.reps, 2)
        if args.only_load:
            reps, lengths = 0, [10]
        result = await measure(bench, lengths, reps, loads, per_client)
    finally:
        await bench.stop()
    return report(card_name(), profile, result, bench)


def main() -> None:
    """Parse arguments, run, print and save the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU")
    parser.add_argument("--reps", type=int, default=5, help="warm requests per speech length")
    parser.add_argument("--work", type=Path, help="folder for models and data (default: temp)")
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    parser.add_argument("--voice-workers", type=int, default=1, help="voice worker processes")
    parser.add_argument(
        "--lipsync-workers", type=int, default=1, help="lip-sync worker processes on the GPU"
    )
    parser.add_argument("--only-load", action="store_true", help="skip the latency tables")
    parser.add_argument(
        "--loads", type=int, nargs="*", help="concurrent clients of each load (default 1 4 16)"
    )
    parser.add_argument(
        "--mps", action="store_true", help="run NVIDIA's MPS daemon for the workers (root)"
    )
    parser.add_argument(
        "--pin", type=int, default=0, help="cores of its own for each lip-sync worker (0: none)"
    )
    args = parser.parse_args()
    text = asyncio.run(run(args))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
