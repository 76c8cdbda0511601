"""The batched torch compositor, run on the CPU: same pixels as the NumPy path, same guarantees."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from engines.lipsync.compositing import mouth_jaw_distance
from engines.lipsync.wav2lip_blend import CROP, blend_mask, composite_i420
from engines.lipsync.wav2lip_gpu_blend import TorchCompositor, i420_to_rgb, mask_alpha, rgb_to_i420
from tests.engines.lipsync.test_wav2lip_blend import face_landmarks

pytestmark = pytest.mark.env("lipsync")

W, H = 640, 360
CPU = torch.device("cpu")


def textured_i420(seed: int) -> NDArray[np.uint8]:
    """An I420 frame of smooth texture plus noise, so every conversion step shows."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([(xx // 2) % 200 + 30, (yy // 3) % 180 + 40, ((xx + yy) // 4) % 160 + 50], -1)
    rgb = np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    return np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), dtype=np.uint8)


def faces(n: int) -> tuple[NDArray[np.int32], NDArray[np.float32], NDArray[np.uint8]]:
    """Face boxes and landmarks of different sizes and places, and generated crops."""
    rng = np.random.default_rng(n)
    boxes, points = [], []
    for k in range(n):
        cx, cy, rx = 200 + 45 * k, 170 + 7 * k, 40 + 9 * k
        points.append(face_landmarks(cx, cy, rx, 1.3 * rx))
        boxes.append([cx - rx, cy - 1.3 * rx, cx + rx, min(H, cy + 1.3 * rx + 10)])
    generated = rng.integers(0, 255, (n, CROP, CROP, 3), dtype=np.uint8)
    return np.array(boxes, np.int32), np.stack(points), generated


def inside_mask(box: NDArray[np.int32], landmarks: NDArray[np.float32]) -> NDArray[np.bool_]:
    """The I420 bytes a blend may change: luma under the mask, chroma of the blocks it touches."""
    mask = blend_mask((H, W), box, landmarks)
    luma = np.zeros((H, W), bool)
    luma[mask.box.slices] = mask.alpha > 0
    chroma = luma.reshape(H // 2, 2, W // 2, 2).any(axis=(1, 3)).reshape(-1)
    return np.concatenate([luma.reshape(-1), chroma, chroma])


def test_colour_conversions_equal_opencv_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    i420 = rng.integers(0, 256, (H * 3 // 2, W), dtype=np.uint8)
    y = torch.from_numpy(i420[:H].copy())[None]
    u = torch.from_numpy(i420[H : H * 5 // 4].reshape(H // 2, W // 2).copy())[None]
    v = torch.from_numpy(i420[H * 5 // 4 :].reshape(H // 2, W // 2).copy())[None]
    rgb = i420_to_rgb(y, u, v)
    want = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
    assert np.array_equal(rgb[0].permute(1, 2, 0).numpy(), want)
    noise = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    planes = rgb_to_i420(torch.from_numpy(noise).permute(2, 0, 1)[None].to(torch.int32))
    got = np.concatenate([p[0].numpy().reshape(-1) for p in planes])
    assert np.array_equal(got, cv2.cvtColor(noise, cv2.COLOR_RGB2YUV_I420).reshape(-1))


def check_masks(device: torch.device, atol: float = 0.0) -> None:
    """Masks finished by `mask_alpha` on `device` equal `blend_mask`'s (within `atol`)."""
    boxes, landmarks, _ = faces(5)
    for box, points in zip(boxes, landmarks, strict=True):
        want = blend_mask((H, W), box, points)
        mb, inside, feather_px = mouth_jaw_distance(points, W, H)
        assert mb == want.box
        local = torch.from_numpy((box - [mb.x1, mb.y1, mb.x1, mb.y1]).astype(np.float32)[None])
        feather = torch.tensor([feather_px])
        args = (torch.from_numpy(inside)[None], feather, local)
        got = mask_alpha(*(t.to(device) for t in args))[0].cpu().numpy()
        assert want.alpha.any() and (got == 0).sum() == (want.alpha == 0).sum()
        assert np.abs(got - want.alpha).max() <= atol


def test_masks_finished_in_torch_equal_the_numpy_masks() -> None:
    check_masks(CPU)


def test_a_batch_matches_the_numpy_path_and_leaves_the_rest_alone() -> None:
    boxes, landmarks, generated = faces(5)
    source = [textured_i420(k) for k in range(5)]
    numpy_out = [f.copy() for f in source]
    for k, frame in enumerate(numpy_out):
        composite_i420(frame, generated[k], boxes[k], landmarks[k], (W, H))
    torch_out = [f.copy() for f in source]
    TorchCompositor(CPU, (W, H)).composite(torch_out, generated, boxes, landmarks)
    for k in range(5):
        inside = inside_mask(boxes[k], landmarks[k])
        got, src = torch_out[k].reshape(-1), source[k].reshape(-1)
        assert np.array_equal(got[~inside], src[~inside]), f"frame {k} changed outside"
        assert (got[inside] != src[inside]).mean() > 0.5  # the mouth really went in
        diff = np.abs(torch_out[k].astype(np.int16) - numpy_out[k])
        assert diff.max() <= 2 and diff[inside.reshape(diff.shape)].mean() < 0.2, k


def test_a_box_too_small_for_a_mask_passes_through() -> None:
    boxes, landmarks, generated = faces(2)
    # A crop far from the mouth: the crop window zeroes the whole mask.
    boxes[1] = [0, 0, 20, 20]
    source = [textured_i420(7), textured_i420(8)]
    frames = [f.copy() for f in source]
    TorchCompositor(CPU, (W, H)).composite(frames, generated, boxes, landmarks)
    assert np.array_equal(frames[1], source[1])
    assert not np.array_equal(frames[0], source[0])


def test_reused_buffers_do_not_leak_between_batches() -> None:
    compositor = TorchCompositor(CPU, (W, H))
    boxes, landmarks, generated = faces(4)
    big = [textured_i420(k) for k in range(4)]
    compositor.composite(big, generated, boxes, landmarks)  # grows the buffers
    small = [textured_i420(9)]
    alone = [small[0].copy()]
    compositor.composite(small, generated[:1], boxes[:1], landmarks[:1])
    TorchCompositor(CPU, (W, H)).composite(alone, generated[:1], boxes[:1], landmarks[:1])
    assert np.array_equal(small[0], alone[0])
