"""The wav2lip engine on CUDA: fp16 agrees with fp32, and a whole render runs in fp16 batches."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.wav2lip_synth import make_audio, make_avatar, save_weights
from engines.lipsync.wav2lip import CUDA_BATCH, Wav2LipEngine
from engines.lipsync.wav2lip_audio import MelFrontEnd, gather_windows
from engines.lipsync.wav2lip_generator import Generator
from engines.lipsync.wav2lip_gpu_blend import TorchCompositor
from engines.lipsync.wav2lip_model import Wav2Lip
from engines.media import video as media
from jayavatar.settings import Settings
from tests.engines.lipsync.test_wav2lip_gpu_blend import (
    H,
    W,
    check_masks,
    faces,
    inside_mask,
    textured_i420,
)

pytestmark = [pytest.mark.env("lipsync"), pytest.mark.gpu]


def test_fp16_on_cuda_matches_fp32_on_cpu() -> None:
    torch.manual_seed(0)
    model = Wav2Lip().eval()
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (64, 96, 96, 3), dtype=np.uint8)
    mel = MelFrontEnd("cpu").mel(rng.normal(0, 0.1, 16000 * 3).astype(np.float32))
    windows = gather_windows(mel, np.arange(64) * 3)
    cpu = Generator(copy.deepcopy(model), torch.device("cpu"), half=False)(crops, windows)
    gpu = Generator(copy.deepcopy(model), torch.device("cuda"), half=True)(crops, windows)
    diff = np.abs(cpu.astype(np.int16) - gpu.astype(np.int16))
    assert gpu.shape == cpu.shape == (64, 96, 96, 3)
    assert diff.mean() < 0.5 and diff.max() <= 4


def test_render_runs_in_fp16_batches_on_cuda(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path / "models", device="cuda")
    save_weights(settings.models_dir)
    avatar = make_avatar(tmp_path / "avatar", 640, 360, 6.0)
    audio = make_audio(tmp_path / "speech.wav", 7.0)
    media.nvenc_available.cache_clear()
    engine = Wav2LipEngine(settings)
    engine.load()
    # The NVENC question is answered while the engine starts, not in its first render.
    assert media.nvenc_available.cache_info().currsize == 1
    out = tmp_path / "out.mp4"
    stats = engine.render(avatar, audio, out, lambda f, p: None, {"comment": "gpu test"})
    assert stats["device"].startswith("cuda") and stats["dtype"] == "float16"
    assert stats["batch"] == CUDA_BATCH >= 128 and stats["blend"] == "torch"
    assert stats["split"], "on CUDA, decoding and encoding run in their own processes"
    info = media.probe(out)
    assert (info.width, info.height) == (640, 360)
    assert info.frames == stats["frames"] == 175
    assert 0 < stats["face_frames"] < stats["frames"]  # the track's no-face stretch passed through
    # A second render reuses the decoder and encoder processes.
    pids = engine.media_workers.pids
    again = engine.render(avatar, audio, tmp_path / "again.mp4", lambda f, p: None, {})
    assert again["split"] and engine.media_workers.pids == pids
    assert media.probe(tmp_path / "again.mp4").frames == 175
    engine.close()


def test_masks_finished_on_cuda_equal_the_numpy_masks() -> None:
    # CUDA kernels may divide by a reciprocal: the last bit can differ, zeros may not.
    check_masks(torch.device("cuda"), atol=1e-6)


def test_the_compositor_on_cuda_matches_it_on_the_cpu() -> None:
    boxes, landmarks, generated = faces(5)
    source = [textured_i420(k) for k in range(5)]
    on_cpu = [f.copy() for f in source]
    on_gpu = [f.copy() for f in source]
    TorchCompositor(torch.device("cpu"), (W, H)).composite(on_cpu, generated, boxes, landmarks)
    TorchCompositor(torch.device("cuda"), (W, H)).composite(on_gpu, generated, boxes, landmarks)
    for k in range(5):
        inside = inside_mask(boxes[k], landmarks[k])
        got, src = on_gpu[k].reshape(-1), source[k].reshape(-1)
        assert np.array_equal(got[~inside], src[~inside])
        assert (got[inside] != src[inside]).mean() > 0.5
        assert np.abs(on_gpu[k].astype(np.int16) - on_cpu[k]).max() <= 1
