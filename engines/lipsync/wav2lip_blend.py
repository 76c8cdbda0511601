"""Wav2Lip's per-frame image work: the 96×96 generator crop, and blending its output back.

Both work on RGB frames or, without converting the whole frame, on I420 frames.

The blend goes through `engines.lipsync.compositing` (the feathered mouth-jaw mask and the
blend that writes only inside it), faded out towards the edge of the generated crop.
"""

from __future__ import annotations

from typing import TypeAlias

import cv2
import numpy as np
from numpy.typing import NDArray

from engines.lipsync.compositing import Box, Mask, blend, mouth_jaw_mask
from engines.lipsync.wav2lip_io import even_box, roi_to_rgb, write_roi

U8: TypeAlias = NDArray[np.uint8]
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
    """Blend a generated crop into an RGB `frame` (in place) through `blend_mask`."""
    mask = blend_mask(frame.shape, box, landmarks)
    if mask.alpha.any():
        _blend_crop(frame, generated, box, mask)
    return frame


def composite_i420(
    frame: U8,
    generated: U8,
    box: NDArray[np.int32],
    landmarks: NDArray[np.float32],
    size: tuple[int, int],
) -> U8:
    """Blend a generated crop into an I420 `frame` of `size` (width, height), in place.

    Only the mask's box is turned into RGB, blended, and written back where the mask is.
    """
    width, height = size
    mask = blend_mask((height, width), box, landmarks)
    if not mask.alpha.any():
        return frame
    mb = mask.box
    roi = even_box((mb.x1, mb.y1, mb.x2, mb.y2), width, height)
    x0, y0 = roi[0], roi[1]
    rgb = roi_to_rgb(frame, roi, width, height)
    local = Mask(Box(mb.x1 - x0, mb.y1 - y0, mb.x2 - x0, mb.y2 - y0), mask.alpha)
    _blend_crop(rgb, generated, box - np.array([x0, y0, x0, y0], np.int32), local)
    alpha = np.zeros(rgb.shape[:2], np.float32)
    alpha[local.box.slices] = mask.alpha
    write_roi(frame, rgb, alpha, roi, width, height)
    return frame


def face_crop_i420(frame: U8, box: NDArray[np.int32], size: tuple[int, int]) -> U8:
    """`face_crop` of an I420 frame of `size` (width, height), converting only the box."""
    width, height = size
    x1, y1, x2, y2 = (int(v) for v in box)
    roi = even_box((x1, y1, x2, y2), width, height)
    rgb = roi_to_rgb(frame, roi, width, height)
    local = np.array([x1 - roi[0], y1 - roi[1], x2 - roi[0], y2 - roi[1]], np.int32)
    return face_crop(rgb, local)


def _blend_crop(frame: U8, generated: U8, box: NDArray[np.int32], mask: Mask) -> None:
    """Resize `generated` into `box`, colour-match it and blend it through `mask`."""
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
