"""Where a worker's cold start goes: the engine build of one kind, timed step by step.

Run in a fresh process (as the engine child starts), on models built by bench/e2e_stack.py:

    PYTHONPATH=. python3 bench/engine_start.py voice|lipsync WORK [--device cuda] [--profile]

Prints the seconds of the imports, the engine's construction and load, and, with --profile,
the 25 functions with the most cumulative time inside the build.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path
from typing import Any

T0 = time.perf_counter()


def main() -> None:
    """Time the imports and the build of one engine; optionally profile the build."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("voice", "lipsync"))
    parser.add_argument("work", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--cudnn-benchmark", action="store_true", help="lip-sync: cuDNN's autotuner on (as before)"
    )
    args = parser.parse_args()
    import torch

    t_torch = time.perf_counter()
    from engines import registry
    from jayavatar import catalog
    from jayavatar.settings import Settings

    name = "xtts" if args.kind == "voice" else "wav2lip"
    target = catalog.engine(name, args.kind).target.split(":")[0]
    module = __import__(target, fromlist=["_"])
    if args.cudnn_benchmark:
        module.CUDNN_BENCHMARK = True
    if name == "xtts":
        from engines.voice.xtts_model import coqui

        coqui()
    t_imports = time.perf_counter()
    settings = Settings(models_dir=args.work / "models", device=args.device)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    engine = registry.build_engine(settings, args.kind, name)
    if args.device == "cuda":
        torch.cuda.synchronize()
    t_built = time.perf_counter()
    if profiler is not None:
        profiler.disable()
    print(
        f"{name}: torch import {t_torch - T0:.2f} s, engine imports {t_imports - t_torch:.2f} s, "
        f"build + load {t_built - t_imports:.2f} s, total {t_built - T0:.2f} s",
        flush=True,
    )
    if name == "wav2lip" and args.device == "cuda":
        print(generator_rate(engine), flush=True)
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    close = getattr(engine, "close", None)
    if callable(close):
        close()


def generator_rate(engine: Any, batches: int = 30) -> str:
    """The loaded generator's steady rate at its full batch (uint8 crops in and out)."""
    import numpy as np
    import torch

    generate = engine.load()
    crops = np.zeros((engine.batch, 96, 96, 3), np.uint8)
    mels = torch.zeros(engine.batch, 1, 80, 16)
    generate(crops, mels)
    t = time.perf_counter()
    for _ in range(batches):
        generate(crops, mels)
    seconds = time.perf_counter() - t
    ms = 1000 * seconds / batches
    rate = engine.batch / ms * 1000
    return f"generator: batch {engine.batch}: {ms:.1f} ms a batch, {rate:,.0f} frames/s"


if __name__ == "__main__":
    main()
