"""The quality report: an honest offline render is clean, every deliberately broken one flagged.

The honest render is the real offline pipeline (Piper speech matched to the demo voice, the
landmark engine on a 2 s face clip). Each broken render changes one thing
(`tests.support.quality_cases`), and the report must flag that part and leave the others alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from engines.lipsync.landmark import LandmarkEngine
from engines.media.video import load_audio
from engines.quality import audio as quality_audio
from engines.quality import mouth as quality_mouth
from engines.quality import report as quality
from engines.quality import video as quality_video
from engines.quality import voice as quality_voice
from jayavatar.settings import Settings
from tests.support import quality_cases
from tests.support.assets import face_clip
from tests.support.quality import TEXT, matched_speech

pytestmark = [pytest.mark.env("lipsync"), pytest.mark.timeout(300)]
PARTS = ("sync", "voice", "intelligibility", "authenticity", "artifacts", "mouth")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The prepared test face, the enrolled demo voice, its speech and an honest render."""
    root = tmp_path_factory.mktemp("quality")
    voice, speech = matched_speech()
    engine = LandmarkEngine(Settings(_env_file=None))
    engine.prepare(face_clip(), root / "avatar")
    good = root / "good.mp4"
    engine.render(root / "avatar", speech, good, lambda f, p: None, {}, TEXT, "en")
    return {"root": root, "avatar": root / "avatar", "voice": voice, "speech": speech, "good": good}


@pytest.fixture(scope="module")
def report(setup: dict[str, Path]) -> Callable[[str], dict[str, Any]]:
    """Evaluate a case by name, once per module (each case is a render of TEXT)."""
    done: dict[str, dict[str, Any]] = {}

    def get(case: str) -> dict[str, Any]:
        if case not in done:
            mp4 = _make_case(case, setup)
            done[case] = quality.evaluate_render(mp4, setup["avatar"], setup["voice"], TEXT, "en")
        return done[case]

    return get


def _make_case(case: str, s: dict[str, Path]) -> Path:
    out = s["root"] / f"{case}.mp4"
    if case == "good":
        return s["good"]
    if case == "shifted":
        return quality_cases.shift_audio(s["good"], out)
    if case == "frozen":
        return quality_cases.render_with(
            s["avatar"], s["speech"], out, freeze=True, text=TEXT, language="en"
        )
    if case == "wrong_voice":
        # The stock voice, unmatched: what a render would sound like if matching were skipped.
        wav = s["root"] / "stock.wav"
        sf.write(wav, quality_voice.stock_speech(TEXT, repeatable=True), quality_voice.RATE)
        engine = LandmarkEngine(Settings(_env_file=None))
        engine.render(s["avatar"], wav, out, lambda f, p: None, {}, TEXT, "en")
        return out
    mutation = {
        "blurry": quality_cases.blur_mouth(),
        "flicker": quality_cases.flicker_mouth(),
        "pasted": quality_cases.paste_face(),
        "subtle": quality_cases.brighten_band(),
    }[case]
    return quality_cases.render_with(
        s["avatar"], s["speech"], out, mutate=mutation, text=TEXT, language="en"
    )


def test_an_honest_offline_render_is_clean(report: Callable[[str], dict[str, Any]]) -> None:
    r = report("good")
    assert r["flags"] == [], r["flags"]
    assert r["checks"] == dict.fromkeys(PARTS, "ok")
    # The lips meet at the script's p/b/m and round for its oo/ow against its ee/ay.
    assert r["mouth"]["closure_rate"] >= quality_mouth.MIN_CLOSURE_RATE
    assert r["mouth"]["closures"] == len(r["mouth"]["closure_times_s"]) > 0
    assert abs(r["sync"]["lag_frames"]) <= quality.MAX_LAG_FRAMES
    assert r["sync"]["corr"] >= quality.MIN_SYNC_CORR
    # The matched voice is measurably nearer the reference than the stock voice it came from.
    assert r["voice"]["similarity"] > r["voice"]["stock_similarity"] + quality.MIN_VOICE_GAIN
    assert r["intelligibility"]["wer"] <= quality.MAX_WER
    assert r["authenticity"]["changed_pixels"] == 0
    assert r["authenticity"]["checked_pixels"] > 0
    assert r["authenticity"]["face_lost_frames"] == 0
    assert r["artifacts"]["blurry_frames"] == 0
    assert r["summary"].startswith(f"sync {r['sync']['corr']:.2f} @")
    assert "background untouched · 0 artifacts" in r["summary"]
    json.dumps(r, allow_nan=False)  # stored in the request record and shown by the API


