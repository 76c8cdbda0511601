"""GPU benchmark: the XTTS engine against coqui-tts's high-level `TTS.api` path, same weights.

The model is the XTTS v2 release architecture (its config.json dimensions, a BPE vocabulary of
the release's 6,681 tokens) with random weights, saved in the release layout and loaded by both
paths. Random weights never emit the stop token, so every sentence is capped at the same number
of GPT codes (CAP_CODES) in both paths: the runs do the same work and stay comparable.

Measured for 1, 3 and 10 sentences: wall time, real-time factor and peak GPU memory of
- the engine's fast path (all sentences in one batched decode, CUDA graphs) with the GPT in
  fp32, fp16 and bf16, and in fp32 without graphs;
- the engine's reference path (coqui-tts's `generate`, one sentence at a time; `batch_size=0`);
- `TTS.api` with default settings;
plus the first synthesis of texts never seen before, the time to the first streamed chunk,
and two checks that speed cost nothing: greedy codes of the fast path against coqui-tts's
`generate` on the GPU, and, for half precision, latents and audio against fp32 on the same codes.

    PYTHONPATH=. python bench/xtts_gpu.py --out DIR    # writes DIR/xtts_<card>.md and .json
    PYTHONPATH=. python bench/xtts_gpu.py --smoke      # the tiny test model on the CPU
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.xtts_report import (
    CAP_CODES,
    RELEASE_VOCAB,
    SENTENCES,
    UNSEEN,
    build_vocab,
    markdown,
    reference_audio,
    write_reference,
)
from engines.voice.xtts import XttsEngine
from engines.voice.xtts_audio import SAMPLE_RATE
from engines.voice.xtts_batch import GptDecoder
from jayavatar.settings import Settings
from tests.support.xtts_random import write_random_model

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LABELS = ("fp32", "fp16", "bf16", "fp32 per-sentence", "fp32 no-graphs")
# --smoke: the test suite's tiny model, a small vocabulary and short sentences, on the CPU.
SMOKE_MODEL = {"gpt_layers": 2, "gpt_n_model_channels": 256, "gpt_n_heads": 4,
               "decoder_input_dim": 256, "gpt_max_audio_tokens": 26}  # fmt: skip
SMOKE_VOCAB = 800
SMOKE_CAP = 20


def timed(run: Callable[[], float]) -> tuple[float, float, float]:
    """Run once on a synchronised GPU; return (wall s, audio s, peak GiB during the run)."""
    gpu = torch.cuda.is_available()
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    audio_s = run()
    if gpu:
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return wall, audio_s, torch.cuda.max_memory_allocated() / 2**30 if gpu else 0.0


def sync() -> None:
    """Wait for the GPU, if there is one."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def tokens_of(engine: XttsEngine, chunk: str, lang: str) -> torch.Tensor:
    """A chunk's text tokens as coqui-tts's `generate` takes them: (1, n) int32."""
    return torch.tensor(engine._tokens(chunk, lang), dtype=torch.int32, device=engine.device)[None]


def configure(engine: XttsEngine, master: dict[str, torch.Tensor], label: str) -> None:
    """Set the engine's GPT precision from the fp32 master weights, and its decode path."""
    precision, _, mode = label.partition(" ")
    dtype = PRECISIONS[precision]
    gpt = engine.model.gpt
    gpt.float()
    gpt.load_state_dict(master)
    gpt.to(dtype)
    engine.gpt_dtype = dtype
    engine.batch_size = 0 if mode == "per-sentence" else 16
    engine.decoder = GptDecoder(gpt, engine.device, graphs=mode != "no-graphs")
    if mode == "pytorch-attention":  # let PyTorch pick the attention kernels itself
        engine.decoder.attention = None


def bench_engine(engine: XttsEngine, voice: Path, work: Path, label: str) -> list[dict[str, Any]]:
    """Synthesise 1, 3 and 10 sentences with the engine, each timed cold, then warm."""
    rows = []
    progress: Callable[[float, str], None] = lambda f, p: None  # noqa: E731
    if engine.batch_size == 0:  # the reference path: one warm-up is enough, it has no shapes
        engine.synthesize(SENTENCES[0], "en", voice, work / "warm.wav", progress)
    for count in (1, 3, 10):
        text = " ".join(SENTENCES[:count])
        run = functools.partial(engine.synthesize, text, "en", voice, work / "out.wav", progress)
        cold = timed(run)[0] if engine.batch_size else None
        wall, audio_s, peak = timed(run)
        rows.append(_row(f"engine {label}", count, wall, audio_s, peak))
        rows[-1]["cold_s"] = round(cold, 3) if cold is not None else ""
        print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_unseen(engine: XttsEngine, voice: Path, work: Path, label: str) -> dict[str, Any]:
    """First synthesis of texts never spoken before: each prompt is a new shape, as in use."""
    progress: Callable[[float, str], None] = lambda f, p: None  # noqa: E731
    texts = [*UNSEEN, " ".join(UNSEEN[:3]), " ".join(UNSEEN[1:])]
    walls = []
    for text in texts:
        run = functools.partial(engine.synthesize, text, "en", voice, work / "new.wav", progress)
        walls.append(round(timed(run)[0], 3))
    row = {"path": f"engine {label}", "one_sentence_s": walls[:4], "three_sentences_s": walls[4:]}
    print(json.dumps(row), flush=True)
    return row


