"""S3FD, the reference face detector of Wav2Lip, for users who supply its weights.

Layout and names follow the face-alignment project's `s3fd-619a316812.pth`: a VGG16 trunk,
L2-normalised taps at conv3_3/conv4_3/conv5_3, and six (score, box) heads at strides 4 to 128
with square anchors four strides wide. Used once per avatar at preparation, never at render.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from engines.models import load_error
from jayavatar.errors import ModelMissing

if TYPE_CHECKING:
    from engines.lipsync.facetrack import FaceTrack

#: BGR means subtracted before the network, as in training.
BGR_MEAN = (104.0, 117.0, 123.0)
SCORE_MIN = 0.05
KEEP_SCORE = 0.5
NMS_IOU = 0.3
MAX_CANDIDATES = 200
#: Frames are shrunk to this long side for detection: S3FD at 1080p costs ~1 TFLOP a frame.
DETECT_SIDE = 640
VGG = (
    ("conv1", 3, 64, 2),
    ("conv2", 64, 128, 2),
    ("conv3", 128, 256, 3),
    ("conv4", 256, 512, 3),
    ("conv5", 512, 512, 3),
)
#: Heads: (tap, channels, score channels). conv3_3's head has 3 background scores (max-out).
HEADS = (
    ("conv3_3_norm", 256, 4),
    ("conv4_3_norm", 512, 2),
    ("conv5_3_norm", 512, 2),
    ("fc7", 1024, 2),
    ("conv6_2", 512, 2),
    ("conv7_2", 256, 2),
)


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise each position's channel vector, then scale it."""
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
        return x / norm * self.weight.view(1, -1, 1, 1)


class S3FD(nn.Module):
    """The S3FD network; `forward` returns (scores, boxes) pairs for the six heads."""

    def __init__(self) -> None:
        super().__init__()
        for stage, cin, cout, count in VGG:
            for k in range(1, count + 1):
                conv = nn.Conv2d(cin if k == 1 else cout, cout, 3, 1, 1)
                self.add_module(f"{stage}_{k}", conv)
        self.fc6 = nn.Conv2d(512, 1024, 3, 1, 3)
        self.fc7 = nn.Conv2d(1024, 1024, 1, 1, 0)
        self.conv6_1 = nn.Conv2d(1024, 256, 1, 1, 0)
        self.conv6_2 = nn.Conv2d(256, 512, 3, 2, 1)
        self.conv7_1 = nn.Conv2d(512, 128, 1, 1, 0)
        self.conv7_2 = nn.Conv2d(128, 256, 3, 2, 1)
        self.conv3_3_norm = L2Norm(256, 10.0)
        self.conv4_3_norm = L2Norm(512, 8.0)
        self.conv5_3_norm = L2Norm(512, 5.0)
        for tap, channels, scores in HEADS:
            self.add_module(f"{tap}_mbox_conf", nn.Conv2d(channels, scores, 3, 1, 1))
            self.add_module(f"{tap}_mbox_loc", nn.Conv2d(channels, 4, 3, 1, 1))

    def _conv(self, name: str, x: Tensor) -> Tensor:
        """Apply the named convolution and a ReLU."""
        return F.relu(getattr(self, name)(x))

    def forward(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Return per head (softmax face probability B×1×H×W, box offsets B×4×H×W)."""
        taps: dict[str, Tensor] = {}
        for stage, _, _, count in VGG:
            for k in range(1, count + 1):
                x = self._conv(f"{stage}_{k}", x)
            taps[f"{stage}_{count}"] = x
            x = F.max_pool2d(x, 2, 2)
        x = self._conv("fc7", self._conv("fc6", x))
        taps["fc7"] = x
        x = self._conv("conv6_2", self._conv("conv6_1", x))
        taps["conv6_2"] = x
        taps["conv7_2"] = self._conv("conv7_2", self._conv("conv7_1", x))
        for name in ("conv3_3", "conv4_3", "conv5_3"):
            taps[f"{name}_norm"] = getattr(self, f"{name}_norm")(taps[name])
        out = []
        for tap, _, scores in HEADS:
            conf = getattr(self, f"{tap}_mbox_conf")(taps[tap])
            if scores == 4:  # max-out background: three background scores, one face score
                conf = torch.cat((conf[:, :3].amax(dim=1, keepdim=True), conf[:, 3:]), dim=1)
            prob = F.softmax(conf, dim=1)[:, 1:]
            out.append((prob, getattr(self, f"{tap}_mbox_loc")(taps[tap])))
        return out


def load_s3fd(path: Path, fix: str = "; fix: jayavatar models pull s3fd") -> S3FD:
    """Load S3FD weights strictly on the CPU; `ModelMissing` names the file and ends in `fix`.

    Refused: an absent or unreadable file, other keys or shapes, non-finite weights, and
    weights whose probe forward pass gives non-finite scores.
    """
    if not path.is_file():
        raise ModelMissing(f"S3FD weights not found at {path}{fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise ModelMissing(f"cannot read S3FD weights {path}: {load_error(exc)}{fix}") from exc
    problem = _state_problem(state)
    if problem:
        raise ModelMissing(f"{path} is not a usable S3FD checkpoint ({problem}){fix}")
    model = S3FD()
    model.load_state_dict(_unwrap(state))
    model.eval()
    with torch.no_grad():
        heads = model(torch.full((1, 3, 128, 128), 0.5))
    if not all(bool(t.isfinite().all()) for pair in heads for t in pair):
        raise ModelMissing(f"{path}: the S3FD probe pass gives NaN or infinite scores{fix}")
    return model


def _unwrap(state: Any) -> dict[str, Any]:
    """Return the weights of a checkpoint, without `state_dict` wrapper or `module.` prefixes."""
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        return {}
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _state_problem(state: Any) -> str:
    """Say why `state` is not the S3FD weights, or return ""."""
    weights = _unwrap(state)
    expected = {k: tuple(v.shape) for k, v in S3FD().state_dict().items()}
    got = {k: tuple(v.shape) for k, v in weights.items() if isinstance(v, Tensor)}
    if got != expected:
        return f"mismatch: {sorted(set(expected.items()) ^ set(got.items()))[:3]}"
    broken = [
        k for k, v in weights.items() if v.is_floating_point() and not bool(v.isfinite().all())
    ]
    return f"NaN or infinite values in {broken[0]}" if broken else ""


def verify_weights(path: Path, fix: str) -> str:
    """Load S3FD weights as the engine would (`models import`, `verify` and worker start)."""
    load_s3fd(path, fix)
    return "strict load and probe pass ok"


def decode(heads: list[tuple[Tensor, Tensor]], min_score: float = SCORE_MIN) -> NDArray[np.float32]:
    """Turn one image's head outputs into (K, 5) x1, y1, x2, y2, score candidates."""
    found = []
    for level, (prob, loc) in enumerate(heads):
        stride = 2 ** (level + 2)
        rows, cols = torch.nonzero(prob[0, 0] > min_score, as_tuple=True)
        if rows.numel() == 0:
            continue
        centre = torch.stack((cols, rows), dim=1).float() * stride + stride / 2
        size = 4.0 * stride
        offsets = loc[0, :, rows, cols].T.float()
        # SSD box coding with variances 0.1 (centre) and 0.2 (log size).
        xy = centre + offsets[:, :2] * 0.1 * size
        wh = size * torch.exp(offsets[:, 2:] * 0.2)
        boxes = torch.cat((xy - wh / 2, xy + wh / 2, prob[0, 0, rows, cols, None]), dim=1)
        found.append(boxes)
    if not found:
        return np.zeros((0, 5), np.float32)
    result: NDArray[np.float32] = torch.cat(found).cpu().numpy().astype(np.float32)
    return result


def nms(boxes: NDArray[np.float32], iou: float = NMS_IOU) -> NDArray[np.float32]:
    """Greedy non-maximum suppression over (K, 5) boxes, best score first."""
    order = np.argsort(-boxes[:, 4])
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        overlap = box_iou(boxes[best, :4], boxes[rest, :4])
        order = rest[overlap <= iou]
    kept: NDArray[np.float32] = boxes[keep]
    return kept


def box_iou(box: NDArray[np.float32], others: NDArray[np.float32]) -> NDArray[np.float64]:
    """Intersection over union of one box with each of `others` (x1, y1, x2, y2)."""
    lo = np.maximum(box[:2], others[:, :2])
    hi = np.minimum(box[2:4], others[:, 2:4])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:4] - box[:2])
    areas = np.prod(others[:, 2:4] - others[:, :2], axis=1)
    result: NDArray[np.float64] = inter / np.maximum(area + areas - inter, 1e-9)
    return result


