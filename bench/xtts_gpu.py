"""GPU benchmark: the XTTS engine against coqui-tts's high-level `TTS.api` path, same weights.

The model is the XTTS v2 release architecture (its config.json dimensions, a BPE vocabulary of
the release's 6,681 tokens) with random weights, saved in the release layout and loaded by both
paths. Random weights never emit the stop token, so every sentence is capped at the same number
of GPT codes (CAP_CODES) in both paths: the runs do the same work and stay comparable.

Measured: wall time and real-time factor for 1, 3 and 10 sentences (engine fp16 and fp32,
`TTS.api` with default settings), time to the first streamed chunk, and peak GPU memory.

    PYTHONPATH=. python bench/xtts_gpu.py      # writes bench/results/xtts_<card>.md and .json
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import random
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.text import LANGUAGES
from engines.xtts import XttsEngine, write_random_model
from engines.xtts_audio import COND_RATE, SAMPLE_RATE
from jayavatar.settings import Settings

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


def build_vocab(path: Path) -> int:
    """Train a BPE of the release's size with XTTS's special and language tokens."""
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
    trainer = trainers.BpeTrainer(vocab_size=RELEASE_VOCAB, special_tokens=specials)
    tokenizer.train_from_iterator(corpus * 3, trainer)
    tokenizer.save(str(path))
    return int(tokenizer.get_vocab_size())


def reference_audio(seconds: float = 8.0) -> np.ndarray:
    """A voiced-sounding reference clip (harmonics in syllable bursts) at 22.05 kHz."""
    t = np.arange(int(seconds * COND_RATE)) / COND_RATE
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 560), 1))
    return (0.2 * tone * (np.sin(2 * np.pi * 2.5 * t) > -0.6)).astype(np.float32)


def write_reference(path: Path, audio: np.ndarray) -> Path:
    """Write the reference as 16-bit WAV for the TTS.api path."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(COND_RATE)
        out.writeframes((audio * 32767).astype("<i2").tobytes())
    return path


def timed(run: Callable[[], float]) -> tuple[float, float, float]:
    """Run once on a synchronised GPU; return (wall s, audio s, peak GiB during the run)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    audio_s = run()
    torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return wall, audio_s, torch.cuda.max_memory_allocated() / 2**30


def bench_engine(engine: XttsEngine, voice: Path, work: Path, label: str) -> list[dict[str, Any]]:
    """Synthesise 1, 3 and 10 sentences with the engine; one warm-up first."""
    rows = []
    progress: Callable[[float, str], None] = lambda f, p: None  # noqa: E731
    engine.synthesize(SENTENCES[0], "en", voice, work / "warm.wav", progress)
    for count in (1, 3, 10):
        text = " ".join(SENTENCES[:count])
        wall, audio_s, peak = timed(
            functools.partial(engine.synthesize, text, "en", voice, work / "out.wav", progress)
        )
        rows.append(_row(f"engine {label}", count, wall, audio_s, peak))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_stream(engine: XttsEngine, voice: Path, label: str) -> list[dict[str, Any]]:
    """Time to the first streamed chunk (median of 2 after a warm-up) for two chunk sizes."""
    rows = []
    for chunk_codes in (20, 8):
        firsts, totals = [], []
        for _ in range(3):  # the first run warms this chunk size up
            torch.cuda.synchronize()
            start = time.perf_counter()
            stream = engine.stream(SENTENCES[1], "en", voice, chunk_codes)
            next(stream)
            firsts.append(time.perf_counter() - start)
            for _piece in stream:
                pass
            totals.append(time.perf_counter() - start)
        rows.append(
            {
                "path": f"engine {label} stream",
                "chunk_codes": chunk_codes,
                "first_chunk_ms": round(1000 * float(np.median(firsts[1:])), 1),
                "whole_sentence_s": round(float(np.median(totals[1:])), 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_api(model_dir: Path, reference: Path) -> list[dict[str, Any]]:
    """Synthesise the same texts through coqui-tts's `TTS.api` with default settings."""
    import soundfile
    from TTS.api import TTS
    from TTS.tts.models import xtts as xtts_module

    def load_audio(path: str, rate: int) -> torch.Tensor:
        # torchaudio.load needs FFmpeg libraries the GPU host lacks; same result via soundfile.
        audio, source_rate = soundfile.read(path, dtype="float32", always_2d=True)
        tensor = torch.from_numpy(audio.mean(axis=1)).unsqueeze(0)
        import torchaudio

        resampled: torch.Tensor = torchaudio.functional.resample(tensor, source_rate, rate)
        return resampled.clip(-1, 1)

    xtts_module.load_audio = load_audio
    tts = TTS(model_path=str(model_dir), config_path=str(model_dir / "config.json"))
    tts = tts.to("cuda")

    def run(text: str) -> float:
        wav = tts.tts(
            text=text, speaker_wav=str(reference), language="en", max_new_tokens=CAP_CODES
        )
        return len(wav) / SAMPLE_RATE

    run(SENTENCES[0])
    rows = []
    for count in (1, 3, 10):
        text = " ".join(SENTENCES[:count])
        wall, audio_s, peak = timed(functools.partial(run, text))
        rows.append(_row("TTS.api fp32 (default)", count, wall, audio_s, peak))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _row(path: str, count: int, wall: float, audio_s: float, peak: float) -> dict[str, Any]:
    """One result row."""
    return {
        "path": path,
        "sentences": count,
        "audio_s": round(audio_s, 2),
        "wall_s": round(wall, 3),
        "rtf": round(wall / audio_s, 4) if audio_s else None,
        "peak_gib": round(peak, 2),
    }


