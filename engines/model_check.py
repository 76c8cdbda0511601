"""`python -m engines.model_check LOADER PATH FIX`: load one model strictly, as a worker would.

The core CLI runs this in the model's engine environment (torch lives only there) with the
loader named by the engine table (`module:function`), and reads the one JSON line it prints:
{"ok": bool, "detail": str}.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from jayavatar.errors import JayAvatarError, one_line


def check(loader: str, path: Path, fix: str) -> str:
    """Run `loader(path, fix)`; return what passed, or let its ModelMissing through."""
    module, _, func = loader.partition(":")
    detail: str = getattr(importlib.import_module(module), func)(path, fix)
    return detail


def main(argv: list[str]) -> int:
    """Print the verdict on one line of JSON; the exit code is 0 either way."""
    try:
        verdict = {"ok": True, "detail": check(argv[0], Path(argv[1]), argv[2])}
    except JayAvatarError as exc:
        verdict = {"ok": False, "detail": one_line(exc)}
    print(json.dumps(verdict))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
