"""The Wav2Lip generator: official layout, loader variants, strict checks, BatchNorm folding."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli.models import models as models_cli
from cli.progress import PLAIN_LINE
from engines.lipsync.wav2lip_model import (
    PARAM_COUNT,
    Wav2Lip,
    count_parameters,
    fuse_batchnorm,
    load_wav2lip,
)
from jayavatar.errors import ModelMissing
from jayavatar.settings import Settings

pytestmark = pytest.mark.env("lipsync")


def randomised(seed: int = 0) -> Wav2Lip:
    """Return a generator whose weights and BatchNorm statistics are all random."""
    torch.manual_seed(seed)
    model = Wav2Lip()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    model.eval()
    return model


def official_checkpoint(model: Wav2Lip, prefix: str = "module.") -> dict[str, object]:
    """Return `model` packed like the reference training script saves it."""
    return {
        "state_dict": {prefix + k: v for k, v in model.state_dict().items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
        "global_step": 123,
        "global_epoch": 4,
    }


@pytest.fixture(scope="module")
def model() -> Wav2Lip:
    """One random generator shared by the module's tests."""
    return randomised()


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """A small batch of mel windows and 6-channel faces."""
    gen = torch.Generator().manual_seed(1)
    mel = torch.randn(2, 1, 80, 16, generator=gen)
    faces = torch.rand(2, 6, 96, 96, generator=gen)
    return mel, faces


def test_parameter_count_matches_the_official_generator(model: Wav2Lip) -> None:
    assert count_parameters(model) == PARAM_COUNT == 36_298_035


def test_state_dict_uses_the_official_key_layout(model: Wav2Lip) -> None:
    keys = model.state_dict().keys()
    assert "face_encoder_blocks.0.0.conv_block.0.weight" in keys
    assert "face_encoder_blocks.6.1.conv_block.1.num_batches_tracked" in keys
    assert "audio_encoder.12.conv_block.0.weight" in keys
    assert "face_decoder_blocks.1.0.conv_block.0.weight" in keys
    assert "output_block.1.weight" in keys
    shape = model.state_dict()["face_decoder_blocks.2.0.conv_block.0.weight"].shape
    assert tuple(shape) == (1024, 512, 3, 3)  # ConvTranspose2d: (in, out, k, k)


def test_forward_gives_a_96px_rgb_crop_in_unit_range(
    model: Wav2Lip, inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    with torch.no_grad():
        out = model(*inputs)
    assert out.shape == (2, 3, 96, 96)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize(
    ("wrapped", "prefix"), [(True, "module."), (True, ""), (False, "module."), (False, "")]
)
def test_loader_accepts_every_official_variant(
    tmp_path: Path,
    model: Wav2Lip,
    inputs: tuple[torch.Tensor, torch.Tensor],
    wrapped: bool,
    prefix: str,
) -> None:
    checkpoint = official_checkpoint(model, prefix)
    path = tmp_path / "wav2lip_gan.pth"
    torch.save(checkpoint if wrapped else checkpoint["state_dict"], path)
    loaded = load_wav2lip(path)
    assert not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(loaded(*inputs), model(*inputs))


def test_missing_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "wav2lip_gan.pth"
    with pytest.raises(ModelMissing, match=r"wav2lip_gan\.pth.*jayavatar models import"):
        load_wav2lip(path, fix="; run: jayavatar models import wav2lip_gan FILE")


def test_unreadable_file_is_model_missing(tmp_path: Path) -> None:
    path = tmp_path / "wav2lip.pth"
    path.write_bytes(b"<html>not a checkpoint</html>")
    with pytest.raises(ModelMissing, match=r"cannot read .*not a checkpoint of plain tensors"):
        load_wav2lip(path)


def test_wrong_checkpoint_lists_missing_and_unexpected_keys(tmp_path: Path, model: Wav2Lip) -> None:
    state = dict(model.state_dict())
    del state["output_block.1.weight"]
    state["disc.0.weight"] = torch.zeros(1)
    path = tmp_path / "other.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(
        ModelMissing,
        match=r"other\.pth: .*1 missing keys.*output_block\.1\.weight.*disc\.0\.weight",
    ):
        load_wav2lip(path)


