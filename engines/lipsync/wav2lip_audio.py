"""Wav2Lip's audio front end in torch: the reference mel spectrogram and per-frame mel windows.

Constants follow the reference hparams: 16 kHz mono, pre-emphasis 0.97, STFT 800/200/800
(Hann, centred, reflect padding), 80 Slaney mels 55–7600 Hz, dB with min −100 and ref 20,
symmetric normalisation to [−4, 4]. Each video frame i takes the 16 mel frames starting at
int(i * 80 / fps), the last window clamped to the end.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

SAMPLE_RATE = 16_000
PREEMPHASIS = 0.97
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS = 4.0
#: Mel frames per second (16000 / 200) and frames per model window.
MEL_FPS = SAMPLE_RATE / HOP
WINDOW = 16


def _hz_to_mel(hz: NDArray[np.float64]) -> NDArray[np.float64]:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    mel = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, mel)


def _mel_to_hz(mel: NDArray[np.float64]) -> NDArray[np.float64]:
    """Inverse of `_hz_to_mel`."""
    hz = mel * (200.0 / 3)
    log_part = 1000.0 * np.exp((math.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, hz)


def mel_filterbank() -> NDArray[np.float32]:
    """Return the (80, 401) Slaney-normalised triangular filterbank of the reference."""
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = np.array([FMIN, FMAX])
    lo, hi = _hz_to_mel(edges)
    mel_hz = _mel_to_hz(np.linspace(lo, hi, N_MELS + 2))
    gaps = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / gaps[:-1, None]
    falling = ramps[2:] / gaps[1:, None]
    bank: NDArray[np.float64] = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney normalisation: each filter has unit area in Hz.
    bank *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return bank.astype(np.float32)


class MelFrontEnd:
    """Computes reference mel spectrograms on one device; build once, reuse for every render."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.bank = torch.from_numpy(mel_filterbank()).to(self.device)
        self.window = torch.hann_window(WIN, periodic=True, device=self.device)

    def mel(self, wav: Tensor | NDArray[np.floating[Any]]) -> Tensor:
        """Return the normalised (80, T) mel of 16 kHz mono audio, T = 1 + len // 200.

        Never NaN: magnitudes are floored at −100 dB, so exact digital silence maps to −4.
        """
        x = torch.as_tensor(wav, dtype=torch.float32).to(self.device).reshape(-1)
        if x.numel() < N_FFT:
            # Reflect padding needs more samples than half a window; silence is the neutral pad.
            x = torch.nn.functional.pad(x, (0, N_FFT - x.numel()))
        x = torch.cat((x[:1], x[1:] - PREEMPHASIS * x[:-1]))
        spec = torch.stft(
            x,
            N_FFT,
            HOP,
            WIN,
            self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        ).abs()
        mel = self.bank @ spec
        floor = 10.0 ** (MIN_LEVEL_DB / 20.0)
        db = 20.0 * torch.log10(mel.clamp_min(floor)) - REF_LEVEL_DB
        scaled = 2 * MAX_ABS * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS
        return scaled.clamp(-MAX_ABS, MAX_ABS)


def frame_count(samples: int, fps: float) -> int:
    """Return how many video frames cover `samples` of 16 kHz audio (at least one)."""
    return max(1, math.ceil(samples * fps / SAMPLE_RATE - 1e-9))


def window_starts(n_frames: int, fps: float, mel_frames: int) -> NDArray[np.int64]:
    """Return the first mel frame of each video frame's window, clamped like the reference."""
    # Same float64 product as the reference's int(i * (80. / fps)).
    starts = np.floor(np.arange(n_frames) * (MEL_FPS / fps)).astype(np.int64)
    clamped: NDArray[np.int64] = np.minimum(starts, max(mel_frames - WINDOW, 0))
    return clamped


def pad_to_window(mel: Tensor) -> Tensor:
    """Return `mel` padded with silence (−4) on the right to at least one 16-frame window."""
    short = WINDOW - mel.shape[1]
    if short <= 0:
        return mel
    return torch.nn.functional.pad(mel, (0, short), value=-MAX_ABS)


def gather_windows(mel: Tensor, starts: NDArray[np.int64]) -> Tensor:
    """Return the (B, 1, 80, 16) model input for the given window starts."""
    idx = torch.as_tensor(starts, device=mel.device)[:, None] + torch.arange(
        WINDOW, device=mel.device
    )
    return mel[:, idx].permute(1, 0, 2).unsqueeze(1)
