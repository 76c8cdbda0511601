"""Wav2Lip's generator on one device, as the streaming render calls it."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import torch
from numpy.typing import NDArray

from engines.lipsync.wav2lip_blend import CROP
from engines.lipsync.wav2lip_model import Wav2Lip, fuse_batchnorm

U8: TypeAlias = NDArray[np.uint8]


class Generator:
    """The generator on one device: BatchNorm folded, channels_last, fp16 on CUDA.

    `sizes` lists the batch shapes to run: a smaller batch is padded up to the next one, so
    the tail of a render meets a shape `warm_up` already ran (its kernels loaded, and tuned
    once if cuDNN's autotuner is on) rather than a new one.
    """

    def __init__(
        self,
        model: Wav2Lip,
        device: torch.device,
        half: bool | None = None,
        sizes: tuple[int, ...] = (),
    ) -> None:
        self.device = device
        self.half = device.type == "cuda" if half is None else half
        self.dtype = torch.float16 if self.half else torch.float32
        self.sizes = tuple(sorted(sizes))
        model = fuse_batchnorm(model).eval()
        model = model.to(device, self.dtype)
        # Module.to accepts memory_format at run time, though torch's stubs omit it.
        to_layout = getattr(model, "to")  # noqa: B009
        self.model: torch.nn.Module = to_layout(memory_format=torch.channels_last)

    def warm_up(self) -> None:
        """Run each fixed batch shape once, so kernel loading happens before the first render."""
        for size in self.sizes:
            crops = np.zeros((size, CROP, CROP, 3), np.uint8)
            self(crops, torch.zeros(size, 1, 80, 16, device=self.device))

    def __call__(self, crops: U8, mel_windows: torch.Tensor) -> U8:
        """Return generated (B, 96, 96, 3) RGB crops for RGB crops and (B, 1, 80, 16) mels."""
        with torch.inference_mode():
            return self._generate(crops, mel_windows)

    def _generate(self, crops: U8, mel_windows: torch.Tensor) -> U8:
        """`__call__` without the inference-mode guard."""
        n = len(crops)
        x = torch.from_numpy(crops).to(self.device, non_blocking=True)
        mel = mel_windows.to(self.device, self.dtype)
        size = next((s for s in self.sizes if s >= n), n)
        if size > n:
            x = torch.cat((x, x.new_zeros((size - n, *x.shape[1:]))))
            mel = torch.cat((mel, mel.new_zeros((size - n, *mel.shape[1:]))))
        # The reference network was trained on OpenCV's BGR frames: flip channels in and out.
        x = x.permute(0, 3, 1, 2).flip(1).to(self.dtype).div_(255)
        masked = x.clone()
        masked[:, :, CROP // 2 :] = 0
        faces = torch.cat((masked, x), dim=1).contiguous(memory_format=torch.channels_last)
        out = self.model(mel, faces)[:n]
        out = out.flip(1).mul_(255).round_().clamp_(0, 255).to(torch.uint8)
        result: U8 = out.permute(0, 2, 3, 1).contiguous().cpu().numpy()
        return result
