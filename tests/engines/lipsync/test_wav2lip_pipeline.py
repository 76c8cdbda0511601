"""The generator wrapper's input convention and padding, and the pipeline's failure handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from engines.lipsync.wav2lip_generator import Generator
from engines.lipsync.wav2lip_model import Wav2Lip
from engines.lipsync.wav2lip_pipeline import RenderPlan, render_stream
from engines.media import video as media
from jayavatar.errors import BadInput, EngineError

pytestmark = pytest.mark.env("lipsync")


class Capture(torch.nn.Module):
    """Records what the generator is fed and answers with the reference half of the input."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Keep the inputs; return the unmasked crop, as a perfect copy network would."""
        self.seen.append((mel, faces))
        return faces[:, 3:]


@pytest.fixture(scope="module")
def generator() -> Generator:
    """A CPU fp32 generator with random weights, padding batches up to 8."""
    torch.manual_seed(0)
    return Generator(Wav2Lip(), torch.device("cpu"), half=False, sizes=(8,))


def crops_and_windows(n: int) -> tuple[NDArray[np.uint8], torch.Tensor]:
    """Random crops and mel windows."""
    rng = np.random.default_rng(n)
    crops = rng.integers(0, 255, (n, 96, 96, 3), dtype=np.uint8)
    return crops, torch.from_numpy(rng.normal(size=(n, 1, 80, 16)).astype(np.float32))


def test_input_follows_the_reference_convention(generator: Generator) -> None:
    capture = Capture()
    original, generator.model = generator.model, capture
    try:
        crops, windows = crops_and_windows(3)
        out = generator(crops, windows)
    finally:
        generator.model = original
    mel, faces = capture.seen[0]
    assert faces.shape == (8, 6, 96, 96) and mel.shape == (8, 1, 80, 16)  # padded to 8
    assert faces.is_contiguous(memory_format=torch.channels_last)
    bgr = torch.from_numpy(crops[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(faces[:3, 3:], bgr)  # reference crop, BGR, scaled /255
    torch.testing.assert_close(faces[:3, :3, :48], bgr[:, :, :48])  # upper half kept
    assert torch.all(faces[:, :3, 48:] == 0)  # lower half masked
    assert torch.equal(mel[:3], windows)
    # The output is flipped back to RGB and cut to the real batch.
    assert out.shape == (3, 96, 96, 3) and np.array_equal(out, crops)


def test_padding_does_not_change_the_result(generator: Generator) -> None:
    crops, windows = crops_and_windows(5)
    padded = generator(crops, windows)
    plain = Generator.__new__(Generator)
    plain.__dict__.update(generator.__dict__, sizes=())
    unpadded = plain(crops, windows)
    assert padded.shape == (5, 96, 96, 3)
    assert np.abs(padded.astype(int) - unpadded).max() <= 1


def small_plan(clip: Path) -> RenderPlan:
    """A plan over a 10-frame 64×64 clip whose every frame has a face box."""
    return RenderPlan(
        clip=clip,
        size=(64, 64),
        fps=25.0,
        n_clip=10,
        n_out=40,
        present=np.ones(10, bool),
        boxes=np.tile(np.array([8, 8, 56, 56], np.int32), (10, 1)),
        landmarks=np.zeros((10, 478, 2), np.float32),
        mel=torch.zeros(80, 200),
        starts=np.zeros(40, np.int64),
        batch=8,
    )


class Sink:
    """Drops frames."""

    def write(self, frame: NDArray[np.uint8]) -> None:
        """Drop the frame."""


def broken(crops: NDArray[np.uint8], windows: torch.Tensor) -> NDArray[np.uint8]:
    """A generator that fails like a GPU fault."""
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_a_failing_generator_stops_the_render_with_an_engine_error(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    with media.VideoWriter(clip, 64, 64, 25) as writer:
        for _ in range(10):
            writer.write(np.full((64, 64, 3), 120, np.uint8))
    with pytest.raises(EngineError, match="illegal memory access"):
        render_stream(small_plan(clip), broken, Sink(), lambda n: None)


def test_a_failing_decoder_stops_the_render_too(tmp_path: Path) -> None:
    # The guarded open refuses the missing clip; the render stops with that, not a hang.
    with pytest.raises(BadInput, match=r"missing\.mp4 does not exist"):
        render_stream(small_plan(tmp_path / "missing.mp4"), broken, Sink(), lambda n: None)
