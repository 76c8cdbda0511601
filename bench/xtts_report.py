"""Fixed inputs and the Markdown report of the XTTS GPU benchmark (bench/xtts_gpu.py)."""

from __future__ import annotations

import random
import wave
from pathlib import Path
from typing import Any

import numpy as np

from engines.voice.text import LANGUAGES
from engines.voice.xtts_audio import COND_RATE

CAP_CODES = 108  # about 5 s of speech per sentence (21.5 codes per second)
RELEASE_VOCAB = 6681
SENTENCES = [
    "The morning train left the station a few minutes late.",
    "Passengers read their newspapers while the countryside rolled past the windows.",
    "A conductor walked slowly down the aisle, checking tickets and answering questions.",
    "Near the front, a small child pressed her face against the glass.",
    "She counted the cows in every field and announced each number proudly.",
    "Her father smiled and pretended to be surprised every single time.",
    "When the train crossed the long bridge, the whole carriage went quiet.",
    "The river below was wide and grey and moving faster than anyone expected.",
    "On the far bank, the first houses of the city appeared between the trees.",
    "Everyone began to gather their bags, ready for another ordinary day.",
]
# Spoken once each, after the timed runs: new prompt lengths, as every real request brings.
UNSEEN = [
    "A gull circled above the harbour and landed on a rusty post.",
    "The bakery on the corner sold out of bread before nine o'clock.",
    "Two old friends argued cheerfully about the best way to cook rice.",
    "The library stayed open late on Thursdays during the exam season.",
]


def build_vocab(path: Path, size: int = RELEASE_VOCAB) -> int:
    """Train a BPE (the release's size by default) with XTTS's special and language tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]"] + [
        f"[{'zh-cn' if code == 'zh' else code}]" for code in LANGUAGES
    ]
    rng = random.Random(0)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiouy"] + ["th", "sh", "ch"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(60_000)]
    corpus = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    corpus += [s.lower() for s in SENTENCES]
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=specials)
    tokenizer.train_from_iterator(corpus * 3, trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return int(tokenizer.get_vocab_size())


def reference_audio(seconds: float = 8.0) -> np.ndarray:
    """A voiced-sounding reference clip (harmonics in syllable bursts) at 22.05 kHz."""
    t = np.arange(int(seconds * COND_RATE)) / COND_RATE
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 560), 1))
    return (0.2 * tone * (np.sin(2 * np.pi * 2.5 * t) > -0.6)).astype(np.float32)


def write_reference(path: Path) -> Path:
    """Write the reference as 16-bit WAV for the TTS.api path."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(COND_RATE)
        out.writeframes((reference_audio() * 32767).astype("<i2").tobytes())
    return path


def markdown(result: dict[str, Any]) -> str:
    """Render the results, the speed ratios and the checks as a Markdown report."""
    info, rows, streams = result["info"], result["rows"], result["streams"]
    lines = [
        "# XTTS v2 on the GPU: engine vs coqui-tts `TTS.api`",
        "",
        f"Card: {info['card']}; torch {info['torch']}, transformers {info['transformers']}, "
        f"coqui-tts {info['coqui']}.",
        f"Model: release architecture, random weights, {info['params_m']} M parameters, "
        f"vocabulary {info['vocab']} tokens. Every sentence capped at {info['cap_codes']} GPT "
        "codes (about 5 s) in all paths. Engine (fast path): all sentences of the text in one "
        "batched decode over a static KV cache, each step replayed as a CUDA graph, latents "
        "stored at enrollment, HiFi-GAN in fp32. `per-sentence`: the engine's reference path "
        "(coqui-tts's `generate` one sentence at a time). `TTS.api`: default settings (fp32).",
        "Wall times are warm: each run follows one untimed run of the same text (which, for a "
        "new batch shape, captures the CUDA graph); `cold s` is that first run.",
        "",
        "| path | sentences | audio s | wall s | cold s | RTF | peak GPU GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['path']} | {r['sentences']} | {r['audio_s']} | {r['wall_s']} | "
        f"{r.get('cold_s', '')} | {r['rtf']} | {r['peak_gib']} |"
        for r in rows
    ]
    lines += ["", "| streaming | codes per chunk | first chunk ms | whole sentence s |",
              "|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| {s['path']} | {s['chunk_codes']} | {s['first_chunk_ms']} | {s['whole_sentence_s']} |"
        for s in streams
    ]
    lines += ["", "Texts never spoken before (first synthesis each; new prompt shapes):", "",
              "| path | 1 sentence, 4 texts: wall s | 3 sentences, 2 texts: wall s |",
              "|---|---|---|"]  # fmt: skip
    lines += [
        f"| {u['path']} | {_short(u['one_sentence_s'])} | {_short(u['three_sentences_s'])} |"
        for u in result.get("unseen", [])
    ]
    lines += ["", "Speed-up over `TTS.api` (same text, same code cap, wall time):", ""]
    api = {r["sentences"]: r["wall_s"] for r in rows if r["path"].startswith("TTS.api")}
    lines += [
        f"- {r['path']}, {r['sentences']} sentence(s): {api[r['sentences']] / r['wall_s']:.2f}x"
        for r in rows
        if r["path"].startswith("engine") and r["sentences"] in api
    ]
    lines += ["", "Checks:", ""]
    for name, check in result["checks"].items():
        values = "; ".join(f"{key} {_short(value)}" for key, value in check.items())
        lines.append(f"- {name}: {values}")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    """Numbers rounded for reading; lists kept as lists."""
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
