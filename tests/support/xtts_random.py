"""Random-weight XTTS v2 models in the release's file layout, for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engines import models as registry
from engines.voice.xtts_model import coqui


def write_random_model(model_dir: Path, vocab_file: Path, **model_args: Any) -> Path:
    """Save a randomly initialised XTTS in the release's file layout, for tests and benchmarks.

    The architecture is the release's (`XTTS_RELEASE_ARGS`) with `model_args` overriding it; the
    text vocabulary size comes from `vocab_file`, as when coqui-tts loads real weights.
    """
    lib = coqui()
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "vocab.json").write_bytes(vocab_file.read_bytes())
    config = lib.XttsConfig()
    config.model_args = type(config.model_args)(**{**registry.XTTS_RELEASE_ARGS, **model_args})
    for key, value in registry.XTTS_RELEASE_INFERENCE.items():
        setattr(config, key, value)
    model = lib.Xtts(config)
    model.tokenizer = lib.VoiceBpeTokenizer(vocab_file=str(model_dir / "vocab.json"))
    model.init_models()
    torch.save({"model": model.state_dict()}, model_dir / "model.pth")
    config.save_json(str(model_dir / "config.json"))
    return model_dir
