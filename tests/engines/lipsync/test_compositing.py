"""Compositing: the feathered mouth/jaw mask, colour matching, a blend confined to the mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.lipsync import compositing, facetrack
from engines.lipsync.demo_assets import astronaut_portrait

pytestmark = pytest.mark.env("lipsync")


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """The demo portrait and its FaceMesh landmarks."""
    image = astronaut_portrait(256)
    with facetrack.FaceMesh(video=False) as mesh:
        lm = mesh.landmarks(image)
    assert lm is not None
    return image, lm


def inside(polygon: np.ndarray, point: np.ndarray) -> bool:
    """Whether `point` lies strictly inside `polygon`."""
    return (
        cv2.pointPolygonTest(polygon.astype(np.float32), (float(point[0]), float(point[1])), False)
        > 0
    )


def test_polygon_covers_mouth_and_chin_but_not_eyes_or_nose(
    face: tuple[np.ndarray, np.ndarray],
) -> None:
    _, lm = face
    poly = compositing.mouth_jaw_polygon(lm)
    for i in (*facetrack.LIPS_OUTER_UPPER[1:-1], *facetrack.LIPS_OUTER_LOWER[1:-1], facetrack.CHIN):
        assert inside(poly, lm[i]), i
    for i in (facetrack.IRIS_A, facetrack.IRIS_B, facetrack.NOSE_TIP):
        assert not inside(poly, lm[i]), i


def test_mask_is_soft_and_zero_outside_its_polygon(face: tuple[np.ndarray, np.ndarray]) -> None:
    _image, lm = face
    mask = compositing.mouth_jaw_mask(lm, 256, 256)
    a = mask.alpha
    assert a.dtype == np.float32 and a.shape == (mask.box.height, mask.box.width)
    assert a.min() == 0.0 and a.max() == pytest.approx(1.0)
    assert ((a > 0.05) & (a < 0.95)).sum() > 50  # a real feathered edge, not a hard cut
    poly = (compositing.mouth_jaw_polygon(lm) - [mask.box.x1, mask.box.y1]).astype(np.float32)
    ys, xs = np.nonzero(a > 0)
    dist = [
        cv2.pointPolygonTest(poly, (float(x), float(y)), True) for x, y in zip(xs, ys, strict=True)
    ]
    assert min(dist) > -1.5  # nothing outside the polygon (allowing for rasterisation)
    centre = lm[[facetrack.INNER_UPPER_MID, facetrack.INNER_LOWER_MID]].mean(0)
    cx, cy = int(centre[0]) - mask.box.x1, int(centre[1]) - mask.box.y1
    assert a[cy, cx] == pytest.approx(1.0)


def test_blend_is_bit_identical_outside_the_mask(face: tuple[np.ndarray, np.ndarray]) -> None:
    image, lm = face
    rng = np.random.default_rng(0)
    mask = compositing.mouth_jaw_mask(lm, 256, 256)
    patch = rng.integers(0, 256, (mask.box.height, mask.box.width, 3), dtype=np.uint8)
    out = compositing.blend(image, patch, mask)
    full = np.zeros(image.shape[:2], np.float32)
    full[mask.box.slices] = mask.alpha
    assert np.array_equal(out[full == 0], image[full == 0])
    assert not np.array_equal(out[full > 0], image[full > 0])
    assert np.array_equal(
        out[full == 1], np.broadcast_to(patch, out[mask.box.slices].shape)[mask.alpha == 1]
    )
    # In place gives the same result and leaves the outside alone too.
    frame = image.copy()
    compositing.blend(frame, patch, mask, out=frame)
    assert np.array_equal(frame, out)


def test_match_color_moves_statistics_to_the_reference() -> None:
    rng = np.random.default_rng(1)
    reference = np.clip(rng.normal((180, 120, 100), 12, (40, 40, 3)), 0, 255).astype(np.uint8)
    patch = np.clip(rng.normal((120, 130, 150), 25, (40, 40, 3)), 0, 255).astype(np.uint8)
    out = compositing.match_color(patch, reference)
    assert np.abs(out.reshape(-1, 3).mean(0) - reference.reshape(-1, 3).mean(0)).max() < 2.0
    assert np.abs(out.reshape(-1, 3).std(0) - reference.reshape(-1, 3).std(0)).max() < 2.0


def test_match_color_uses_only_the_weighted_region() -> None:
    reference = np.zeros((20, 20, 3), np.uint8)
    reference[:, :10] = 200  # skin on the left, dark background on the right
    patch = np.full((20, 20, 3), 60, np.uint8)
    weight = np.zeros((20, 20), np.float32)
    weight[:, :10] = 1.0
    out = compositing.match_color(patch, reference, weight)
    assert np.abs(out[:, :10].astype(int) - 200).max() <= 1
