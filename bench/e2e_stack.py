"""The end-to-end bench's stack: its inputs (models, avatar, voice sample) and worker processes.

Inputs are built by running this module in a worker's Python (`python -m bench.e2e_stack
voice|lipsync WORK ...`), because the orchestrating Python may lack torch:

- voice: XTTS v2 random weights in the release layout (`tests.support.xtts_random`;
  with `--tiny`, the test suite's small model) and a voiced-sounding reference WAV to enroll;
- lipsync: Wav2Lip random weights in the official checkpoint format and a prepared avatar with
  a synthetic face track (`bench.wav2lip_synth`), so no face detector is needed.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The tiny XTTS of the test suite (bench/xtts_gpu.py --smoke): runs on a CPU in seconds.
TINY_XTTS = {
    "gpt_layers": 2,
    "gpt_n_model_channels": 256,
    "gpt_n_heads": 4,
    "decoder_input_dim": 256,
    "gpt_max_audio_tokens": 26,
}
#: The line a worker logs once its engine is built and it takes jobs.
READY = re.compile(rb"worker \S+ ready")


@dataclass(frozen=True)
class Profile:
    """What one bench run uses: engines, device, Pythons of the workers, avatar size."""

    voice_engine: str
    lipsync_engine: str
    device: str
    pythons: dict[str, str]
    width: int
    height: int
    clip_s: float
    tiny: bool


def worker_pythons(smoke: bool) -> dict[str, str]:
    """The Python of each worker: the project's environments here, this one on a GPU host."""
    if not smoke:
        return {"voice": sys.executable, "lipsync": sys.executable}
    envs = {"voice": ROOT / ".venvs/xtts/bin/python", "lipsync": ROOT / ".venvs/lipsync/bin/python"}
    return {kind: str(path) if path.exists() else sys.executable for kind, path in envs.items()}


def build_inputs(profile: Profile, work: Path) -> None:
    """Build the models, the avatar and the voice sample under `work` (skipped when there)."""
    steps = [
        ("voice", work / "models" / "xtts_v2" / "model.pth", ["--tiny"] if profile.tiny else []),
        (
            "lipsync",
            work / "avatar" / "avatar.json",
            [str(profile.width), str(profile.height), str(profile.clip_s)],
        ),
    ]
    for kind, product, extra in steps:
        if not product.exists():
            cmd = [profile.pythons[kind], "-m", "bench.e2e_stack", kind, str(work), *extra]
            subprocess.run(cmd, cwd=ROOT, env=child_env({}), check=True)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without JAYAVATAR_ settings, the repository first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAYAVATAR_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def worker_env(
    profile: Profile, redis_url: str, data: Path, models: Path, **extra: str
) -> dict[str, str]:
    """The environment of the bench's workers: Redis, folders and engines, no quality reports."""
    return child_env(
        {
            "JAYAVATAR_REDIS_URL": redis_url,
            "JAYAVATAR_DATA_DIR": str(data),
            "JAYAVATAR_MODELS_DIR": str(models),
            "JAYAVATAR_DEVICE": profile.device,
            "JAYAVATAR_VOICE_ENGINE": profile.voice_engine,
            "JAYAVATAR_LIPSYNC_ENGINE": profile.lipsync_engine,
            "JAYAVATAR_QUALITY_REPORT": "false",
            **extra,
        }
    )


@dataclass
class Worker:
    """One `jayavatar worker KIND` process; `start` returns seconds until it is ready."""

    kind: str
    python: str
    env: dict[str, str]
    log_path: Path
    name: str = ""
    cpus: frozenset[int] | None = None  # pin the worker (and its children) to these cores
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started: float = 0.0
    log_from: int = 0

    def launch(self) -> None:
        """Start the process (not waiting); readiness is read from its log from here on."""
        self.log_from = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - the process owns it
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [self.python, "-m", "cli.main", "worker", self.kind],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=self._pin if self.cpus else None,
        )

    def _pin(self) -> None:
        """In the child before exec: keep it to its cores."""
        assert self.cpus is not None
        os.sched_setaffinity(0, self.cpus)

    def is_ready(self) -> bool:
        """Tell whether this process logged that it is ready; raise if it exited."""
        with open(self.log_path, "rb") as log:
            log.seek(self.log_from)
            if READY.search(log.read()):
                return True
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.kind} worker exited:\n{tail}")
        return False

    def kill(self) -> None:
        """SIGKILL the worker's process group (its engine child too)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def restart(workers: list[Worker], limit_s: float = 300) -> dict[str, float]:
    """Kill and start the workers together; return each one's seconds from launch to ready."""
    for worker in workers:
        worker.kill()
    for worker in workers:
        worker.launch()
    ready: dict[str, float] = {}
    deadline = time.monotonic() + limit_s
    while len(ready) < len(workers):
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not ready after {limit_s:.0f} s")
        for worker in workers:
            if worker.name not in ready and worker.is_ready():
                ready[worker.name] = time.monotonic() - worker.started
        time.sleep(0.02)
    return ready


def _voice_inputs(work: Path, tiny: bool) -> None:
    from bench.xtts_report import RELEASE_VOCAB, build_vocab, write_reference
    from tests.support.xtts_random import write_random_model

    vocab = build_vocab(work / "vocab.json", 800 if tiny else RELEASE_VOCAB)
    print(f"vocabulary: {vocab} tokens", flush=True)
    write_random_model(
        work / "models" / "xtts_v2", work / "vocab.json", **(TINY_XTTS if tiny else {})
    )
    write_reference(work / "reference.wav")


def _lipsync_inputs(work: Path, width: int, height: int, clip_s: float) -> None:
    from bench.wav2lip_synth import make_avatar, save_weights

    save_weights(work / "models")
    make_avatar(work / "avatar.part", width, height, clip_s).rename(work / "avatar")


def main() -> None:
    """Build one worker kind's inputs (run in that worker's Python)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("voice", "lipsync"))
    parser.add_argument("work", type=Path)
    parser.add_argument("size", nargs="*")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    if args.kind == "voice":
        _voice_inputs(args.work, args.tiny)
    else:
        width, height, clip_s = args.size
        _lipsync_inputs(args.work, int(width), int(height), float(clip_s))


if __name__ == "__main__":
    main()
