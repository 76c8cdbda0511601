"""Wav2Lip's per-frame image work: the 96×96 generator crop, and blending its output back.

The blend goes through `engines.compositing` (the feathered mouth-jaw mask and the blend that
writes only inside it), faded out towards the edge of the generated crop.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from engines.compositing import Mask, blend, mouth_jaw_mask

U8 = NDArray[np.uint8]
#: Side of the square face crop the generator works on.
CROP = 96
#: Width (px) over which the blend fades out towards the edge of the generated crop.
CROP_FEATHER = 6


def face_crop(frame: U8, box: NDArray[np.int32]) -> U8:
    """Cut the generator crop out of a frame and resize it to 96×96 like the reference."""
    x1, y1, x2, y2 = (int(v) for v in box)
    out = cv2.resize(frame[y1:y2, x1:x2], (CROP, CROP), interpolation=cv2.INTER_LINEAR)
    return np.asarray(out, dtype=np.uint8)


def blend_mask(
    shape: tuple[int, ...], box: NDArray[np.int32], landmarks: NDArray[np.float32]
) -> Mask:
    """The frame's blend mask: the feathered mouth-jaw mask, faded out at the crop's edges."""
    height, width = shape[:2]
    mask = mouth_jaw_mask(landmarks, width, height)
    x1, y1, x2, y2 = (int(v) for v in box)
    return Mask(mask.box, mask.alpha * _crop_window(mask, x1, y1, x2, y2))


def _crop_window(mask: Mask, x1: int, y1: int, x2: int, y2: int) -> NDArray[np.float32]:
    """Weights over the mask box: 0 outside the generated crop, rising to 1 inside its edge."""
    xs = np.arange(mask.box.x1, mask.box.x2, dtype=np.float32)
    ys = np.arange(mask.box.y1, mask.box.y2, dtype=np.float32)
    dx = np.minimum(xs - x1, x2 - 1 - xs)
    dy = np.minimum(ys - y1, y2 - 1 - ys)
    edge = np.minimum(dy[:, None], dx[None, :])
    window: NDArray[np.float32] = np.clip(edge / CROP_FEATHER, 0.0, 1.0).astype(np.float32)
    return window


def match_color(patch: U8, reference: U8, weight: NDArray[np.float32]) -> U8:
    """`compositing.match_color`'s result (per-channel weighted mean and spread), computed fast.

    Same statistics and clamped gain, but as two matrix products and one OpenCV affine pass:
    about 50× faster on a mouth-sized box, which decides whether compositing keeps up with
    the GPU at 720p and above.
    """
    total = float(weight.sum())
    if total < 1.0:
        return patch.copy()
    w = weight.reshape(-1).astype(np.float32) / total
    p = patch.reshape(-1, 3).astype(np.float32)
    r = reference.reshape(-1, 3).astype(np.float32)
    p_mean, r_mean = w @ p, w @ r
    p_std = np.sqrt(np.maximum(w @ (p * p) - p_mean**2, 0.0)) + 1e-3
    r_std = np.sqrt(np.maximum(w @ (r * r) - r_mean**2, 0.0)) + 1e-3
    gain = np.clip(r_std / p_std, 0.5, 2.0)
    affine = np.zeros((3, 4), np.float64)
    affine[[0, 1, 2], [0, 1, 2]] = gain
    affine[:, 3] = r_mean - p_mean * gain
    out = cv2.transform(patch, affine)  # rounds and saturates to uint8
    return np.asarray(out, dtype=np.uint8)


def composite(
    frame: U8, generated: U8, box: NDArray[np.int32], landmarks: NDArray[np.float32]
) -> U8:
    """Blend a generated crop into `frame` (in place) through `blend_mask`; return `frame`."""
    mask = blend_mask(frame.shape, box, landmarks)
    if not mask.alpha.any():
        return frame
    x1, y1, x2, y2 = (int(v) for v in box)
    mb = mask.box
    source = frame[mb.slices]
    patch = source.copy()
    resized = cv2.resize(generated, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
    # Paste the resized crop where it overlaps the mask box; alpha is zero elsewhere.
    ox1, oy1, ox2, oy2 = max(x1, mb.x1), max(y1, mb.y1), min(x2, mb.x2), min(y2, mb.y2)
    if ox2 > ox1 and oy2 > oy1:
        patch[oy1 - mb.y1 : oy2 - mb.y1, ox1 - mb.x1 : ox2 - mb.x1] = resized[
            oy1 - y1 : oy2 - y1, ox1 - x1 : ox2 - x1
        ]
    matched = match_color(patch, source, mask.alpha)
    blend(frame, matched, mask, out=frame)
    return frame