def test_wrong_shapes_are_reported(tmp_path: Path, model: Wav2Lip) -> None:
    state = dict(model.state_dict())
    state["output_block.1.weight"] = torch.zeros(3, 64, 1, 1)
    path = tmp_path / "resized.pth"
    torch.save(state, path)
    with pytest.raises(
        ModelMissing, match=r"resized\.pth: .*wrong shapes.*output_block\.1\.weight"
    ):
        load_wav2lip(path)


def test_a_non_checkpoint_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(ModelMissing, match="not a Wav2Lip checkpoint"):
        load_wav2lip(path)


FIX = "; fix: jayavatar models import wav2lip_gan FILE"


def test_non_finite_weights_name_the_file_the_tensor_and_the_fix(
    tmp_path: Path, model: Wav2Lip
) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["audio_encoder.3.conv_block.0.weight"][0, 0, 0, 0] = float("nan")
    state["output_block.1.bias"][1] = float("inf")
    path = tmp_path / "wav2lip_gan.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(ModelMissing) as caught:
        load_wav2lip(path, FIX)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    assert "2 tensors hold NaN or infinite values" in message
    assert "audio_encoder.3.conv_block.0.weight" in message and message.endswith(FIX)


def test_the_probe_pass_catches_what_finite_weights_hide(tmp_path: Path, model: Wav2Lip) -> None:
    """A negative BatchNorm variance is finite, but the generator's output is not."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["face_encoder_blocks.0.0.conv_block.1.running_var"].fill_(-1.0)
    path = tmp_path / "wav2lip_gan.pth"
    torch.save(state, path)
    with pytest.raises(ModelMissing, match=r"probe pass gives NaN.*models import wav2lip_gan"):
        load_wav2lip(path, FIX)


def test_corrupted_tensor_bytes_are_refused(tmp_path: Path, model: Wav2Lip) -> None:
    """Bytes overwritten inside the stored tensors (a damaged copy) never load silently."""
    path = tmp_path / "wav2lip_gan.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096  # 0xffffffff is a NaN in float32
    path.write_bytes(bytes(data))
    with pytest.raises(ModelMissing, match=r"wav2lip_gan\.pth.*models import wav2lip_gan"):
        load_wav2lip(path, FIX)


def import_model(models_dir: Path, source: Path) -> tuple[int, str, str]:
    """Run `jayavatar models import wav2lip_gan SOURCE` with this environment's loaders."""
    settings = Settings(models_dir=models_dir)
    # No engine environments under --root: this interpreter (the lip-sync one) loads it.
    args = ["import", "wav2lip_gan", str(source), "--root", str(source.parent)]
    result = CliRunner().invoke(models_cli, args, obj=settings)
    return result.exit_code, result.stdout, result.stderr


def test_models_import_loads_the_checkpoint_strictly(tmp_path: Path, model: Wav2Lip) -> None:
    good = tmp_path / "good.pth"
    torch.save(official_checkpoint(model), good)
    code, out, err = import_model(tmp_path / "models", good)
    assert code == 0, err
    assert "wav2lip/wav2lip_gan.pth: ok (strict load and probe pass ok)" in out
    verified = CliRunner().invoke(
        models_cli,
        ["verify", "wav2lip_gan", "--root", str(tmp_path)],
        obj=Settings(models_dir=tmp_path / "models"),
    )
    assert verified.exit_code == 0
    assert re.search(r"wav2lip_gan \(load\)\s+ok\s+strict load and probe pass ok", verified.stdout)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["output_block.1.weight"] = torch.zeros(3, 32, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    code, _, err = import_model(tmp_path / "models", bad)
    errors = [line for line in err.splitlines() if not PLAIN_LINE.match(line)]  # not progress
    assert code == 1 and len(errors) == 1
    assert "wrong shapes" in err and "output_block.1.weight" in err
    assert "models import wav2lip_gan" in err
    assert not (tmp_path / "models" / "wav2lip" / "wav2lip_gan.pth").exists()


def test_folding_batchnorm_keeps_the_output(
    model: Wav2Lip, inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    fused = fuse_batchnorm(fuse_batchnorm(copy.deepcopy(model)))  # folding twice is harmless
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(*inputs), model(*inputs), atol=1e-5, rtol=1e-4)
