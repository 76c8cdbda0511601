"""Wav2Lip's crop and blend: same colour match as `compositing`, writes only inside the mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from engines.lipsync import compositing
from engines.lipsync.facetrack import FACE_OVAL, MOUTH_LEFT, MOUTH_RIGHT, NOSE_BASE
from engines.lipsync.wav2lip_blend import CROP, blend_mask, composite, face_crop, match_color

pytestmark = pytest.mark.env("lipsync")


def face_landmarks(cx: float, cy: float, rx: float, ry: float) -> NDArray[np.float32]:
    """The FaceMesh points the blend uses, placed on an elliptical face."""
    points = np.tile(np.array([cx, cy], np.float32), (478, 1))
    angles = -np.pi / 2 + 2 * np.pi * np.arange(len(FACE_OVAL)) / len(FACE_OVAL)
    points[list(FACE_OVAL)] = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1)
    points[MOUTH_LEFT] = (cx - 0.35 * rx, cy + 0.45 * ry)
    points[MOUTH_RIGHT] = (cx + 0.35 * rx, cy + 0.45 * ry)
    points[NOSE_BASE] = (cx, cy + 0.2 * ry)
    return points


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_match_color_equals_the_compositing_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    noise = rng.integers(40, 220, (120, 90, 3), dtype=np.uint8)
    reference = np.asarray(cv2.GaussianBlur(noise, (7, 7), 2), dtype=np.uint8)
    patch = rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)
    weight = rng.random((120, 90)).astype(np.float32) * (rng.random((120, 90)) > 0.3)
    want = compositing.match_color(patch, reference, weight)
    got = match_color(patch, reference, weight)
    assert np.abs(want.astype(int) - got).max() <= 1
    assert (want != got).mean() < 0.01


def test_flat_weight_leaves_the_patch_alone() -> None:
    patch = np.full((8, 8, 3), 77, np.uint8)
    out = match_color(patch, patch, np.zeros((8, 8), np.float32))
    assert np.array_equal(out, patch)


def test_face_crop_is_96px() -> None:
    frame = np.zeros((360, 640, 3), np.uint8)
    frame[100:200, 300:380] = 200
    crop = face_crop(frame, np.array([300, 100, 380, 200], np.int32))
    assert crop.shape == (CROP, CROP, 3) and (crop == 200).all()


def test_composite_writes_only_inside_the_mask_and_inside_the_crop() -> None:
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    source = frame.copy()
    landmarks = face_landmarks(320, 170, 60, 80)
    box = np.array([260, 90, 380, 260], np.int32)
    generated = np.full((CROP, CROP, 3), 255, np.uint8)
    composite(frame, generated, box, landmarks)
    mask = blend_mask(frame.shape, box, landmarks)
    inside = np.zeros(frame.shape[:2], bool)
    inside[mask.box.slices] = mask.alpha > 0
    assert inside.any()
    assert np.array_equal(frame[~inside], source[~inside])
    assert (frame[inside] != source[inside]).any()
    rows, cols = np.nonzero(inside)
    assert rows.min() >= box[1] and rows.max() < box[3]
    assert cols.min() >= box[0] and cols.max() < box[2]


def test_the_mask_fades_out_before_the_crop_edge() -> None:
    landmarks = face_landmarks(320, 170, 60, 80)
    # A crop that cuts through the jaw: the mask must reach zero at its edge, not stop hard.
    box = np.array([280, 90, 360, 230], np.int32)
    mask = blend_mask((360, 640, 3), box, landmarks)
    full = np.zeros((360, 640), np.float32)
    full[mask.box.slices] = mask.alpha
    assert full[:, box[2] - 1].max() == 0.0 and full[box[3] - 1].max() == 0.0
    assert full[:, box[2] - 4].max() < 0.75
