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

T0 = time.perf_counter()


def main() -> None:
    """Time the imports and the build of one engine; optionally profile the build."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("voice", "lipsync"))
    parser.add_argument("work", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    import torch

    t_torch = time.perf_counter()
    from engines import registry
    from jayavatar import catalog
    from jayavatar.settings import Settings

    name = "xtts" if args.kind == "voice" else "wav2lip"
    target = catalog.engine(name, args.kind).target.split(":")[0]
    __import__(target)
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
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    close = getattr(engine, "close", None)
    if callable(close):
        close()


if __name__ == "__main__":
    main()
