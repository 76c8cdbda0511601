"""S3FD: the checkpoint layout, box decoding, suppression and the strict loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.lipsync.s3fd import S3FD, box_iou, decode, detect, load_s3fd, nms
from jayavatar.errors import ModelMissing

pytestmark = pytest.mark.env("lipsync")


def test_layout_matches_the_published_checkpoint() -> None:
    model = S3FD()
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == 22_459_110  # "about 22.5 M"
    assert tuple(state["conv3_3_norm_mbox_conf.weight"].shape) == (4, 256, 3, 3)
    assert tuple(state["fc6.weight"].shape) == (1024, 512, 3, 3)
    assert tuple(state["conv4_3_norm.weight"].shape) == (512,)
    assert float(state["conv5_3_norm.weight"][0]) == 5.0


def test_heads_have_strides_4_to_128() -> None:
    with torch.no_grad():
        heads = S3FD().eval()(torch.zeros(1, 3, 256, 256))
    # The published port's fc6 is a 3×3 conv padded by 3 (not dilated): its map is 4 cells
    # larger than 256 / 32, and the two maps after it inherit that.
    assert [prob.shape[-1] for prob, _ in heads] == [64, 32, 16, 12, 6, 3]
    assert all(prob.shape[1] == 1 and loc.shape[1] == 4 for prob, loc in heads)


def test_decode_places_an_anchor_box_at_its_cell() -> None:
    prob = torch.zeros(1, 1, 8, 8)
    prob[0, 0, 2, 5] = 0.9
    loc = torch.zeros(1, 4, 8, 8)
    loc[0, :, 2, 5] = torch.tensor([1.0, 0.0, 0.0, np.log(2.0) / 0.2])
    empty = [(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, 4))]
    boxes = decode([(prob, loc), *empty])
    # Level 0: stride 4, anchor 16 px centred at (5*4+2, 2*4+2); x shifted by 0.1*16,
    # height doubled.
    np.testing.assert_allclose(boxes, [[15.6, -6.0, 31.6, 26.0, 0.9]], atol=1e-4)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10, 0.6], [1, 1, 11, 11, 0.9], [50, 50, 60, 60, 0.7]], np.float32)
    kept = nms(boxes)
    assert kept[:, 4].tolist() == pytest.approx([0.9, 0.7])
    assert box_iou(boxes[0, :4], boxes[1:, :4])[0] == pytest.approx(81 / 119)


def test_detect_returns_boxes_in_frame_pixels() -> None:
    torch.manual_seed(0)
    frame = np.random.default_rng(0).integers(0, 255, (400, 1280, 3), dtype=np.uint8)
    boxes = detect(S3FD().eval(), frame, torch.device("cpu"))
    assert boxes.ndim == 2 and boxes.shape[1] == 5
    assert (boxes[:, 4] > 0.5).all()


def test_loader_is_strict(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="models pull s3fd"):
        load_s3fd(tmp_path / "s3fd.pth")
    good = tmp_path / "good.pth"
    torch.save(S3FD().state_dict(), good)
    assert isinstance(load_s3fd(good), S3FD)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc6.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ModelMissing, match=r"wrong\.pth is not a usable S3FD checkpoint"):
        load_s3fd(wrong)
    poisoned = S3FD().state_dict()
    poisoned["conv1_1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(poisoned, wrong)
    with pytest.raises(ModelMissing, match=r"NaN or infinite values in conv1_1\.weight"):
        load_s3fd(wrong)


def test_prepare_uses_s3fd_boxes_when_its_weights_are_present(tmp_path: Path) -> None:
    from engines.lipsync.demo_assets import make_face_clip
    from engines.lipsync.facetrack import FaceTrack
    from engines.lipsync.wav2lip import Wav2LipEngine
    from jayavatar.settings import Settings

    torch.manual_seed(0)
    (tmp_path / "models" / "s3fd").mkdir(parents=True)
    torch.save(S3FD().state_dict(), tmp_path / "models" / "s3fd" / "s3fd.pth")
    settings = Settings(models_dir=tmp_path / "models", device="cpu")
    clip = make_face_clip(tmp_path / "face.mp4", seconds=0.2, side=160)
    meta = Wav2LipEngine(settings).prepare(clip, tmp_path / "avatar")
    assert meta["wav2lip_boxes"] == "s3fd"
    track = FaceTrack.load(tmp_path / "avatar" / "track.npz")
    with np.load(tmp_path / "avatar" / "wav2lip.npz") as data:
        boxes, source = data["boxes"], str(data["box_source"])
    assert source == "s3fd" and boxes.shape == (len(track), 4)
    # Boxes stay inside the frame and keep the reference's 10 px of chin room where they can.
    assert (boxes[:, [0, 2]] <= 160).all() and (boxes[:, [1, 3]] <= 160).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
