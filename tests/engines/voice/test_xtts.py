"""The XTTS engine on a tiny random-weight XTTS v2 of the release architecture.

The tests train a BPE vocabulary with XTTS's special tokens, save a shrunken model (2 GPT
layers, 256 wide; full HiFi-GAN and speaker encoder) in the release's file layout, and load it
through the same code path as real weights. The audio is noise; format, lengths, caching and
streaming are what is checked.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import wave
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from engines.voice.text import CHAR_LIMITS, LANGUAGES
from engines.voice.xtts import MAX_TEXT_TOKENS, XttsEngine
from engines.voice.xtts_audio import (
    COND_RATE,
    SAMPLE_RATE,
    clean_reference,
    decode_audio,
    max_seconds,
    trim_tail,
)
from engines.voice.xtts_model import coqui, load_model, verify_folder
from jayavatar.errors import BadInput, ModelMissing
from jayavatar.settings import Settings
from tests.support.xtts_random import write_random_model

pytestmark = pytest.mark.env("xtts")

SPECIALS = ["[STOP]", "[UNK]", "[SPACE]", "[START]"] + [
    f"[{'zh-cn' if code == 'zh' else code}]" for code in LANGUAGES
]
# What XTTS's cleaners hand the tokenizer: lower-case text, romanised zh/ja/ko.
CORPUS = [
    "hello world, this is a small test of the voice engine.",
    "der zug fährt heute später ab, weil ein stellwerk gestört ist.",
    "le marché ouvre à sept heures et les marchands arrivent.",
    "утром пошёл сильный дождь, и мы долго ждали автобус.",
    "ni3 hao3 jin1 tian1 tian1 qi4 hen3 hao3. konnichiha, genki desu ka?",
    "abcdefghijklmnopqrstuvwxyz 0123456789 áàâäéèêëíìîïóòôöúùûüçñß",
]


def voice_like(seconds: float, rate: int = COND_RATE, seed: int = 0) -> np.ndarray:
    """A harmonic tone in syllable-like bursts with quiet gaps: speech enough for the trimmer."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 560), 1))
    bursts = (np.sin(2 * np.pi * 2.5 * t) > -0.6).astype(np.float64)
    return (0.2 * tone * bursts + rng.normal(0, 1e-3, len(t))).astype(np.float32)


