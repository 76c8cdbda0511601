"""Voice engine "xtts": the user's own voice, cloned by Coqui XTTS v2 through coqui-tts.

The official model folder (`models_dir/xtts_v2`: config.json, model.pth, vocab.json) is loaded
once per worker with coqui-tts's own classes, under `inference_mode`. Enrollment stores the
voice's conditioning latents, so synthesis never touches the reference audio again. On CUDA the
GPT can run in fp16 (`gpt_half`); the small HiFi-GAN vocoder, whose output is what people hear,
always stays in fp32.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines import models as registry
from engines.base import ProgressFn
from engines.text import CHAR_LIMITS, detect_language, language_code, normalize, split_sentences
from engines.xtts_audio import (
    COND_RATE,
    SAMPLE_RATE,
    max_seconds,
    pause,
    pause_after,
    prepare_reference,
    trim_tail,
    with_last,
    write_wav,
)
from jayavatar.errors import BadInput, ModelMissing
from jayavatar.settings import Settings

log = logging.getLogger(__name__)

CODES_PER_SECOND = COND_RATE / 1024  # one GPT audio code per 1024 input samples
MAX_TEXT_TOKENS = 400  # the GPT asserts text tokens < gpt_max_text_tokens (402)
LATENTS_FILE = "xtts_latents.pt"
VOICE_FILE = "xtts_voice.json"
REFERENCE_FILE = "xtts_reference.wav"
MIN_SPEECH_S = 3.0


@functools.cache
def coqui() -> types.SimpleNamespace:
    """Import coqui-tts's XTTS classes once, tolerating a torchaudio without its C++ ops.

    PyPI's x86-64 torchaudio is a CUDA build whose compiled ops (alignment, lfilter) cannot
    load beside a CPU-only torch. XTTS needs only torchaudio's pure-PyTorch mel and resampling
    code, so on that failure torchaudio is imported again with the compiled part declared absent.
    """
    try:
        import torchaudio
    except (OSError, RuntimeError) as exc:  # missing CUDA libraries, or a CUDA version mismatch
        log.info("torchaudio's compiled ops unavailable (%s); using its pure-PyTorch parts", exc)
        for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
            del sys.modules[name]
        sys.modules["torchaudio._extension"] = _torchaudio_without_ops()
        import torchaudio  # noqa: F401

    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models import xtts as xtts_module

    return types.SimpleNamespace(
        Xtts=xtts_module.Xtts,
        XttsConfig=XttsConfig,
        VoiceBpeTokenizer=VoiceBpeTokenizer,
        legacy_globals=xtts_module._legacy_safe_globals,
    )


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


def pick_device(setting: str) -> torch.device:
    """Resolve the configured device ("auto" takes CUDA when present)."""
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelMissing("JAYAVATAR_DEVICE=cuda but torch sees no CUDA GPU; fix: set it to auto")
    use_cuda = setting == "cuda" or (setting == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def load_model(model_dir: Path, device: torch.device, gpt_half: bool = False) -> Any:
    """Load an XTTS model folder through coqui-tts; map every failure to ModelMissing."""
    lib = coqui()
    fix = registry.fix_for(registry.get("xtts_v2"))
    try:
        json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        config = lib.XttsConfig()
        config.load_json(str(model_dir / "config.json"))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelMissing(f"xtts_v2/config.json is unreadable ({exc}); fix: {fix}") from exc
    try:
        lib.VoiceBpeTokenizer(vocab_file=str(model_dir / "vocab.json"))
    except Exception as exc:  # the tokenizers library raises its own exception types
        raise ModelMissing(f"xtts_v2/vocab.json is unreadable ({exc}); fix: {fix}") from exc
    model = lib.Xtts(config)
    # coqui-tts rewrites old-style checkpoints in place; read them without touching the file.
    model._load_checkpoint = functools.partial(_read_checkpoint, lib.legacy_globals)
    try:
        model.load_checkpoint(config, checkpoint_dir=str(model_dir), eval=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise ModelMissing(f"xtts_v2/model.pth could not be loaded ({exc}); fix: {fix}") from exc
    model.to(device)
    if gpt_half and device.type == "cuda":
        model.gpt.half()
    return model


def _read_checkpoint(legacy_globals: Callable[[], Any], model_path: Path) -> dict[str, Any]:
    """Read the state dict of an XTTS checkpoint with weights-only unpickling."""
    with legacy_globals():
        checkpoint = torch.load(model_path, map_location="cpu", weights_only=True)
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


class XttsEngine:
    """XTTS v2 voice cloning: enroll once per voice, then speak any text in it."""

    name = "xtts"

    def __init__(self, settings: Settings, gpt_half: bool = False) -> None:
        """Load the model once for this worker; raise ModelMissing if the files are not usable.

        `gpt_half` runs the GPT in fp16 on CUDA. It halves GPU memory but was slower than fp32
        at batch 1 on an H200 (bench/results/xtts_h200.md), so fp32 is the default.
        """
        self.settings = settings
        self.model_dir = registry.require(settings.models_dir, "xtts_v2")
        self.device = pick_device(settings.device)
        half = gpt_half and self.device.type == "cuda"
        self.model = load_model(self.model_dir, self.device, half)
        self.fingerprint = model_fingerprint(self.model_dir)
        self.config = self.model.config
        self.gpt_dtype = torch.float16 if half else torch.float32

    # --- enrollment -------------------------------------------------------------------------

    def enroll(self, sample: Path, out_dir: Path) -> dict[str, Any]:
        """Compute and store the voice's conditioning latents (skipped when already stored).

        `sample` is one audio file, or a folder whose audio files are all used.
        """
        clips = sorted(p for p in sample.iterdir() if p.is_file()) if sample.is_dir() else [sample]
        return self.enroll_clips(clips, out_dir)

    def enroll_clips(self, clips: list[Path], out_dir: Path) -> dict[str, Any]:
        """Enroll from several reference clips of the same speaker."""
        if not clips:
            raise BadInput("no reference audio given")
        key = self._enrollment_key(clips)
        cached = self._cached_enrollment(out_dir, key)
        if cached is not None:
            return cached
        max_s = self.settings.max_sample_s
        min_s = max(MIN_SPEECH_S, self.settings.min_sample_s)
        reference = prepare_reference(clips, min_speech_s=min_s, max_total_s=max_s)
        gpt_cond_latent, speaker_embedding = self.conditioning(reference.clips)
        meta = {
            "engine": self.name,
            "speech_s": round(reference.speech_s, 2),
            "warnings": reference.warnings,
            "clips": len(clips),
            "key": key,
        }
        self.store_voice(out_dir, gpt_cond_latent, speaker_embedding, meta)
        write_wav(out_dir / REFERENCE_FILE, np.concatenate(reference.clips), None, COND_RATE)
        return {**meta, "model": self.fingerprint}

    def store_voice(
        self, out_dir: Path, cond: torch.Tensor, speaker: torch.Tensor, meta: dict[str, Any]
    ) -> None:
        """Write a voice's latents and metadata; the metadata names the weights they fit."""
        out_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "gpt_cond_latent": cond.float().cpu(),
            "speaker_embedding": speaker.float().cpu(),
        }
        torch.save(payload, out_dir / LATENTS_FILE)
        text = json.dumps({**meta, "model": self.fingerprint}, indent=1)
        (out_dir / VOICE_FILE).write_text(text, encoding="utf-8")

    def _enrollment_key(self, clips: list[Path]) -> str:
        """Identify an enrollment by the clips' bytes and the model's weights."""
        digest = hashlib.sha256(self.fingerprint.encode())
        for clip in clips:
            digest.update(registry.sha256_of(clip).encode())
        return digest.hexdigest()[:24]

    def _cached_enrollment(self, out_dir: Path, key: str) -> dict[str, Any] | None:
        """Return the stored metadata when these clips were already enrolled with this model."""
        try:
            meta: dict[str, Any] = json.loads((out_dir / VOICE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("key") != key or not (out_dir / LATENTS_FILE).is_file():
            return None
        return {**meta, "cached": True}

    def conditioning(self, clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Run XTTS's conditioning encoders: GPT latents over all clips, speaker mean over each."""
        cfg = self.config
        max_ref = int(cfg.max_ref_len) * COND_RATE
        tensors = [
            torch.from_numpy(c[:max_ref]).float().unsqueeze(0).to(self.device) for c in clips
        ]
        with torch.inference_mode(), self._autocast():
            speakers = [self.model.get_speaker_embedding(t, COND_RATE) for t in tensors]
            gpt_cond_latent = self.model.get_gpt_cond_latents(
                torch.cat(tensors, dim=-1),
                COND_RATE,
                length=int(cfg.gpt_cond_len),
                chunk_length=int(cfg.gpt_cond_chunk_len),
            )
        return gpt_cond_latent, torch.stack(speakers).mean(dim=0)

    def _autocast(self) -> Any:
        """Let fp32 tensors meet the fp16 GPT on CUDA (its null position embedding and the
        mel inputs are fp32); a no-op on CPU and when the GPT is fp32."""
        enabled = self.device.type == "cuda" and self.gpt_dtype == torch.float16
        return torch.autocast("cuda", dtype=torch.float16, enabled=enabled)

    def load_voice(self, voice_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """Load a voice's stored latents; raise BadInput when it was not enrolled for XTTS."""
        try:
            meta = json.loads((voice_dir / VOICE_FILE).read_text(encoding="utf-8"))
            stored = torch.load(voice_dir / LATENTS_FILE, map_location="cpu", weights_only=True)
        except (OSError, ValueError) as exc:
            raise BadInput("this voice has no XTTS enrollment; enroll it again") from exc
        if meta.get("model") != self.fingerprint:
            raise BadInput("this voice was enrolled with other XTTS weights; enroll it again")
        cond = stored["gpt_cond_latent"].to(self.device, self.gpt_dtype)
        return cond, stored["speaker_embedding"].to(self.device)

    # --- text -------------------------------------------------------------------------------

    def plan(self, text: str, language: str) -> tuple[str, list[str]]:
        """Normalise and split text into chunks within XTTS's character and token limits."""
        lang = detect_language(text) if language in ("", "auto") else language_code(language)
        clean = normalize(text, lang)
        if not clean or not any(c.isalnum() for c in clean):
            raise BadInput("the text has nothing to say")
        chunks: list[str] = []
        for chunk in split_sentences(clean, lang, CHAR_LIMITS[lang]):
            chunks.extend(self._within_tokens(chunk, lang))
        return lang, chunks

    def _within_tokens(self, chunk: str, lang: str) -> list[str]:
        """Halve a chunk (between words) until its token count fits the GPT's text window."""
        if len(self._tokens(chunk, lang)) < MAX_TEXT_TOKENS or len(chunk) < 2:
            return [chunk]
        halves = split_sentences(chunk, lang, max(1, len(chunk) // 2))
        if len(halves) < 2:
            raise BadInput(f"a word is too long to speak: {chunk[:40]}…")
        return [piece for half in halves for piece in self._within_tokens(half, lang)]

    def _tokens(self, chunk: str, lang: str) -> list[int]:
        """Tokenise as XTTS does (its own cleaners, then BPE)."""
        ids: list[int] = self.model.tokenizer.encode(chunk, lang=lang)
        return ids

    # --- synthesis --------------------------------------------------------------------------

    def synthesize(
        self, text: str, language: str, voice_dir: Path, out_wav: Path, progress: ProgressFn
    ) -> float:
        """Speak `text` in the enrolled voice into a 24 kHz mono 16-bit WAV; return seconds."""
        lang, chunks = self.plan(text, language)
        cond, speaker = self.load_voice(voice_dir)
        rng = np.random.default_rng(len(text))
        pieces: list[np.ndarray] = []
        for index, chunk in enumerate(chunks):
            progress(index / len(chunks), "speak")
            wav = trim_tail(self.speak(chunk, lang, cond, speaker), chunk, lang)
            pieces.extend([wav, pause(pause_after(chunk), rng)])
        progress(1.0, "write")
        return write_wav(out_wav, np.concatenate(pieces[:-1]), rng, SAMPLE_RATE)

    def speak(self, chunk: str, lang: str, cond: torch.Tensor, speaker: torch.Tensor) -> np.ndarray:
        """Generate one chunk: GPT codes (capped by text length), GPT latents, HiFi-GAN audio."""
        gpt = self.model.gpt
        tokens = torch.IntTensor(self._tokens(chunk, lang)).unsqueeze(0).to(self.device)
        with torch.inference_mode(), self._autocast():
            codes = gpt.generate(
                cond_latents=cond,
                text_inputs=tokens,
                do_sample=True,
                max_new_tokens=self._code_budget(chunk, lang),
                **self._sampling(),
            )
            lengths = torch.tensor([codes.shape[-1] * gpt.code_stride_len], device=self.device)
            latents = gpt(
                tokens,
                torch.tensor([tokens.shape[-1]], device=self.device),
                codes,
                lengths,
                cond_latents=cond,
                return_attentions=False,
                return_latent=True,
            )
            with torch.autocast("cuda", enabled=False):  # the vocoder stays fp32
                wav = self.model.hifigan_decoder(latents.float(), g=speaker)
        return np.asarray(wav.squeeze().float().cpu().numpy(), dtype=np.float32)

    def _code_budget(self, chunk: str, lang: str) -> int:
        """Most GPT codes worth generating for this text: the babble guard on the GPU side."""
        ceiling = int(self.model.gpt.max_gen_mel_tokens)
        return max(8, min(ceiling, math.ceil(max_seconds(chunk, lang) * CODES_PER_SECOND)))

    def _sampling(self) -> dict[str, Any]:
        """The release's sampling settings, read from the loaded config."""
        cfg = self.config
        return {
            "temperature": float(cfg.temperature),
            "length_penalty": float(cfg.length_penalty),
            "repetition_penalty": float(cfg.repetition_penalty),
            "top_k": int(cfg.top_k),
            "top_p": float(cfg.top_p),
            "num_beams": 1,
        }

    def stream(
        self, text: str, language: str, voice_dir: Path, chunk_codes: int = 20
    ) -> Iterator[np.ndarray]:
        """Yield float32 24 kHz audio as it is generated, chunk by chunk, pauses included.

        Each chunk is ready after `chunk_codes` GPT steps, so a consumer (the lip-sync stage)
        can start long before the whole text is spoken.
        """
        lang, chunks = self.plan(text, language)
        cond, speaker = self.load_voice(voice_dir)
        rng = np.random.default_rng(len(text))
        for index, chunk in enumerate(chunks):
            yield from self._stream_chunk(chunk, lang, cond, speaker, chunk_codes)
            if index < len(chunks) - 1:
                yield pause(pause_after(chunk), rng)

    def _stream_chunk(
        self, chunk: str, lang: str, cond: torch.Tensor, speaker: torch.Tensor, chunk_codes: int
    ) -> Iterator[np.ndarray]:
        """Stream one text chunk with coqui-tts's generator and its overlap cross-fade."""
        gpt = self.model.gpt
        tokens = torch.IntTensor(self._tokens(chunk, lang)).unsqueeze(0).to(self.device)
        with torch.inference_mode(), self._autocast():
            inputs = gpt.compute_embeddings(cond, tokens)
            generator = gpt.get_generator(
                fake_inputs=inputs,
                do_sample=True,
                num_return_sequences=1,
                max_new_tokens=self._code_budget(chunk, lang),
                output_attentions=False,
                output_hidden_states=True,
                return_dict_in_generate=True,
                **self._sampling(),
            )
            latents: list[torch.Tensor] = []
            pending = 0
            previous = overlap = None
            for done, (_, latent) in with_last(generator):
                latents.append(latent)
                pending += 1
                if not done and pending < chunk_codes:
                    continue
                stacked = torch.cat(latents, dim=0)[None, :].float()
                with torch.autocast("cuda", enabled=False):
                    wav = self.model.hifigan_decoder(stacked, g=speaker).squeeze()
                piece, previous, overlap = self.model.handle_chunks(
                    wav, previous, overlap, 1024, is_final=done
                )
                pending = 0
                out = np.asarray(piece.float().cpu().numpy(), dtype=np.float32)
                yield trim_tail(out, chunk, lang) if done else out