def detect(model: S3FD, frame: NDArray[np.uint8], device: torch.device) -> NDArray[np.float32]:
    """Return the faces (K, 5) in an RGB frame, in that frame's pixel coordinates."""
    h, w = frame.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = cv2.resize(frame, (round(w * scale), round(h * scale))) if scale < 1 else frame
    bgr = small[..., ::-1].astype(np.float32) - np.array(BGR_MEAN, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(bgr.transpose(2, 0, 1)))[None].to(device)
    with torch.inference_mode():
        found = decode(model(x))
    # Greedy NMS only lets a box suppress lower-scored ones, so dropping the boxes below the
    # keep threshold first gives the same result; a frame never holds hundreds of faces.
    found = found[found[:, 4] > KEEP_SCORE]
    boxes = nms(found[np.argsort(-found[:, 4])[:MAX_CANDIDATES]])
    boxes[:, :4] /= scale
    return boxes


def detect_clip_boxes(
    weights: Path, clip: Path, track: FaceTrack, device: torch.device
) -> NDArray[np.float64]:
    """Return one S3FD box per clip frame for the tracked face (FaceMesh's box where S3FD misses).

    Of several faces, the one overlapping the FaceMesh box most is the tracked speaker.
    """
    from engines.media.video import iter_frames

    model = load_s3fd(weights).to(device)
    out = track.boxes.astype(np.float64).copy()
    for i, frame in enumerate(iter_frames(clip)):
        if i >= len(track) or not track.present[i]:
            continue
        faces = detect(model, frame, device)
        if len(faces):
            overlap = box_iou(track.boxes[i].astype(np.float32), faces[:, :4])
            if overlap.max() > 0.3:
                out[i] = faces[int(overlap.argmax()), :4]
    return out
