"""`python -m engines.model_check MODELS_DIR MODEL`: load one model strictly, as a worker would.

The core CLI runs this in the model's engine environment (torch lives only there) and reads
the one JSON line it prints: {"ok": bool, "detail": str}.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from engines import models
from jayavatar.errors import JayAvatarError, one_line


def check(models_dir: Path, name: str) -> str:
    """Run the model's strict loader on its files; return what passed or raise ModelMissing."""
    model = models.get(name)
    if model.check is None:
        return "no loader check"
    module, _, func = model.check.partition(":")
    loader = getattr(importlib.import_module(module), func)
    detail: str = loader(models_dir / model.files[0].path, f"; fix: {model.how_to_get}")
    return detail


def main(argv: list[str]) -> int:
    """Print the verdict on one line of JSON; the exit code is 0 either way."""
    try:
        verdict = {"ok": True, "detail": check(Path(argv[0]), argv[1])}
    except JayAvatarError as exc:
        verdict = {"ok": False, "detail": one_line(exc)}
    print(json.dumps(verdict))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
