"""Tests of the offline voice engine "piper" and of the demo voice sample it is measured on."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from engines.base import VoiceEngine
from engines.media import audio
from engines.registry import build_voice_engine
from engines.voice import demo_voice
from engines.voice.piper import PROFILE, REFERENCE, PiperEngine, speak
from jayavatar.errors import BadInput, NotFound
from jayavatar.settings import Settings

pytestmark = pytest.mark.env("voice")

TEXT = (
    "Please bring the blue folder to the meeting room before lunch. "
    "We will review the plan together and decide on the next steps."
)
#: A second made-up speaker, on the other side of the stock voice: lower, longer vocal tract.
DEEP_SPEAKER = demo_voice.SpeakerShift(
    pitch=0.72, pitch_range=0.8, allpass=-0.08, tilt_db_per_khz=0.8, breath=0.0
)


@pytest.fixture(scope="module")
def engine() -> PiperEngine:
    """One engine for the module, as a worker builds it once."""
    return PiperEngine(Settings())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shared by the module's tests."""
    return tmp_path_factory.mktemp("piper")


@pytest.fixture(scope="module")
def demo_dir(engine: PiperEngine, workdir: Path) -> Path:
    """The demo voice sample, enrolled."""
    sample = workdir / "demo.wav"
    demo_voice.make_sample(sample)
    engine.enroll(sample, workdir / "demo")
    return workdir / "demo"


def read_pcm(path: Path) -> tuple[np.ndarray, int]:
    """Read a mono 16-bit WAV; return samples and rate."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()


def test_is_a_voice_engine(engine: PiperEngine) -> None:
    """The registry builds this engine; it fits the worker's protocol (checked by mypy)."""
    built: VoiceEngine = build_voice_engine(Settings(voice_engine="piper"))
    assert isinstance(built, PiperEngine)
    as_protocol: VoiceEngine = engine
    assert as_protocol.name == "piper"
    assert engine.rate == 22050


def test_enroll_stores_reference_and_profile(engine: PiperEngine, demo_dir: Path) -> None:
    """Enrollment writes the cleaned reference, the profile and metadata about the speaker."""
    meta = json.loads((demo_dir / "voice.json").read_text(encoding="utf-8"))
    assert meta["engine"] == "piper"
    assert meta["speech_s"] > 8.0
    assert meta["warnings"] == []
    # The demo speaker is made higher and shorter-tracted than the stock voice; enrollment sees it.
    assert meta["pitch_ratio"] > 1.3
    assert meta["warp"] > 1.05
    pcm, rate = read_pcm(demo_dir / REFERENCE)
    assert rate == engine.rate
    samples = (pcm / 32768.0).astype(np.float32)
    level = audio.loudness_dbfs(samples, rate, audio.speech_mask(samples, rate))
    assert abs(level - audio.TARGET_DBFS) < 1.0
    assert (demo_dir / PROFILE).is_file()


