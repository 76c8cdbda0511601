"""Phoneme timings of rendered speech: the known script force-aligned to the audio, offline.

pocketsphinx 5 ships an en-US acoustic model and the CMU pronouncing dictionary in its wheel
and aligns a word sequence to audio down to the phone (ARPAbet, 10 ms frames). Words missing
from the dictionary (names, "JayAvatar") get their pronunciation from espeak-ng, which Piper
ships, mapped from IPA to ARPAbet. Languages without an acoustic model, and speech that does not
align, return None: the caller then falls back to an audio-only estimate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

RATE = 16_000
#: pocketsphinx reports times in frames of 10 ms.
FRAME_S = 0.01
#: Alignment is linear in the audio, but a beam search over minutes of speech is not worth
#: its memory; longer speech falls back to the audio-only estimate.
MAX_SECONDS = 300.0
#: Languages with an acoustic model in the wheel.
ALIGNED_LANGUAGES = ("en",)

# IPA (as espeak-ng writes it, decomposed) to ARPAbet; two-character symbols are matched first.
_IPA_PAIRS = {
    "eɪ": "EY", "aɪ": "AY", "aʊ": "AW", "oʊ": "OW", "əʊ": "OW", "ɔɪ": "OY", "tʃ": "CH",
    "dʒ": "JH", "ɜː": "ER", "iː": "IY", "uː": "UW", "ɑː": "AA", "ɔː": "AO", "ɪə": "IH",
}  # fmt: skip
_IPA = {
    "i": "IY", "ɪ": "IH", "ᵻ": "IH", "e": "EH", "ɛ": "EH", "æ": "AE", "a": "AE", "ɑ": "AA",
    "ɒ": "AA", "ɔ": "AO", "o": "OW", "ʊ": "UH", "u": "UW", "ʌ": "AH", "ə": "AH", "ɐ": "AH",
    "ɚ": "ER", "ɝ": "ER", "ɜ": "ER", "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "G",
    "ɡ": "G", "f": "F", "v": "V", "θ": "TH", "ð": "DH", "s": "S", "z": "Z", "ʃ": "SH",
    "ʒ": "ZH", "h": "HH", "x": "HH", "m": "M", "n": "N", "ŋ": "NG", "l": "L", "ɫ": "L",
    "ɹ": "R", "r": "R", "ɾ": "D", "w": "W", "j": "Y", "y": "IY",
}  # fmt: skip


@dataclass(frozen=True)
class Phone:
    """One aligned phone: ARPAbet name (no stress digit; "SIL" for silence) and its times."""

    name: str
    start: float  # seconds
    end: float  # seconds

    @property
    def mid(self) -> float:
        """The phone's centre, seconds."""
        return (self.start + self.end) / 2


def words_of(text: str) -> list[str]:
    """The script as the aligner's words: lower case, letters, digits and apostrophes."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def ipa_to_arpabet(ipa: str) -> list[str]:
    """Map an espeak-ng IPA string to ARPAbet phones; stress, length and unknown marks drop."""
    out: list[str] = []
    i = 0
    while i < len(ipa):
        pair = ipa[i : i + 2]
        if pair in _IPA_PAIRS:
            out.append(_IPA_PAIRS[pair])
            i += 2
            continue
        if ipa[i] in _IPA:
            out.append(_IPA[ipa[i]])
        i += 1
    return out


def _espeak(word: str) -> list[str]:
    """Pronounce a word the dictionary lacks with espeak-ng (Piper's); [] if unavailable."""
    try:
        from piper.phonemize_espeak import EspeakPhonemizer
    except ImportError:
        return []
    sentences = EspeakPhonemizer().phonemize("en-us", word)
    return ipa_to_arpabet("".join("".join(s) for s in sentences))


def _decoder(words: list[str]) -> Any:
    """A pocketsphinx decoder that knows every word of the script, or None if one has no phones."""
    import pocketsphinx

    # No language model: alignment searches only the script (loading one costs 0.3 s). The
    # search keeps pocketsphinx's default beams: without a language model narrower ones save
    # nothing, and they sometimes lose the right path yet still align, squeezing a word into its
    # neighbour and calling the word's own sound a silence (4 of 200 Piper readings of "Hi! I'm
    # ...": the mouth then spoke in a "pause" and shut for /m/ where there was none).
    decoder = pocketsphinx.Decoder(samprate=RATE, bestpath=False, loglevel="FATAL", lm=None)
    missing = sorted({w for w in words if decoder.lookup_word(w) is None})
    for i, word in enumerate(missing):
        phones = _espeak(word)
        if not phones:
            return None
        # Rebuilding the search after each word is slow: only after the last one.
        decoder.add_word(word, " ".join(phones), i == len(missing) - 1)
    return decoder


def warm_up() -> None:
    """Load what the first alignment would otherwise pay for (about 1 s), at engine build.

    scipy.signal takes most of it to import; the decoder's acoustic model and dictionary are
    read from disk once, so later decoders find them in the page cache.
    """
    try:
        import pocketsphinx  # noqa: F401  (only the lip-sync environment has it)
    except ImportError:
        return
    import scipy.signal  # noqa: F401

    _decoder(["a"])


def to_pcm16k(audio: npt.NDArray[np.floating[Any]], rate: int) -> bytes:
    """Mono float audio at `rate` as 16 kHz signed 16-bit PCM bytes."""
    from scipy.signal import resample_poly

    g = int(np.gcd(rate, RATE))
    resampled = resample_poly(audio.astype(np.float64), RATE // g, rate // g)
    return bytes((np.clip(resampled, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def align(
    audio: npt.NDArray[np.floating[Any]], rate: int, text: str, language: str
) -> list[Phone] | None:
    """Phone timings of `text` spoken in `audio`; None when it cannot be aligned."""
    words = words_of(text)
    if language.split("-")[0].lower() not in ALIGNED_LANGUAGES or not words:
        return None
    if len(audio) / rate > MAX_SECONDS:
        return None
    try:
        import pocketsphinx  # noqa: F401  (only the lip-sync environment has it)
    except ImportError:
        return None
    return _align_pcm(to_pcm16k(audio, rate), words)


def _align_pcm(pcm: bytes, words: list[str]) -> list[Phone] | None:
    """Align the words to 16 kHz PCM; None if it fails."""
    decoder = _decoder(words)
    if decoder is None:
        return None
    try:
        decoder.set_align_text(" ".join(words))
        _decode(decoder, pcm)
        if decoder.hyp() is None:
            return None
        decoder.set_alignment()  # second pass: phone-level timings
        _decode(decoder, pcm)
        alignment = decoder.get_alignment()
    except RuntimeError:
        return None
    if alignment is None:
        return None
    return _phones(alignment)


def _decode(decoder: Any, pcm: bytes) -> None:
    """Run one full-utterance pass."""
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def _phones(alignment: Any) -> list[Phone]:
    """Flatten a pocketsphinx alignment into Phones in seconds."""
    out = []
    for phone in alignment.phones():
        name = re.sub(r"\d", "", str(phone.name)).upper()
        start = int(phone.start) * FRAME_S
        out.append(Phone(name, start, start + int(phone.duration) * FRAME_S))
    return out