def markdown(
    info: dict[str, Any], rows: list[dict[str, Any]], streams: list[dict[str, Any]]
) -> str:
    """Render the results and the speed ratios as a Markdown report."""
    lines = [
        "# XTTS v2 on the GPU: engine vs coqui-tts `TTS.api`",
        "",
        f"Card: {info['card']}; torch {info['torch']}, transformers {info['transformers']}, "
        f"coqui-tts {info['coqui']}.",
        f"Model: release architecture, random weights, {info['params_m']} M parameters, "
        f"vocabulary {info['vocab']} tokens. Every sentence capped at {CAP_CODES} GPT codes "
        "(about 5 s) in both paths. Engine: its own sentence loop, GPT in fp16 (or fp32), "
        "latents stored at enrollment. `TTS.api`: default settings (fp32, recomputes the "
        "voice latents from the reference for every sentence).",
        "",
        "| path | sentences | audio s | wall s | RTF | peak GPU GiB |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['path']} | {r['sentences']} | {r['audio_s']} | {r['wall_s']} | {r['rtf']} | "
        f"{r['peak_gib']} |"
        for r in rows
    ]
    lines += ["", "| streaming | codes per chunk | first chunk ms | whole sentence s |",
              "|---|---|---|---|"]  # fmt: skip
    lines += [
        f"| {s['path']} | {s['chunk_codes']} | {s['first_chunk_ms']} | {s['whole_sentence_s']} |"
        for s in streams
    ]
    lines += [
        "",
        "Speed-up of the engine over `TTS.api` (same text, same code cap, wall time):",
        "",
    ]
    api = {r["sentences"]: r["wall_s"] for r in rows if r["path"].startswith("TTS.api")}
    for label in ("fp16", "fp32"):
        for r in (r for r in rows if r["path"] == f"engine {label}"):
            if r["sentences"] in api:
                ratio = api[r["sentences"]] / r["wall_s"]
                lines.append(f"- engine {label}, {r['sentences']} sentence(s): {ratio:.2f}x")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Build the model, run every measurement, write JSON and Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="Markdown report (default: named after the card)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.mkdtemp(prefix="xtts-bench-")))
    args = parser.parse_args()
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    torch.manual_seed(0)
    work: Path = args.work
    vocab = build_vocab(work / "vocab.json")
    model_dir = write_random_model(work / "models" / "xtts_v2", work / "vocab.json")
    engine = XttsEngine(Settings(models_dir=work / "models", device="cuda"), gpt_half=True)
    info = _info(engine, vocab)
    print(json.dumps(info), flush=True)
    out: Path = args.out or Path(f"bench/results/xtts_{info['card'].split()[-1].lower()}.md")
    cond, speaker = engine.conditioning([reference_audio()])
    engine.store_voice(work / "voice", cond, speaker, {"engine": "xtts", "key": "bench"})
    engine._code_budget = lambda chunk, lang: CAP_CODES  # type: ignore[method-assign]
    rows = bench_engine(engine, work / "voice", work, "fp16")
    streams = bench_stream(engine, work / "voice", "fp16")
    engine.model.gpt.float()
    engine.gpt_dtype = torch.float32
    rows += bench_engine(engine, work / "voice", work, "fp32")
    streams += bench_stream(engine, work / "voice", "fp32")
    del engine
    gc.collect()
    torch.cuda.empty_cache()
    rows += bench_api(model_dir, write_reference(work / "reference.wav", reference_audio()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(info, rows, streams), encoding="utf-8")
    out.with_suffix(".json").write_text(
        json.dumps({"info": info, "rows": rows, "streams": streams}, indent=1), encoding="utf-8"
    )
    print(out.read_text(encoding="utf-8"))


def _info(engine: XttsEngine, vocab: int) -> dict[str, Any]:
    """Describe the card, the libraries and the model."""
    import importlib.metadata as md

    return {
        "card": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": md.version("transformers"),
        "coqui": md.version("coqui-tts"),
        "vocab": vocab,
        "params_m": round(sum(p.numel() for p in engine.model.parameters()) / 1e6, 1),
    }


if __name__ == "__main__":
    main()