def test_synthesize_writes_clean_speech(engine: PiperEngine, demo_dir: Path, workdir: Path) -> None:
    """Output is mono 16-bit WAV of the returned length, with progress reported up to 1."""
    seen: list[tuple[float, str]] = []
    out = workdir / "out.wav"
    seconds = engine.synthesize(TEXT, "en", demo_dir, out, lambda f, p: seen.append((f, p)))
    pcm, rate = read_pcm(out)
    assert rate == engine.rate
    assert seconds == pytest.approx(len(pcm) / rate)
    assert 4.0 < seconds < 15.0
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"speak", "match"} <= {p for _, p in seen}
    assert np.max(np.abs(pcm)) > 8000  # speech at a normal level, not a whisper
    # Never exact digital silence: no run of zero samples, every 10 ms has energy.
    assert longest_zero_run(pcm) < 8
    hop = rate // 100
    frames = pcm[: len(pcm) // hop * hop].reshape(-1, hop).astype(np.float64)
    assert np.all(np.sum(frames**2, axis=1) > 0)


def longest_zero_run(pcm: np.ndarray) -> int:
    """Return the length of the longest run of exact zero samples."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], (pcm == 0).astype(np.int8), [0]))))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


def test_matching_moves_toward_the_reference(
    engine: PiperEngine, demo_dir: Path, workdir: Path
) -> None:
    """Measured: resemblyzer similarity to the reference is higher after matching than before.

    Two references that differ from the stock voice in opposite directions (the demo speaker,
    higher; a deeper one), each read a text other than the one synthesised.
    """
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(path: Path) -> np.ndarray:
        return np.asarray(encoder.embed_utterance(preprocess_wav(path)))

    stock = workdir / "stock.wav"
    plain = speak(engine.voice, TEXT)
    audio.write_wav(stock, audio.add_floor(audio.normalise(plain, engine.rate)), engine.rate)
    deep_sample = workdir / "deep.wav"
    demo_voice.make_sample(deep_sample, shift=DEEP_SPEAKER)
    engine.enroll(deep_sample, workdir / "deep")
    for voice_dir in (demo_dir, workdir / "deep"):
        matched = workdir / f"{voice_dir.name}-matched.wav"
        engine.synthesize(TEXT, "en", voice_dir, matched, lambda f, p: None)
        reference = embed(voice_dir / REFERENCE)
        before = float(embed(stock) @ reference)
        after = float(embed(matched) @ reference)
        print(f"{voice_dir.name}: cosine to reference, stock {before:.3f}, matched {after:.3f}")
        assert after > before + 0.05, (voice_dir.name, before, after)


def test_english_only(engine: PiperEngine, demo_dir: Path, workdir: Path) -> None:
    """Other languages are refused in one line; English variants are accepted."""
    with pytest.raises(BadInput, match="English only"):
        engine.synthesize("Bonjour", "fr", demo_dir, workdir / "fr.wav", lambda f, p: None)
    assert not (workdir / "fr.wav").exists()
    assert (
        engine.synthesize("Hello there.", "en-GB", demo_dir, workdir / "gb.wav", lambda f, p: None)
        > 0.3
    )


def test_unenrolled_voice(engine: PiperEngine, workdir: Path) -> None:
    """A voice folder without this engine's profile is NotFound, not a crash."""
    empty = workdir / "nobody"
    empty.mkdir()
    with pytest.raises(NotFound, match="enroll it again"):
        engine.synthesize("Hello.", "en", empty, workdir / "x.wav", lambda f, p: None)


def test_text_without_speech(engine: PiperEngine, demo_dir: Path, workdir: Path) -> None:
    """Text that yields no phonemes is BadInput; raw-phoneme brackets are not interpreted."""
    with pytest.raises(BadInput, match="nothing to say"):
        engine.synthesize("   ", "en", demo_dir, workdir / "blank.wav", lambda f, p: None)
    seconds = engine.synthesize(
        "[[ hɛloʊ ]] world", "en", demo_dir, workdir / "b.wav", lambda f, p: None
    )
    assert seconds > 0.3


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("empty.wav", lambda p: p.write_bytes(b""), "empty"),
        ("notes.wav", lambda p: p.write_text("not a recording\n" * 100), "not audio"),
        (
            "silence.wav",
            lambda p: audio.write_wav(p, np.zeros(22050 * 4, np.float32), 22050),
            "silent",
        ),
        (
            "noise.wav",
            lambda p: audio.write_wav(
                p, np.random.default_rng(5).normal(0, 0.1, 22050 * 4).astype(np.float32), 22050
            ),
            "no voice",
        ),
    ],
)
def test_enroll_refuses_bad_samples(
    engine: PiperEngine, workdir: Path, name: str, make: object, message: str
) -> None:
    """Unusable samples raise BadInput and leave nothing behind in the voice folder."""
    sample = workdir / name
    make(sample)  # type: ignore[operator]
    out_dir = workdir / f"voice-{name}"
    with pytest.raises(BadInput, match=message):
        engine.enroll(sample, out_dir)
    assert not out_dir.exists()


def test_enroll_refuses_short_and_long(engine: PiperEngine, workdir: Path) -> None:
    """Too little speech and too much speech are refused by the engine's settings."""
    speech = audio.normalise(speak(engine.voice, TEXT), engine.rate)
    short = workdir / "short.wav"
    audio.write_wav(short, np.concatenate([speech[:22050], np.zeros(22050 * 3, np.float32)]), 22050)
    with pytest.raises(BadInput, match="too little speech"):
        engine.enroll(short, workdir / "v-short")
    strict = PiperEngine(Settings(max_sample_s=4.0))
    long = workdir / "long.wav"
    audio.write_wav(long, speech, 22050)
    with pytest.raises(BadInput, match="too long"):
        strict.enroll(long, workdir / "v-long")
    assert not (workdir / "v-short").exists() and not (workdir / "v-long").exists()