@pytest.mark.parametrize(
    ("case", "part", "words"),
    [
        ("shifted", "sync", "5 frames ahead of the voice"),
        ("frozen", "sync", "mouth barely moves"),
        ("wrong_voice", "voice", "voice unlike the reference"),
        ("blurry", "artifacts", "blurry mouth"),
        ("flicker", "artifacts", "mouth flickers"),
        ("pasted", "authenticity", "pixels outside the mouth changed"),
        ("subtle", "authenticity", "pixels outside the mouth changed"),
    ],
)
def test_each_broken_render_is_flagged_for_what_broke(
    report: Callable[[str], dict[str, Any]], case: str, part: str, words: str
) -> None:
    r = report(case)
    assert any(words in flag for flag in r["flags"]), r["flags"]
    assert r["checks"][part] == "flagged"
    # Lips 5 frames off also miss their closures, and a blurred or jumping mouth hides its
    # shapes from FaceMesh: the mouth check may see those too.
    also = {"mouth"} if case in ("shifted", "blurry", "flicker") else set()
    others = {p: v for p, v in r["checks"].items() if p != part and p not in also}
    assert others == dict.fromkeys(others, "ok"), r["flags"]
    assert r["summary"].endswith(f"{len(r['flags'])} flagged")


def test_late_audio_is_found_at_its_lag(report: Callable[[str], dict[str, Any]]) -> None:
    good, shifted = report("good")["sync"], report("shifted")["sync"]
    # Audio 5 frames late means the lips lead: the best lag moves by exactly the shift.
    assert shifted["lag_frames"] - good["lag_frames"] == -quality_cases.SHIFT_FRAMES
    assert shifted["corr"] >= quality.MIN_SYNC_CORR
    assert shifted["corr_at_0"] < shifted["corr"] - 0.2


def test_other_languages_are_not_transcribed(
    setup: dict[str, Path], report: Callable[[str], dict[str, Any]]
) -> None:
    r = quality.evaluate_render(setup["good"], setup["avatar"], setup["voice"], TEXT, "de")
    assert r["intelligibility"] == {
        "measured": False,
        "reason": "not measured: the ASR model is English only",
    }
    assert r["checks"]["intelligibility"] == "not measured"
    assert "WER not measured" in r["summary"]
    # The rest does not depend on the language.
    assert r["sync"] == report("good")["sync"]


def test_a_voice_without_reference_is_not_scored(setup: dict[str, Path], tmp_path: Path) -> None:
    r = quality.evaluate_render(setup["good"], setup["avatar"], tmp_path, TEXT, "es")
    assert r["voice"]["measured"] is False
    assert "voice n/a" in r["summary"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # resemblyzer's scipy import path
def test_speaker_embedding_matches_resemblyzer(setup: dict[str, Path]) -> None:
    """The numpy front end reproduces resemblyzer's own pipeline (librosa mel, VAD trim)."""
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)
    for path in (setup["speech"], setup["voice"] / "reference.wav"):
        wav = load_audio(path, quality_voice.RATE)
        theirs = encoder.embed_utterance(preprocess_wav(wav, quality_voice.RATE))
        assert quality_voice.cosine(quality_voice.embed(wav), theirs) > 0.999


def test_word_error_rate_counts_edits() -> None:
    wer = quality_audio.word_error_rate
    assert wer("Happy birthday, Sam!", "happy birthday sam") == 0.0
    assert wer("one two three four", "one too three four") == 0.25
    assert wer("one two three four", "one three four") == 0.25
    assert wer("one two", "one two three four") == 1.0
    assert wer("", "") == 0.0


def test_best_lag_recovers_a_known_shift() -> None:
    rng = np.random.default_rng(3)
    loud = np.convolve(rng.normal(size=200), np.ones(4) / 4, mode="same")
    aperture = np.roll(loud, 3)  # the mouth follows the sound 3 frames late
    aperture[:3] = np.nan  # frames without a face are skipped, not zero
    corr, lag = quality_audio.best_lag(aperture, loud)
    assert lag == 3 and corr > 0.99
    flat_corr, _ = quality_audio.best_lag(np.full(200, 0.2), loud)
    assert np.isnan(flat_corr)


def test_changed_pixels_counts_whole_tiles_outside_the_mask() -> None:
    rng = np.random.default_rng(5)
    reference = rng.integers(60, 200, size=(100, 132, 3), dtype=np.uint8)
    # Codec noise of a few levels per pixel is not a change.
    noise = rng.integers(-4, 5, size=reference.shape)
    honest = np.clip(reference.astype(int) + noise, 0, 255).astype(np.uint8)
    assert quality_video.changed_pixels(honest, reference, None) == (0, 100 * 132)
    tampered = honest.copy()
    tampered[8:32, 16:40] = np.clip(tampered[8:32, 16:40].astype(int) + 40, 0, 255)
    tampered[0:8, 128:] = 255 - tampered[0:8, 128:]  # the last column of tiles is 4 wide
    changed, checked = quality_video.changed_pixels(tampered, reference, None)
    assert (changed, checked) == (3 * 3 * 64 + 8 * 4, 100 * 132)
    # Inside the allowed region nothing counts, however much it changed.
    allowed = np.zeros((13, 17), bool)
    allowed[1:4, 2:5] = True
    changed, checked = quality_video.changed_pixels(tampered, reference, None, allowed)
    assert (changed, checked) == (8 * 4, 100 * 132 - 9 * 64)


def test_command_line_writes_the_report_or_the_error(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "bad.json"
    args = ["--avatar", str(setup["avatar"]), "--voice", str(setup["voice"]), "--text", TEXT]
    assert quality.main([str(setup["voice"] / "reference.wav"), *args, "--json", str(out)]) == 1
    assert json.loads(out.read_text())["error"]["kind"] == "BadInput"
