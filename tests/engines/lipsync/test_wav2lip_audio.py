"""Wav2Lip's mel front end against an independent librosa/scipy computation of the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from engines.lipsync.wav2lip_audio import (
    MelFrontEnd,
    frame_count,
    gather_windows,
    mel_filterbank,
    pad_to_window,
    window_starts,
)

pytestmark = pytest.mark.env("lipsync")

librosa = pytest.importorskip("librosa")
signal = pytest.importorskip("scipy.signal")


def reference_mel(wav: NDArray[np.float32]) -> NDArray[np.float64]:
    """The reference recipe, written with librosa and scipy as the original hparams say."""
    emphasised = signal.lfilter([1, -0.97], [1], wav)
    spec = np.abs(
        librosa.stft(y=emphasised, n_fft=800, hop_length=200, win_length=800, pad_mode="reflect")
    )
    bank = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    db = 20 * np.log10(np.maximum(1e-5, bank @ spec)) - 20
    normalised: NDArray[np.float64] = np.clip(8 * (db + 100) / 100 - 4, -4, 4)
    return normalised


def speech_like(seconds: float, seed: int = 0) -> NDArray[np.float32]:
    """A modulated harmonic tone plus noise: energy across the mel range, varying in time."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 560, 1900), 1))
    wav = 0.2 * tone * (1 + np.sin(2 * np.pi * 3 * t)) + 0.02 * rng.standard_normal(t.size)
    out: NDArray[np.float32] = wav.astype(np.float32)
    return out


def test_filterbank_matches_librosa_slaney() -> None:
    expected = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    np.testing.assert_allclose(mel_filterbank(), expected, atol=1e-7)


@pytest.mark.parametrize("seconds", [0.9, 3.0])
def test_mel_matches_the_reference_recipe(seconds: float) -> None:
    wav = speech_like(seconds)
    got = MelFrontEnd("cpu").mel(wav).numpy()
    want = reference_mel(wav)
    assert got.shape == want.shape == (80, 1 + len(wav) // 200)
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert got.min() < 0 < got.max()  # the signal spans the range, not a clipped constant


@pytest.mark.parametrize("samples", [16000, 123])
def test_digital_silence_gives_the_floor_and_no_nan(samples: int) -> None:
    mel = MelFrontEnd("cpu").mel(np.zeros(samples, dtype=np.float32))
    assert not torch.isnan(mel).any()
    assert torch.all(mel == -4.0)


def test_window_starts_follow_int_i_times_80_over_fps() -> None:
    starts = window_starts(n_frames=100, fps=25.0, mel_frames=321)
    assert starts.tolist()[:6] == [int(i * (80.0 / 25.0)) for i in range(6)] == [0, 3, 6, 9, 12, 16]
    assert starts.max() == 321 - 16  # the last windows are clamped to the end
    assert window_starts(4, 30.0, 100).tolist() == [0, 2, 5, 8]


def test_windows_are_the_right_slices() -> None:
    mel = torch.arange(80 * 40, dtype=torch.float32).reshape(80, 40)
    starts = np.array([0, 3, 24])
    windows = gather_windows(mel, starts)
    assert windows.shape == (3, 1, 80, 16)
    for row, start in enumerate(starts):
        assert torch.equal(windows[row, 0], mel[:, start : start + 16])


def test_short_audio_is_padded_to_one_window() -> None:
    mel = pad_to_window(MelFrontEnd("cpu").mel(speech_like(0.02)))
    assert mel.shape == (80, 16)
    assert torch.all(mel[:, -1] == -4.0)


def test_frame_count_covers_the_audio() -> None:
    assert frame_count(16000, 25.0) == 25
    assert frame_count(16001, 25.0) == 26
    assert frame_count(1, 25.0) == 1
