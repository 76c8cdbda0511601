"""The Wav2Lip generator, laid out exactly like the official checkpoints, and their loader.

Parameter and buffer names match `wav2lip.pth` / `wav2lip_gan.pth` so those files load as they
are; only the generator is here (the GAN's discriminator is a training-time network).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from engines.models import load_error
from jayavatar.errors import ModelMissing

#: Parameters of the official generator (weights and biases, BatchNorm buffers not counted).
PARAM_COUNT = 36_298_035


class ConvBlock(nn.Module):
    """Conv2d → BatchNorm2d → (+ input if residual) → ReLU, named like the reference."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int | tuple[int, int] = 1,
        padding: int = 1,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        activated: Tensor = self.act(out)
        return activated


class TransposeBlock(nn.Module):
    """ConvTranspose2d → BatchNorm2d → ReLU, named like the reference."""

    def __init__(
        self, cin: int, cout: int, stride: int, padding: int, output_padding: int = 0
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 3, stride, padding, output_padding),
            nn.BatchNorm2d(cout),
        )
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        out: Tensor = self.act(self.conv_block(x))
        return out


def _res(width: int, count: int) -> list[nn.Module]:
    """Return `count` residual 3×3 blocks of the same width."""
    return [ConvBlock(width, width, 3, 1, 1, residual=True) for _ in range(count)]


def _down(
    cin: int, cout: int, residuals: int, stride: int | tuple[int, int] = 2
) -> list[nn.Module]:
    """Return a strided 3×3 block followed by residual blocks."""
    return [ConvBlock(cin, cout, 3, stride, 1), *_res(cout, residuals)]


def _up(cin: int, cout: int, residuals: int) -> nn.Sequential:
    """Return a ×2 transpose block followed by residual blocks."""
    return nn.Sequential(TransposeBlock(cin, cout, 2, 1, 1), *_res(cout, residuals))


def _face_encoder() -> nn.ModuleList:
    """Build the face encoder: 6×96×96 down to 512×1×1, keeping each stage's output."""
    return nn.ModuleList(
        [
            nn.Sequential(ConvBlock(6, 16, 7, 1, 3)),
            nn.Sequential(*_down(16, 32, 2)),
            nn.Sequential(*_down(32, 64, 3)),
            nn.Sequential(*_down(64, 128, 2)),
            nn.Sequential(*_down(128, 256, 2)),
            nn.Sequential(*_down(256, 512, 1)),
            nn.Sequential(ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)),
        ]
    )


def _audio_encoder() -> nn.Sequential:
    """Build the audio encoder: a 1×80×16 mel window down to 512×1×1."""
    return nn.Sequential(
        *_down(1, 32, 2, stride=1),
        *_down(32, 64, 2, stride=(3, 1)),
        *_down(64, 128, 2, stride=3),
        *_down(128, 256, 1, stride=(3, 2)),
        ConvBlock(256, 512, 3, 1, 0),
        ConvBlock(512, 512, 1, 1, 0),
    )


def _face_decoder() -> nn.ModuleList:
    """Build the decoder; each stage's input is the previous output joined to an encoder skip."""
    return nn.ModuleList(
        [
            nn.Sequential(ConvBlock(512, 512, 1, 1, 0)),
            nn.Sequential(TransposeBlock(1024, 512, 1, 0), *_res(512, 1)),
            _up(1024, 512, 2),
            _up(768, 384, 2),
            _up(512, 256, 2),
            _up(320, 128, 2),
            _up(160, 64, 2),
        ]
    )


class Wav2Lip(nn.Module):
    """The Wav2Lip generator: (B×1×80×16 mel, B×6×96×96 faces) → B×3×96×96 in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = _face_encoder()
        self.audio_encoder = _audio_encoder()
        self.face_decoder_blocks = _face_decoder()
        self.output_block = nn.Sequential(
            ConvBlock(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid()
        )

    def forward(self, mel: Tensor, faces: Tensor) -> Tensor:
        """Generate the lower-face crops for a batch of mel windows and masked face pairs."""
        feats = []
        x = faces
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)
        x = self.audio_encoder(mel)
        for block in self.face_decoder_blocks:
            x = torch.cat((block(x), feats.pop()), dim=1)
        out: Tensor = self.output_block(x)
        return out


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters of `model`."""
    return sum(p.numel() for p in model.parameters())


