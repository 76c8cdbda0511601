"""An engine's start, then its restarts after a kill, through the worker's `EngineHost`.

    PYTHONPATH=. python3 bench/engine_restart.py voice|lipsync ENGINE WORK [--device cuda]

WORK holds `models/` (bench/e2e_stack.py or bench/wav2lip_synth.py builds them). The first
start also starts the fork server (the engine's imports); each restart is what a request
waits for after a cancel or a crash killed the engine's process.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jayavatar.settings import Settings
from jobs.enginehost import EngineHost, EngineKind


async def measure(kind: EngineKind, engine: str, work: Path, device: str, restarts: int) -> None:
    """Start the engine, kill it, start it again; print each start's seconds."""
    settings = Settings(models_dir=work / "models", device=device)
    host = EngineHost(settings.model_copy(update={f"{kind}_engine": engine}), kind)
    for k in range(restarts + 1):
        t = time.perf_counter()
        await host.start()
        label = "start" if k == 0 else f"restart {k}"
        print(f"{engine} {label}: {time.perf_counter() - t:.2f} s", flush=True)
        host.kill()


def main() -> None:
    """Parse the arguments and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("voice", "lipsync"))
    parser.add_argument("engine")
    parser.add_argument("work", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--restarts", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(measure(args.kind, args.engine, args.work, args.device, args.restarts))


if __name__ == "__main__":
    main()