def split_times(engine: XttsEngine, voice: Path) -> dict[str, Any]:
    """Where the fast path's time goes for 10 sentences: the batched decode, then HiFi-GAN."""
    lang, chunks = engine.plan(" ".join(SENTENCES), "en")
    cond, speaker = engine.load_voice(voice)
    sync()
    start = time.perf_counter()
    run = engine._decode(chunks, lang, cond).finish()
    sync()
    decoded = time.perf_counter()
    for row in range(len(chunks)):
        engine._vocode(run.row_latents(row), speaker)
    sync()
    end = time.perf_counter()
    return {"decode_s": decoded - start, "vocode_s": end - decoded, "steps": run.steps}


def bench_stream(engine: XttsEngine, voice: Path, label: str) -> list[dict[str, Any]]:
    """Time to the first streamed chunk (median of 2 after a warm-up) for two chunk sizes."""
    rows = []
    for chunk_codes in (20, 8):
        firsts, totals = [], []
        for _ in range(3):  # the first run warms this chunk size up
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


def greedy_check(engine: XttsEngine, voice: Path) -> dict[str, Any]:
    """Greedy codes of one batched decode (3 rows) against coqui-tts's `generate` per row.

    Returns, per sentence, how many leading codes agree, and the latents' relative error
    against coqui-tts's second GPT pass over the same codes.
    """
    engine.sampling = replace(engine.sampling, greedy=True)
    lang, chunks = engine.plan(" ".join(SENTENCES[:3]), "en")
    cond, _ = engine.load_voice(voice)
    run = engine._decode(chunks, lang, cond).finish()
    out: dict[str, Any] = {"agreeing_codes": [], "codes": [], "latent_rel_err": []}
    for row, chunk in enumerate(chunks):
        tokens = tokens_of(engine, chunk, lang)
        cap = engine._code_budget(chunk, lang)
        with torch.inference_mode():
            expected = engine.model.gpt.generate(
                cond, tokens, max_new_tokens=cap, **engine.sampling.generate_kwargs()
            )[0]
        mine = run.row_codes(row)
        agree = int((mine == expected[: len(mine)]).int().cumprod(0).sum())
        out["agreeing_codes"].append(agree)
        out["codes"].append(len(expected))
        latents = teacher_forced(engine, tokens, expected, cond)
        error = (run.row_latents(row)[:agree].float() - latents[:agree]).norm() / latents[
            :agree
        ].norm()
        out["latent_rel_err"].append(float(error))
    engine.sampling = replace(engine.sampling, greedy=False)
    return out


def teacher_forced(
    engine: XttsEngine, tokens: torch.Tensor, codes: torch.Tensor, cond: torch.Tensor
) -> torch.Tensor:
    """coqui-tts's latents for given codes (its second GPT pass), in the engine's precision."""
    gpt = engine.model.gpt
    with torch.inference_mode(), engine._autocast():
        latents = gpt(
            tokens,
            torch.tensor([tokens.shape[-1]], device=engine.device),
            codes[None],
            torch.tensor([len(codes) * gpt.code_stride_len], device=engine.device),
            cond_latents=cond,
            return_attentions=False,
            return_latent=True,
        )
    latent: torch.Tensor = latents[0].float()
    return latent


def precision_check(
    engine: XttsEngine, voice: Path, codes: list[torch.Tensor], reference: list[Any]
) -> dict[str, Any]:
    """The GPT in this precision against fp32 on the same codes: latents, codes, audio SNR."""
    lang, chunks = engine.plan(" ".join(SENTENCES[:3]), "en")
    cond, speaker = engine.load_voice(voice)
    errors, agreement, snrs = [], [], []
    for row, chunk in enumerate(chunks):
        tokens = tokens_of(engine, chunk, lang)
        latents = teacher_forced(engine, tokens, codes[row], cond)
        ref_latents, ref_audio = reference[row]
        errors.append(float((latents - ref_latents).norm() / ref_latents.norm()))
        head = engine.model.gpt.mel_head.float()
        with torch.inference_mode():
            same = head(latents).argmax(-1) == head(ref_latents).argmax(-1)
        engine.model.gpt.mel_head.to(engine.gpt_dtype)
        agreement.append(float(same.float().mean()))
        audio = engine._vocode(latents, speaker)
        noise = np.sum((audio - ref_audio) ** 2) + 1e-20
        snrs.append(float(10 * np.log10(np.sum(ref_audio**2) / noise)))
    return {"latent_rel_err": errors, "next_code_agreement": agreement, "audio_snr_db": snrs}