def fuse_batchnorm(model: Wav2Lip) -> Wav2Lip:
    """Fold every inference-mode BatchNorm into the convolution before it, in place.

    Halves the number of kernels launched per block; results match the unfused model to
    rounding error. Only for inference: the fused model no longer matches the checkpoint layout.
    Folding twice is a no-op.
    """
    for module in model.modules():
        if isinstance(module, ConvBlock | TransposeBlock) and len(module.conv_block) == 2:
            conv, bn = module.conv_block
            assert isinstance(bn, nn.BatchNorm2d)
            module.conv_block = nn.Sequential(_fold(conv, bn))
    return model


def _fold(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    """Return `conv` with `bn`'s running statistics and affine folded into its weight and bias."""
    assert isinstance(conv, nn.Conv2d | nn.ConvTranspose2d)
    assert bn.running_var is not None and bn.running_mean is not None
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        # ConvTranspose2d stores weights as (in, out, kh, kw): the output channel is dim 1.
        shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
        conv.weight.mul_(scale.reshape(shape))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return conv


def extract_state_dict(checkpoint: Any) -> dict[str, Tensor]:
    """Return the generator weights of a checkpoint, without `state_dict` wrapper or `module.`."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelMissing("not a Wav2Lip checkpoint: expected a dict of tensors or a 'state_dict'")
    return {k.removeprefix("module."): v for k, v in state.items()}


def check_state_dict(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Raise `ModelMissing` naming the first mismatches if `state` does not fit `model` exactly."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(expected.keys() - state.keys())
    extra = sorted(state.keys() - expected.keys())
    wrong = [
        f"{k} {tuple(state[k].shape)} != {shape}"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if extra:
        problems.append(f"{len(extra)} unexpected keys (e.g. {', '.join(extra[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} wrong shapes (e.g. {'; '.join(wrong[:2])})")
    broken = non_finite(state)
    if broken:
        problems.append(f"{len(broken)} tensors hold NaN or infinite values (e.g. {broken[0]})")
    if problems:
        raise ModelMissing("not a usable Wav2Lip generator checkpoint: " + "; ".join(problems))


def non_finite(state: dict[str, Tensor]) -> list[str]:
    """Return the names of floating-point tensors holding NaN or infinite values."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]


def probe(model: Wav2Lip) -> None:
    """Run one forward pass on a fixed input; raise `ModelMissing` unless the crop is sane.

    Catches what the tensors alone do not show, such as negative BatchNorm variances.
    """
    mel = torch.linspace(-4.0, 1.0, 80 * 16).reshape(1, 1, 80, 16)
    faces = torch.full((1, 6, 96, 96), 0.5)
    with torch.no_grad():
        out = model(mel, faces)
    if tuple(out.shape) != (1, 3, 96, 96) or not bool(out.isfinite().all()):
        raise ModelMissing("the Wav2Lip generator's probe pass gives NaN or infinite pixels")


def load_wav2lip(path: Path, fix: str = "") -> Wav2Lip:
    """Load an official-format generator checkpoint strictly onto the CPU, in eval mode.

    Refuses, with `ModelMissing` naming the file and ending in `fix`, a file that is absent,
    unreadable, of something else (keys or shapes differ), holds non-finite weights, or whose
    probe forward pass gives non-finite pixels.
    """
    if not path.is_file():
        raise ModelMissing(f"Wav2Lip weights not found at {path}{fix}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = extract_state_dict(checkpoint)
        # Built without storage (no random initial values to draw, a third of a second on a
        # busy CPU), then given the file's tensors; strict, so a missing one still fails here.
        with torch.device("meta"):
            model = Wav2Lip()
        check_state_dict(model, state)
        model.load_state_dict(state, strict=True, assign=True)
        model.eval()
        probe(model)
    except ModelMissing as exc:
        raise ModelMissing(f"{path}: {exc}{fix}") from exc
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise ModelMissing(f"cannot read Wav2Lip weights {path}: {load_error(exc)}{fix}") from exc
    return model


def verify_checkpoint(path: Path, fix: str) -> str:
    """Load a checkpoint as a worker would (`models import` and `verify` call this)."""
    load_wav2lip(path, fix)
    return "strict load and probe pass ok"
