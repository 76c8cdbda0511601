"""Voice engine "xtts": the user's own voice, cloned by Coqui XTTS v2 through coqui-tts.

The official model folder (`models_dir/xtts_v2`: config.json, model.pth, vocab.json) is loaded
once per worker with coqui-tts's own classes, under `inference_mode`. Enrollment stores the
voice's conditioning latents, so synthesis never touches the reference audio again.

Synthesis decodes all sentences of a request together (`engines.voice.xtts_batch`: one batch, a
static KV cache, CUDA graphs on the GPU), then vocodes each sentence. `batch_size=0` selects
coqui-tts's own per-sentence `generate`, the reference the fast path is tested against. On CUDA
the GPT can run in fp16 or bf16; the small HiFi-GAN vocoder, whose output is what people hear,
always stays in fp32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines import models as registry
from engines.base import ProgressFn
from engines.voice.text import (
    CHAR_LIMITS,
    detect_language,
    language_code,
    normalize,
    split_sentences,
)
from engines.voice.xtts_audio import (
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
from engines.voice.xtts_batch import DecodeRun, GptDecoder, Sampling
from engines.voice.xtts_model import gpt_dtype, load_model, model_fingerprint, pick_device
from jayavatar.errors import BadInput
from jayavatar.settings import Settings

log = logging.getLogger(__name__)

CODES_PER_SECOND = COND_RATE / 1024  # one GPT audio code per 1024 input samples
MAX_TEXT_TOKENS = 400  # the GPT asserts text tokens < gpt_max_text_tokens (402)
LATENTS_FILE = "xtts_latents.pt"
VOICE_FILE = "xtts_voice.json"
REFERENCE_FILE = "xtts_reference.wav"
MIN_SPEECH_S = 3.0


class XttsEngine:
    """XTTS v2 voice cloning: enroll once per voice, then speak any text in it."""

    name = "xtts"

    def __init__(
        self,
        settings: Settings,
        gpt_precision: str | None = None,
        batch_size: int | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        """Load the model once for this worker; raise ModelMissing if the files are not usable.

        `gpt_precision` ("float32", "float16", "bfloat16") applies to the GPT on CUDA only;
        fp32 keeps coqui-tts's exact codes, fp16 was faster still on an H200 with audio 74 dB
        from fp32's on the same codes (bench/results/xtts_h200.md). `batch_size` is the most
        sentences decoded together; 0 uses coqui-tts's per-sentence `generate` instead. Both
        default to the settings' `xtts_precision` and `xtts_batch`.
        `cuda_graphs` replays each decode step as one CUDA graph.
        """
        self.settings = settings
        self.model_dir = registry.require(settings.models_dir, "xtts_v2")
        self.device = pick_device(settings.device)
        self.gpt_dtype = gpt_dtype(gpt_precision or settings.xtts_precision, self.device)
        self.model = load_model(self.model_dir, self.device, self.gpt_dtype)
        self.fingerprint = model_fingerprint(self.model_dir)
        self.config = self.model.config
        self.batch_size = settings.xtts_batch if batch_size is None else batch_size
        self.sampling = Sampling.from_config(self.config)
        self.decoder = GptDecoder(self.model.gpt, self.device, graphs=cuda_graphs)

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
        """Let fp32 tensors meet a half-precision GPT on CUDA (its null position embedding and
        the mel inputs are fp32); a no-op on CPU and when the GPT is fp32."""
        enabled = self.device.type == "cuda" and self.gpt_dtype != torch.float32
        return torch.autocast("cuda", dtype=self.gpt_dtype, enabled=enabled)

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
        spoken = self._speak_all(chunks, lang, cond, speaker, progress)
        for chunk, wav in zip(chunks, spoken, strict=True):
            pieces.extend([trim_tail(wav, chunk, lang), pause(pause_after(chunk), rng)])
        progress(1.0, "write")
        return write_wav(out_wav, np.concatenate(pieces[:-1]), rng, SAMPLE_RATE)

    def _speak_all(
        self,
        chunks: list[str],
        lang: str,
        cond: torch.Tensor,
        speaker: torch.Tensor,
        progress: ProgressFn,
    ) -> Iterator[np.ndarray]:
        """Audio of each chunk in order: in batches, or one by one on the reference path."""
        step = self.batch_size if self.batch_size > 0 else 1
        for start in range(0, len(chunks), step):
            progress(start / len(chunks), "speak")
            if self.batch_size > 0:
                yield from self.speak_batch(chunks[start : start + step], lang, cond, speaker)
            else:
                yield self.speak(chunks[start], lang, cond, speaker)

    def speak_batch(
        self, chunks: list[str], lang: str, cond: torch.Tensor, speaker: torch.Tensor
    ) -> list[np.ndarray]:
        """Generate several chunks in one batched GPT decode, then vocode each chunk."""
        run = self._decode(chunks, lang, cond).finish()
        return [self._vocode(run.row_latents(row), speaker) for row in range(len(chunks))]

    def _decode(self, chunks: list[str], lang: str, cond: torch.Tensor) -> DecodeRun:
        """Start the batched decode of `chunks`, each capped by its own code budget."""
        texts = [torch.tensor(self._tokens(chunk, lang), dtype=torch.long) for chunk in chunks]
        budgets = [self._code_budget(chunk, lang) for chunk in chunks]
        return self.decoder.start(cond, texts, budgets, self.sampling)

    def _vocode(self, latents: torch.Tensor, speaker: torch.Tensor) -> np.ndarray:
        """One chunk's audio as float32 samples on the CPU."""
        return np.asarray(self._wav(latents, speaker).float().cpu().numpy(), dtype=np.float32)

    def _wav(self, latents: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """HiFi-GAN audio (fp32 always) from one chunk's GPT latents, shape (codes, width)."""
        with torch.inference_mode(), torch.autocast("cuda", enabled=False):
            wav: torch.Tensor = self.model.hifigan_decoder(latents[None].float(), g=speaker)
        return wav.squeeze()

    def speak(self, chunk: str, lang: str, cond: torch.Tensor, speaker: torch.Tensor) -> np.ndarray:
        """The reference path for one chunk: coqui-tts's `generate`, a second GPT pass for
        the latents, then HiFi-GAN, as coqui-tts's own `inference` does."""
        gpt = self.model.gpt
        tokens = torch.IntTensor(self._tokens(chunk, lang)).unsqueeze(0).to(self.device)
        with torch.inference_mode(), self._autocast():
            codes = gpt.generate(
                cond_latents=cond,
                text_inputs=tokens,
                max_new_tokens=self._code_budget(chunk, lang),
                **self.sampling.generate_kwargs(),
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
        return self._vocode(latents[0], speaker)

    def _code_budget(self, chunk: str, lang: str) -> int:
        """Most GPT codes worth generating for this text: the babble guard on the GPU side."""
        ceiling = int(self.model.gpt.max_gen_mel_tokens)
        return max(8, min(ceiling, math.ceil(max_seconds(chunk, lang) * CODES_PER_SECOND)))

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
            if self.batch_size > 0:
                yield from self._stream_fast(chunk, lang, cond, speaker, chunk_codes)
            else:
                yield from self._stream_chunk(chunk, lang, cond, speaker, chunk_codes)
            if index < len(chunks) - 1:
                yield pause(pause_after(chunk), rng)

    def _stream_fast(
        self, chunk: str, lang: str, cond: torch.Tensor, speaker: torch.Tensor, chunk_codes: int
    ) -> Iterator[np.ndarray]:
        """Stream one text chunk from the fast decoder, `chunk_codes` codes at a time."""
        run = self._decode([chunk], lang, cond)
        fade = CrossFade(self.model)
        done = False
        while not done:
            done = run.advance(chunk_codes)
            latents = run.row_latents(0) if done else run.latents[0, : run.steps]
            piece = fade.next(self._wav(latents, speaker), done)
            yield trim_tail(piece, chunk, lang) if done else piece

    def _stream_chunk(
        self, chunk: str, lang: str, cond: torch.Tensor, speaker: torch.Tensor, chunk_codes: int
    ) -> Iterator[np.ndarray]:
        """Stream one text chunk with coqui-tts's own generator (the reference path)."""
        gpt = self.model.gpt
        tokens = torch.IntTensor(self._tokens(chunk, lang)).unsqueeze(0).to(self.device)
        fade = CrossFade(self.model)
        with torch.inference_mode(), self._autocast():
            inputs = gpt.compute_embeddings(cond, tokens)
            generator = gpt.get_generator(
                fake_inputs=inputs,
                num_return_sequences=1,
                max_new_tokens=self._code_budget(chunk, lang),
                output_attentions=False,
                output_hidden_states=True,
                return_dict_in_generate=True,
                **self.sampling.generate_kwargs(),
            )
            latents: list[torch.Tensor] = []
            for done, (_, latent) in with_last(generator):
                latents.append(latent)
                if not done and len(latents) % chunk_codes:
                    continue
                piece = fade.next(self._wav(torch.cat(latents, dim=0), speaker), done)
                yield trim_tail(piece, chunk, lang) if done else piece


class CrossFade:
    """coqui-tts's streaming joint: each re-decoded chunk continues the audio already sent,
    cross-faded over 1024 samples, so chunk edges never click."""

    def __init__(self, model: Any) -> None:
        """Start a new stream for `model` (a loaded Xtts)."""
        self.model = model
        self.previous: torch.Tensor | None = None
        self.overlap: torch.Tensor | None = None

    def next(self, wav: torch.Tensor, final: bool) -> np.ndarray:
        """The new audio in `wav` (all audio of the sentence so far) as float32 samples."""
        with torch.inference_mode():  # the cross-fade writes into the inference-mode audio
            piece, self.previous, self.overlap = self.model.handle_chunks(
                wav, self.previous, self.overlap, 1024, is_final=final
            )
        return np.asarray(piece.float().cpu().numpy(), dtype=np.float32)
