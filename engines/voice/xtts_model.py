"""Loading XTTS v2 through coqui-tts: the import shim and the release folder.

Used by `engines.voice.xtts` (the engine), its tests and the GPU benchmark; needs torch and
coqui-tts, which only the xtts environment has.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import sys
import types
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from engines import models as registry
from jayavatar.errors import ModelMissing

log = logging.getLogger(__name__)


@functools.cache
def coqui() -> types.SimpleNamespace:
    """Import coqui-tts's XTTS classes once, tolerating a torchaudio without its C++ ops.

    PyPI's x86-64 torchaudio is a CUDA build whose compiled ops (alignment, lfilter) cannot
    load beside a CPU-only torch. XTTS needs only torchaudio's pure-PyTorch mel and resampling
    code, so on that failure torchaudio is imported again with the compiled part declared absent.
    """
    # Only PyTorch is used: transformers would otherwise import JAX and TensorFlow where they
    # are installed (seconds of a worker's start on hosts that have them). Settings win.
    for name, value in (("USE_TORCH", "1"), ("USE_TF", "0"), ("USE_FLAX", "0")):
        os.environ.setdefault(name, value)
    try:
        import torchaudio
    except (OSError, RuntimeError) as exc:  # missing CUDA libraries, or a CUDA version mismatch
        log.info("torchaudio's compiled ops unavailable (%s); using its pure-PyTorch parts", exc)
        for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
            del sys.modules[name]
        sys.modules["torchaudio._extension"] = _torchaudio_without_ops()
        import torchaudio  # noqa: F401

    with _distributions_mapped_once():
        _without_unused_extras()
        from transformers.modeling_utils import no_init_weights
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
        from TTS.tts.models import xtts as xtts_module

    return types.SimpleNamespace(
        Xtts=xtts_module.Xtts,
        XttsConfig=XttsConfig,
        VoiceBpeTokenizer=VoiceBpeTokenizer,
        legacy_globals=xtts_module._legacy_safe_globals,
        no_init_weights=no_init_weights,
    )


def _without_unused_extras() -> None:
    """Tell transformers that scikit-learn and SciPy are absent, before its models import.

    transformers imports scikit-learn for assisted decoding and SciPy's optimizers for
    object-detection losses whenever they are installed (librosa brings both); XTTS uses
    neither, and the two imports took about 1 s of every voice worker's start.
    """
    from transformers.utils import import_utils

    import_utils._sklearn_available = False
    import_utils._scipy_available = False


@contextlib.contextmanager
def _distributions_mapped_once() -> Iterator[None]:
    """Let `importlib.metadata.packages_distributions` read the installed packages only once.

    coqui-tts calls it twice while importing, and each call reads the file list of every
    installed distribution (0.5 s on a GPU host with many packages).
    """
    real = importlib.metadata.packages_distributions
    importlib.metadata.packages_distributions = functools.cache(real)
    try:
        yield
    finally:
        importlib.metadata.packages_distributions = real


def _torchaudio_without_ops() -> types.ModuleType:
    """Build the stand-in for `torchaudio._extension` that says the compiled ops are absent."""
    module = types.ModuleType("torchaudio._extension")

    def fail_if_no_align(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("torchaudio's compiled alignment ops are not available")

        return unavailable

    module._IS_TORCHAUDIO_EXT_AVAILABLE = False  # type: ignore[attr-defined]
    module._IS_ALIGN_AVAILABLE = False  # type: ignore[attr-defined]
    module.fail_if_no_align = fail_if_no_align  # type: ignore[attr-defined]
    return module


def pick_device(setting: str) -> torch.device:
    """Resolve the configured device ("auto" takes CUDA when present)."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelMissing("JAYAVATAR_DEVICE=cuda but torch sees no CUDA GPU; fix: set it to auto")
    use_cuda = setting == "cuda" or (setting == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def gpt_dtype(name: str, device: torch.device) -> torch.dtype:
    """Resolve the GPT's precision: half precision only on CUDA, fp32 on CPU."""
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ValueError(f"unknown GPT precision {name!r}; use one of {', '.join(dtypes)}")
    return dtypes[name] if device.type == "cuda" else torch.float32


def load_model(model_dir: Path, device: torch.device, dtype: torch.dtype = torch.float32) -> Any:
    """Load an XTTS model folder through coqui-tts; map every failure to ModelMissing.

    Only the GPT takes `dtype`; the HiFi-GAN vocoder and the speaker encoder stay fp32.
    """
    lib = coqui()
    fix = registry.fix_for(registry.get("xtts_v2"))
    config = _read_config(lib, model_dir, fix)
    try:
        lib.VoiceBpeTokenizer(vocab_file=str(model_dir / "vocab.json"))
    except Exception as exc:  # the tokenizers library raises its own exception types
        raise ModelMissing(f"xtts_v2/vocab.json is unreadable ({exc}); fix: {fix}") from exc
    model = _build_and_load(lib, config, model_dir, fix)
    # On the device first: the checks below read every weight, which a GPU does in a blink.
    model.to(device)
    broken = non_finite(model)
    if broken:
        raise ModelMissing(
            f"xtts_v2/model.pth holds NaN or infinite values in {len(broken)} tensors "
            f"(e.g. {broken[0]}); fix: {fix}"
        )
    if not _vocoder_probe_ok(model):
        raise ModelMissing(
            f"xtts_v2/model.pth: the vocoder's probe pass gives NaN or infinite audio; fix: {fix}"
        )
    model.gpt.to(dtype)
    return model


def _read_config(lib: types.SimpleNamespace, model_dir: Path, fix: str) -> Any:
    """The folder's config.json as coqui-tts's XttsConfig; ModelMissing if unreadable."""
    try:
        json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        config = lib.XttsConfig()
        config.load_json(str(model_dir / "config.json"))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelMissing(f"xtts_v2/config.json is unreadable ({exc}); fix: {fix}") from exc
    return config


def _build_and_load(lib: types.SimpleNamespace, config: Any, model_dir: Path, fix: str) -> Any:
    """Build the model and load model.pth strictly; ModelMissing if the file will not load."""
    try:
        # coqui-tts builds the model twice (in the constructor and again in load_checkpoint)
        # and then copies 467 M loaded parameters into it: most of a worker's cold start.
        # Instead its parameters are built without memory and take the file's (memory-mapped)
        # tensors themselves. Strict loading still fails on any parameter the file lacks,
        # and `_unset` below catches one that nothing set.
        with lib.no_init_weights(), _MetaParameters() as meta:
            model = lib.Xtts(config)
            # coqui-tts rewrites old-style checkpoints in place; read them without changing it.
            model._load_checkpoint = functools.partial(_read_checkpoint, lib.legacy_globals)
            model.load_state_dict = meta.assigning(model.load_state_dict)
            model.load_checkpoint(config, checkpoint_dir=str(model_dir), eval=True, strict=True)
        del model.load_state_dict
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise ModelMissing(
            f"xtts_v2/model.pth could not be loaded ({_brief(exc)}); fix: {fix}"
        ) from exc
    unset = _unset(model)
    if unset:
        raise ModelMissing(
            f"xtts_v2/model.pth sets no value for {len(unset)} tensors (e.g. {unset[0]}); "
            f"fix: {fix}"
        )
    return model


class _MetaParameters:
    """While entered, new module parameters are made on the meta device (no memory).

    Buffers stay real because modules compute some of them (torchaudio's mel filterbanks,
    attention masks) and the checkpoint does not hold those. Loading through `assigning`
    puts the file's tensors in place of the meta ones.
    """

    def __init__(self) -> None:
        self.register = torch.nn.Module.register_parameter
        self.loading = False

    def __enter__(self) -> _MetaParameters:
        def on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
            if param is not None and not param.is_meta and not self.loading:
                param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
            self.register(module, name, param)

        torch.nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        torch.nn.Module.register_parameter = self.register  # type: ignore[method-assign]

    def assigning(self, load: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap a module's `load_state_dict` so the loaded tensors become its parameters."""

        def assign(state: dict[str, Any], strict: bool = True) -> Any:
            self.loading = True
            try:
                return load(state, strict=strict, assign=True)
            finally:
                self.loading = False

        return assign


def _unset(model: torch.nn.Module) -> list[str]:
    """Names of parameters and buffers still on the meta device (no value was loaded)."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return [name for name, value in tensors if value.is_meta]


def _brief(exc: BaseException) -> str:
    """Shorten torch's load error to one line, wrong shapes first (the key lists run long)."""
    if "Weights only load failed" in str(exc):
        return registry.load_error(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines.sort(key=lambda line: not line.startswith("size mismatch"))
    text = " ".join(lines)
    return text if len(text) <= 300 else text[:300] + "…"


def _vocoder_probe_ok(model: Any) -> bool:
    """Run the HiFi-GAN vocoder once on a few constant latents, on its device; True if finite."""
    device = next(model.hifigan_decoder.parameters()).device
    latents = torch.full((1, 4, int(model.args.decoder_input_dim)), 0.1, device=device)
    speaker = torch.full((1, int(model.args.d_vector_dim), 1), 0.01, device=device)
    with torch.inference_mode():
        wav = model.hifigan_decoder(latents, g=speaker)
    return bool(wav.isfinite().all()) and wav.numel() > 0


def non_finite(model: torch.nn.Module) -> list[str]:
    """Return the names of floating-point weights and buffers holding NaN or infinite values."""
    return [
        name
        for name, value in model.state_dict().items()
        if value.is_floating_point() and not bool(value.isfinite().all())
    ]


def verify_folder(path: Path, fix: str) -> str:
    """Load a model folder as the worker would, on the CPU (`models import` and `verify`).

    `path` is any file of the folder; `fix` is unused since `load_model` names the fix itself.
    """
    load_model(path.parent, torch.device("cpu"))
    return "strict load, finite weights and vocoder probe ok"


def _read_checkpoint(legacy_globals: Callable[[], Any], model_path: Path) -> dict[str, Any]:
    """Read the state dict of an XTTS checkpoint with weights-only unpickling."""
    # Mapped, not read: the loaded parameters are views of the file until they move to the GPU.
    # Files in torch's pre-1.6 format cannot be mapped and are read whole.
    mmap = zipfile.is_zipfile(model_path)
    with legacy_globals():
        checkpoint = torch.load(model_path, map_location="cpu", weights_only=True, mmap=mmap)
    state: dict[str, Any] = checkpoint["model"]
    return state


def model_fingerprint(model_dir: Path) -> str:
    """Identify the weights cheaply: config, size and the ends of model.pth."""
    digest = hashlib.sha256((model_dir / "config.json").read_bytes())
    weights = model_dir / "model.pth"
    size = weights.stat().st_size
    digest.update(str(size).encode())
    with weights.open("rb") as handle:
        digest.update(handle.read(1 << 22))
        handle.seek(max(0, size - (1 << 22)))
        digest.update(handle.read(1 << 22))
    return digest.hexdigest()[:16]