def write_pcm(path: Path, audio: np.ndarray, rate: int) -> Path:
    """Write mono 16-bit WAV."""
    soundfile.write(path, audio, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A module-wide folder: tiny model under models/xtts_v2, reference clips beside it."""
    root = tmp_path_factory.mktemp("xtts")
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS)
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    tokenizer.save(str(root / "vocab.json"))
    # The same random model every run: whether its greedy codes hit the stop token early
    # depends on the draw.
    torch.manual_seed(0)
    write_random_model(
        root / "models" / "xtts_v2",
        root / "vocab.json",
        gpt_layers=2,
        gpt_n_model_channels=256,
        gpt_n_heads=4,
        decoder_input_dim=256,
        gpt_max_audio_tokens=26,  # at most 23 codes (about 1 s) per sentence: CPU-quick
    )
    write_pcm(root / "reference.wav", voice_like(9.0), COND_RATE)
    return root


@pytest.fixture(scope="module")
def engine(workdir: Path) -> XttsEngine:
    """The engine, built from settings as a worker builds it."""
    torch.manual_seed(0)
    return XttsEngine(Settings(models_dir=workdir / "models", device="cpu"))


@pytest.fixture(scope="module")
def voice(engine: XttsEngine, workdir: Path) -> Path:
    """A voice enrolled once for the synthesis tests."""
    engine.enroll(workdir / "reference.wav", workdir / "voice")
    return workdir / "voice"


def count_calls(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[int]:
    """Wrap `target.name` so each call is counted in the returned list."""
    calls: list[int] = []
    original: Callable[..., Any] = getattr(target, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, counted)
    return calls


def read_wav(path: Path) -> tuple[wave._wave_params, np.ndarray]:
    """Read a WAV's header and 16-bit samples."""
    with wave.open(str(path), "rb") as wav:
        params = wav.getparams()
        samples = np.frombuffer(wav.readframes(params.nframes), dtype="<i2")
    return params, samples


def longest_zero_run(samples: np.ndarray) -> int:
    """Length of the longest run of exact zeros."""
    zero = np.concatenate([[0], (samples == 0).astype(np.int8), [0]])
    edges = np.diff(zero)
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    return int((ends - starts).max()) if len(starts) else 0


def test_enroll_computes_latents_once(
    engine: XttsEngine, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First enrollment runs both encoders and stores the latents; the second is a skip."""
    gpt_calls = count_calls(monkeypatch, engine.model, "get_gpt_cond_latents")
    speaker_calls = count_calls(monkeypatch, engine.model, "get_speaker_embedding")
    out = workdir / "voice-once"
    first = engine.enroll(workdir / "reference.wav", out)
    assert (len(gpt_calls), len(speaker_calls)) == (1, 1)
    stored = torch.load(out / "xtts_latents.pt", weights_only=True)
    assert stored["gpt_cond_latent"].shape == (1, 32, 256)  # 32 perceiver latents x GPT width
    assert stored["speaker_embedding"].shape == (1, 512, 1)
    assert 3.0 <= first["speech_s"] <= 9.0 and "cached" not in first
    second = engine.enroll(workdir / "reference.wav", out)
    assert (len(gpt_calls), len(speaker_calls)) == (1, 1)
    assert second["cached"] is True and second["key"] == first["key"]


def test_enroll_from_several_clips_in_any_format(engine: XttsEngine, workdir: Path) -> None:
    """A folder of clips (48 kHz stereo FLAC, WAV) is one voice; each feeds the speaker mean."""
    clips = workdir / "clips"
    clips.mkdir()
    stereo = np.stack([voice_like(4.0, 48_000, 1), voice_like(4.0, 48_000, 2)], axis=1)
    soundfile.write(clips / "a.flac", stereo, 48_000)
    write_pcm(clips / "b.wav", voice_like(3.0, 16_000, 3), 16_000)
    meta = engine.enroll(clips, workdir / "voice-clips")
    assert meta["clips"] == 2 and meta["speech_s"] >= 3.0


def test_enroll_rejects_unusable_samples(engine: XttsEngine, workdir: Path) -> None:
    """Too little speech, silence and non-audio are refused with a clear BadInput."""
    short = write_pcm(workdir / "short.wav", voice_like(2.0), COND_RATE)
    silent = write_pcm(workdir / "silent.wav", np.zeros(COND_RATE * 8, np.float32), COND_RATE)
    text = workdir / "notes.wav"
    text.write_text("not audio at all", encoding="utf-8")
    with pytest.raises(BadInput, match="of speech found"):
        engine.enroll(short, workdir / "v-short")
    with pytest.raises(BadInput, match=r"0\.0 s of speech"):
        engine.enroll(silent, workdir / "v-silent")
    with pytest.raises(BadInput, match="not a readable audio file"):
        engine.enroll(text, workdir / "v-text")


def test_synthesize_writes_bounded_24k_wav_without_recomputing_latents(
    engine: XttsEngine, voice: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Synthesis reads the stored latents only and writes mono 16-bit 24 kHz, never silent."""
    gpt_calls = count_calls(monkeypatch, engine.model, "get_gpt_cond_latents")
    speaker_calls = count_calls(monkeypatch, engine.model, "get_speaker_embedding")
    reports: list[tuple[float, str]] = []
    text = "Hello world. A test!"
    seconds = engine.synthesize(
        text, "en", voice, workdir / "out.wav", lambda f, p: reports.append((f, p))
    )
    assert gpt_calls == [] and speaker_calls == []
    params, samples = read_wav(workdir / "out.wav")
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, SAMPLE_RATE)
    assert seconds == pytest.approx(params.nframes / SAMPLE_RATE)
    _, chunks = engine.plan(text, "en")
    bound = sum(max_seconds(c, "en") for c in chunks) + 0.3 * len(chunks)
    assert 0.5 < seconds <= bound
    assert longest_zero_run(samples) < 24  # no millisecond of exact digital silence
    assert np.std(samples) > 10
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


@pytest.mark.parametrize("batch_size", [16, 0], ids=["fast", "reference"])
def test_stream_yields_audio_before_generation_ends(
    engine: XttsEngine, voice: Path, monkeypatch: pytest.MonkeyPatch, batch_size: int
) -> None:
    """The first chunk comes after `chunk_codes` GPT steps, long before the last step."""
    monkeypatch.setattr(engine, "batch_size", batch_size)
    if batch_size:  # the fast decoder: the prompt pass picks the first code, each step one more
        steps = count_calls(monkeypatch, engine.decoder, "_step")
    else:  # coqui-tts's generator: one forward for the prompt, then one per code
        steps = count_calls(monkeypatch, engine.model.gpt.gpt_inference, "forward")
    stream: Iterator[np.ndarray] = engine.stream("Hi there.", "en", voice, 8)
    first = next(stream)
    steps_at_first = len(steps)
    rest = list(stream)
    assert 7 <= steps_at_first <= 8 + 1  # eight codes, give or take the prompt pass
    assert len(steps) > steps_at_first + 8  # random weights run to the 23-code cap
    assert len(rest) >= 2
    audio = np.concatenate([first, *rest])
    assert audio.dtype == np.float32 and np.all(np.isfinite(audio))
    assert 0.3 < len(audio) / SAMPLE_RATE <= max_seconds("Hi there.", "en") + 0.05


def test_batched_synthesis_equals_the_reference_path(
    engine: XttsEngine, voice: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Greedy codes: one batched decode of three sentences writes coqui-tts's own audio."""
    monkeypatch.setattr(engine, "sampling", replace(engine.sampling, greedy=True))
    text = "Hello world. This is a rather longer second sentence, with a clause. Bye!"
    _, chunks = engine.plan(text, "en")
    assert len(chunks) == 3
    prefills = count_calls(monkeypatch, engine.decoder, "_prefill")
    steps = count_calls(monkeypatch, engine.decoder, "_step")
    engine.synthesize(text, "en", voice, workdir / "batched.wav", lambda f, p: None)
    budget = max(engine._code_budget(chunk, "en") for chunk in chunks)
    assert len(prefills) == 1 and len(steps) == budget - 1  # all three rows in one decode
    monkeypatch.setattr(engine, "batch_size", 0)
    engine.synthesize(text, "en", voice, workdir / "reference.wav", lambda f, p: None)
    assert len(prefills) == 1  # the reference path does not use the fast decoder
    _, batched = read_wav(workdir / "batched.wav")
    _, expected = read_wav(workdir / "reference.wav")
    assert len(batched) == len(expected)
    difference = np.abs(batched.astype(np.int32) - expected.astype(np.int32))
    assert int(difference.max()) <= 4  # same codes; latents differ only by float rounding
    assert np.std(expected) > 10


def test_long_multilingual_text_is_planned_within_limits(engine: XttsEngine) -> None:
    """Chunks fit the character and 400-token limits; auto-detection picks the language."""
    text = (
        "Der Zug nach München fährt heute später ab, weil ein Stellwerk gestört ist. " * 12
    ).strip()
    lang, chunks = engine.plan(text, "auto")
    assert lang == "de" and len(chunks) >= 12
    for chunk in chunks:
        assert len(chunk) <= CHAR_LIMITS["de"]
        assert len(engine.model.tokenizer.encode(chunk, lang="de")) < MAX_TEXT_TOKENS
    for language, sample in (("ja", "今朝は大雨が降りました。" * 10), ("zh", "今天下雨了。" * 20)):
        _, pieces = engine.plan(sample, language)
        assert all(len(p) <= CHAR_LIMITS[language] for p in pieces)
        assert "".join(pieces) == sample


def test_text_without_words_and_unknown_language_are_refused(
    engine: XttsEngine, voice: Path, workdir: Path
) -> None:
    """Nothing speakable, or a language XTTS lacks, is a BadInput before any generation."""
    with pytest.raises(BadInput, match="nothing to say"):
        engine.synthesize("👍 ...", "en", voice, workdir / "x.wav", lambda f, p: None)
    with pytest.raises(BadInput, match="not supported"):
        engine.synthesize("Hei maailma.", "fi", voice, workdir / "x.wav", lambda f, p: None)


def test_voice_without_enrollment_is_refused(engine: XttsEngine, workdir: Path) -> None:
    """A voice folder with no XTTS latents asks for a new enrollment."""
    (workdir / "empty-voice").mkdir()
    with pytest.raises(BadInput, match="enroll it again"):
        engine.synthesize("Hello.", "en", workdir / "empty-voice", workdir / "y.wav", print)


def test_missing_and_corrupt_weights_name_the_file_and_fix(workdir: Path, tmp_path: Path) -> None:
    """Absent files and a truncated model.pth raise ModelMissing with the file and the command."""
    with pytest.raises(ModelMissing, match=r"xtts_v2/config\.json is missing.*models pull xtts_v2"):
        XttsEngine(Settings(models_dir=tmp_path / "none", device="cpu"))
    broken = tmp_path / "models" / "xtts_v2"
    broken.mkdir(parents=True)
    for name in ("config.json", "vocab.json"):
        shutil.copy(workdir / "models" / "xtts_v2" / name, broken / name)
    (broken / "model.pth").write_bytes((workdir / "models/xtts_v2/model.pth").read_bytes()[:4096])
    with pytest.raises(ModelMissing, match=r"xtts_v2/model\.pth could not be loaded"):
        XttsEngine(Settings(models_dir=tmp_path / "models", device="cpu"))


def test_the_mapped_load_holds_what_coqui_tts_loads(workdir: Path) -> None:
    """Parameters taken from the mapped file equal coqui-tts's own build, copy and load."""
    model_dir = workdir / "models" / "xtts_v2"
    ours = load_model(model_dir, torch.device("cpu"))
    lib = coqui()
    config = lib.XttsConfig()
    config.load_json(str(model_dir / "config.json"))
    theirs = lib.Xtts(config)
    theirs.load_checkpoint(config, checkpoint_dir=str(model_dir), eval=True, strict=True)
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == reference.keys()
    differ = [k for k, v in reference.items() if not torch.equal(mine[k], v)]
    assert differ == []
    assert not [n for n, p in ours.named_parameters() if p.is_meta]
    latents = torch.linspace(-1, 1, 4 * int(config.model_args.decoder_input_dim))
    latents = latents.reshape(1, 4, -1)
    speaker = torch.full((1, int(config.model_args.d_vector_dim), 1), 0.01)
    with torch.inference_mode():
        assert torch.equal(
            ours.hifigan_decoder(latents, g=speaker), theirs.hifigan_decoder(latents, g=speaker)
        )


def test_a_checkpoint_in_torchs_old_format_is_read_whole(workdir: Path, tmp_path: Path) -> None:
    """A model.pth saved before torch's zip format cannot be mapped; it loads all the same."""
    folder = tmp_path / "xtts_v2"
    shutil.copytree(workdir / "models" / "xtts_v2", folder)
    checkpoint = torch.load(folder / "model.pth", map_location="cpu", weights_only=True)
    torch.save(checkpoint, folder / "model.pth", _use_new_zipfile_serialization=False)
    model = load_model(folder, torch.device("cpu"))
    expected = checkpoint["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())


def test_coqui_tts_imports_without_scikit_learn_or_scipys_optimizers() -> None:
    # Both are installed here (librosa needs them); XTTS uses neither, and importing them
    # cost about 1 s of every voice worker's start.
    code = (
        "import sys; from engines.voice.xtts_model import coqui; coqui(); "
        "print(sorted(m for m in ('sklearn', 'scipy.optimize') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    import sklearn  # noqa: F401  (installed: the check above is not vacuous)


def test_non_finite_or_reshaped_weights_are_refused(workdir: Path, tmp_path: Path) -> None:
    """A NaN weight or a tensor of another shape stops the engine (and `models import`)."""
    broken = tmp_path / "models" / "xtts_v2"
    shutil.copytree(workdir / "models" / "xtts_v2", broken)
    checkpoint = torch.load(broken / "model.pth", map_location="cpu", weights_only=True)
    state = checkpoint["model"]
    name = next(k for k, v in state.items() if k.startswith("gpt.") and v.is_floating_point())
    state[name].view(-1)[0] = float("nan")
    torch.save(checkpoint, broken / "model.pth")
    settings = Settings(models_dir=tmp_path / "models", device="cpu")
    with pytest.raises(ModelMissing, match=rf"model\.pth holds NaN .*\(e\.g\. {re.escape(name)}\)"):
        XttsEngine(settings)
    with pytest.raises(ModelMissing, match=r"NaN.*fix: jayavatar models pull xtts_v2"):
        verify_folder(broken / "config.json", "")
    state[name].view(-1)[0] = 0.0
    vocoder = next(k for k in state if k.startswith("hifigan_decoder.waveform_decoder.conv_pre"))
    state[vocoder].fill_(3e38)  # finite, but the vocoder's sums overflow
    torch.save(checkpoint, broken / "model.pth")
    with pytest.raises(ModelMissing, match=r"vocoder's probe pass gives NaN or infinite audio"):
        XttsEngine(settings)
    state[name] = torch.zeros(3, 1)
    torch.save(checkpoint, broken / "model.pth")
    with pytest.raises(
        ModelMissing, match=r"xtts_v2/model\.pth could not be loaded.*size mismatch"
    ):
        XttsEngine(settings)


def test_trim_tail_cuts_trailing_noise_and_babble() -> None:
    """Low-level tails go; audio past the text's plausible length is cut at a quiet point."""
    rate = SAMPLE_RATE
    speech = 0.3 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate).astype(np.float32)
    tail = np.random.default_rng(0).normal(0, 1e-3, 2 * rate).astype(np.float32)
    trimmed = trim_tail(np.concatenate([speech, tail]), "Hi there.", "en")
    assert rate <= len(trimmed) <= rate + rate // 5
    assert abs(float(trimmed[-1])) < 1e-3  # faded out, no click
    babble = 0.3 * np.sin(2 * np.pi * 150 * np.arange(10 * rate) / rate).astype(np.float32)
    cut = trim_tail(babble, "Hi.", "en")
    assert len(cut) <= max_seconds("Hi.", "en") * rate + rate // 5


def test_clean_reference_trims_and_normalises(tmp_path: Path) -> None:
    """Leading/trailing silence is dropped, long pauses shortened, speech set to -20 dBFS."""
    rate = COND_RATE
    quiet = np.zeros(2 * rate, np.float32)
    speech = 0.02 * voice_like(4.0, rate)
    body, seconds = clean_reference(np.concatenate([quiet, speech, quiet, speech, quiet]), rate)
    assert 4.0 <= seconds <= 8.0
    assert len(body) < 8.8 * rate  # the 6 s of silence shrank to well under a second
    frame = rate // 50
    rms = np.sqrt(np.mean(body[: len(body) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    loud = rms[rms > rms.max() * 0.05]
    assert 20 * np.log10(np.sqrt(np.mean(loud**2))) == pytest.approx(-20, abs=3)


def test_decode_audio_downmixes_and_resamples(tmp_path: Path) -> None:
    """A 48 kHz stereo FLAC comes back as mono float32 at the requested rate."""
    stereo = np.stack([voice_like(2.0, 48_000), voice_like(2.0, 48_000, 5)], axis=1)
    soundfile.write(tmp_path / "clip.flac", stereo, 48_000)
    audio = decode_audio(tmp_path / "clip.flac", COND_RATE, 300)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(2.0 * COND_RATE, rel=0.01)
    with pytest.raises(BadInput, match=r"longer than 0\.5 s"):
        decode_audio(tmp_path / "clip.flac", COND_RATE, 0.5)
