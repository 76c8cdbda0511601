"""Forced alignment: the script's phones found in real Piper speech, offline."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engines.lipsync import alignment
from engines.lipsync.alignment import Phone, align, ipa_to_arpabet, words_of
from engines.quality import voice as quality_voice

pytestmark = pytest.mark.env("lipsync")

SCRIPT = "Maybe. We could play some music, in the blue room."
RATE = quality_voice.RATE


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The stock Piper voice reading SCRIPT, 16 kHz mono."""
    return quality_voice.stock_speech(SCRIPT, repeatable=True)


@pytest.fixture(scope="module")
def phones(speech: np.ndarray) -> list[Phone]:
    found = align(speech, RATE, SCRIPT, "en")
    assert found is not None
    return found


def frame_db(audio: np.ndarray, start: float, end: float) -> float:
    """RMS level (dBFS) of audio between two times."""
    seg = audio[int(start * RATE) : int(end * RATE)]
    return float(10 * np.log10(np.mean(seg.astype(np.float64) ** 2) + 1e-12))


def test_words_are_normalised_for_the_dictionary() -> None:
    assert words_of("Hi! I'm JayAvatar, 42 times.") == ["hi", "i'm", "jayavatar", "42", "times"]


def test_ipa_maps_to_arpabet_with_diphthongs_first() -> None:
    assert ipa_to_arpabet("dʒˈeɪ ˈævɐtˌɑːɹ") == ["JH", "EY", "AE", "V", "AH", "T", "AA", "R"]
    assert ipa_to_arpabet("mjˈuːzɪk") == ["M", "Y", "UW", "Z", "IH", "K"]


def test_phones_follow_the_script_in_order(phones: list[Phone], speech: np.ndarray) -> None:
    spoken = [p.name for p in phones if p.name != "SIL"]
    # "maybe" opens the script, "room" closes it; every /p b m/ of the words is there.
    assert spoken[:4] == ["M", "EY", "B", "IY"]
    assert spoken[-3:] == ["R", "UW", "M"]
    assert sum(p in ("P", "B", "M") for p in spoken) == 7
    starts = [p.start for p in phones]
    assert starts == sorted(starts)
    assert all(p.end > p.start for p in phones)
    assert phones[-1].end <= len(speech) / RATE + 0.02


def test_the_sentence_break_is_a_silence_where_the_audio_is_quiet(
    phones: list[Phone], speech: np.ndarray
) -> None:
    # After "Maybe." the voice pauses: the aligner puts a silence there, and it is quiet.
    first_we = next(i for i, p in enumerate(phones) if p.name == "W")
    pause = max(phones[:first_we], key=lambda p: (p.name == "SIL", p.end - p.start))
    assert pause.name == "SIL" and pause.end - pause.start >= 0.08
    vowel = next(p for p in phones if p.name == "EY")
    assert frame_db(speech, pause.start, pause.end) < frame_db(speech, vowel.start, vowel.end) - 20


def peak_db(audio: np.ndarray, start: float, end: float) -> float:
    """The loudest 20 ms of audio between two times, dBFS."""
    steps = np.arange(start, max(end - 0.02, start) + 1e-9, 0.01)
    return max(frame_db(audio, t, t + 0.02) for t in steps)


def test_closures_are_quieter_than_their_vowels(phones: list[Phone], speech: np.ndarray) -> None:
    # Lips shut for a plosive hold the air: a /p b/ is clearly quieter than the vowel after it
    # (a /b/ keeps voicing through its closure, so "clearly" is 4 dB).
    pairs = [
        (p, after)
        for p, after in itertools.pairwise(phones)
        if p.name in ("P", "B") and after.name != "SIL"
    ]
    assert len(pairs) == 3
    for p, after in pairs:
        # The burst ends the phone: measure the closure, its first 30 ms.
        closure = frame_db(speech, p.start, min(p.end, p.start + 0.03))
        assert closure < peak_db(speech, after.start, after.end) - 4, p


def test_words_missing_from_the_dictionary_are_pronounced_by_espeak() -> None:
    speech = quality_voice.stock_speech("JayAvatar says hello.", repeatable=True)
    found = align(speech, RATE, "JayAvatar says hello.", "en")
    assert found is not None
    assert [p.name for p in found if p.name != "SIL"][:2] == ["JH", "EY"]


def test_languages_without_a_model_and_empty_scripts_are_not_aligned(speech: np.ndarray) -> None:
    assert align(speech, RATE, "Vielleicht spielen wir Musik.", "de") is None
    assert align(speech, RATE, "!!! ...", "en") is None
    assert align(speech, RATE, SCRIPT, "en-US") is not None
    assert alignment.to_pcm16k(np.zeros(48_000, np.float32), 48_000) == bytes(32_000)