def fp32_reference(engine: XttsEngine, voice: Path) -> tuple[list[torch.Tensor], list[Any]]:
    """Sampled codes for 3 sentences and their fp32 latents and audio, for precision checks."""
    lang, chunks = engine.plan(" ".join(SENTENCES[:3]), "en")
    cond, speaker = engine.load_voice(voice)
    run = engine._decode(chunks, lang, cond).finish()
    codes, reference = [], []
    for row, chunk in enumerate(chunks):
        tokens = tokens_of(engine, chunk, lang)
        codes.append(run.row_codes(row).clone())
        latents = teacher_forced(engine, tokens, codes[-1], cond)
        reference.append((latents, engine._vocode(latents, speaker)))
    return codes, reference


def bench_api(model_dir: Path, reference: Path, device: str, cap: int) -> list[dict[str, Any]]:
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
    tts = tts.to(device)

    def run(text: str) -> float:
        wav = tts.tts(text=text, speaker_wav=str(reference), language="en", max_new_tokens=cap)
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


def main() -> None:
    """Build the model, run every measurement, write JSON and Markdown as results arrive."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="report folder")
    parser.add_argument("--work", type=Path, default=Path(tempfile.mkdtemp(prefix="xtts-bench-")))
    parser.add_argument(
        "--smoke", action="store_true", help="tiny model on the CPU: checks the script"
    )
    parser.add_argument("--labels", default=",".join(LABELS), help="engine setups to measure")
    parser.add_argument("--no-api", action="store_true", help="skip the TTS.api baseline")
    parser.add_argument("--name", help="report name (default: xtts_<card>)")
    args = parser.parse_args()
    device = "cpu" if args.smoke else "cuda"
    assert args.smoke or torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    cap = SMOKE_CAP if args.smoke else CAP_CODES
    torch.manual_seed(0)
    work: Path = args.work
    vocab = build_vocab(work / "vocab.json", SMOKE_VOCAB if args.smoke else RELEASE_VOCAB)
    tiny = SMOKE_MODEL if args.smoke else {}
    model_dir = write_random_model(work / "models" / "xtts_v2", work / "vocab.json", **tiny)
    # The baseline first, alone on the card, so a cut-short run still has what it compares to.
    api_rows = (
        []
        if args.no_api
        else bench_api(model_dir, write_reference(work / "reference.wav"), device, cap)
    )
    gc.collect()  # coqui-tts's model holds reference cycles; free its GPU memory now
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    engine = XttsEngine(Settings(models_dir=work / "models", device=device))
    engine._code_budget = lambda chunk, lang: cap  # type: ignore[method-assign]
    master = {k: v.detach().cpu().clone() for k, v in engine.model.gpt.state_dict().items()}
    info = _info(engine, vocab, cap)
    result: dict[str, Any] = {"info": info, "rows": api_rows, "streams": [], "unseen": []}
    card = re.search(r"[A-Z]\d{3}", info["card"])
    out: Path = (
        args.out / f"{args.name or 'xtts_' + (card.group(0).lower() if card else device)}.md"
    )
    cond, speaker = engine.conditioning([reference_audio()])
    voice = work / "voice"
    engine.store_voice(voice, cond, speaker, {"engine": "xtts", "key": "bench"})

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(result, indent=1), encoding="utf-8")
        out.write_text(markdown(result), encoding="utf-8")

    configure(engine, master, "fp32")
    result["checks"] = {"greedy fp32 vs coqui generate": greedy_check(engine, voice)}
    codes, reference = fp32_reference(engine, voice)
    print(json.dumps(result["checks"]), flush=True)
    for label in args.labels.split(","):
        if args.smoke and not label.startswith("fp32"):
            continue  # coqui-tts's own GPT pass needs CUDA autocast for half precision
        configure(engine, master, label)
        if label in ("fp16", "bf16"):
            check = precision_check(engine, voice, codes, reference)
            result["checks"][f"{label} vs fp32, same codes"] = check
            print(json.dumps(check), flush=True)
        result["rows"] += bench_engine(engine, voice, work, label)
        result["unseen"].append(bench_unseen(engine, voice, work, label))
        result["info"].setdefault("graphs", {})[label] = engine.decoder.graphs
        if engine.batch_size:
            result["checks"][f"{label} time split, 10 sentences"] = split_times(engine, voice)
        if label != "fp32 no-graphs":
            result["streams"] += bench_stream(engine, voice, label)
        save()
    print(out.read_text(encoding="utf-8"))


def _info(engine: XttsEngine, vocab: int, cap: int) -> dict[str, Any]:
    """Describe the card, the libraries and the model."""
    import importlib.metadata as md

    gpu = torch.cuda.is_available() and engine.device.type == "cuda"
    return {
        "card": torch.cuda.get_device_name(0) if gpu else "CPU (smoke run)",
        "torch": torch.__version__,
        "transformers": md.version("transformers"),
        "coqui": md.version("coqui-tts"),
        "vocab": vocab,
        "params_m": round(sum(p.numel() for p in engine.model.parameters()) / 1e6, 1),
        "cap_codes": cap,
    }


if __name__ == "__main__":
    main()
