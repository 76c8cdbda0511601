"""Putting a regenerated mouth back into a frame: a feathered mask, colour matching, the blend.

The blend writes only where the mask is non-zero: every other pixel of the output is the
source pixel, bit for bit. Masks live in a crop box so per-frame work stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import cv2
import numpy as np
import numpy.typing as npt

from engines.lipsync.facetrack import (
    CHIN,
    FACE_OVAL,
    INNER_LOWER_MID,
    INNER_UPPER_MID,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    NOSE_BASE,
)

#: An RGB uint8 image (a frame or a crop of one).
Image: TypeAlias = npt.NDArray[np.uint8]
#: Float32 pixel points (K, 2), or a float32 weight map (H, W).
Floats: TypeAlias = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Box:
    """A crop rectangle in pixel coordinates, [x1, x2) x [y1, y2)."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.y2 - self.y1

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) slices that cut this box out of a frame."""
        return slice(self.y1, self.y2), slice(self.x1, self.x2)


@dataclass(frozen=True)
class Mask:
    """A soft mask: `alpha` (float32 in [0, 1], shape box.height x box.width) placed at `box`."""

    box: Box
    alpha: Floats


def box_around(points: Floats, margin: float, width: int, height: int) -> Box:
    """Return the bounding box of `points` grown by `margin` pixels, clipped to the frame."""
    lo = np.floor(points.min(axis=0) - margin).astype(int)
    hi = np.ceil(points.max(axis=0) + margin).astype(int) + 1
    return Box(
        max(0, int(lo[0])), max(0, int(lo[1])), min(width, int(hi[0])), min(height, int(hi[1]))
    )


def mouth_jaw_polygon(landmarks: Floats, chin_room: float = 0.35) -> Floats:
    """Return the lower-face polygon (K, 2): from under the nose, around the jaw line.

    The part of the jaw line below the mouth is pushed out from the mouth by `chin_room`
    times the mouth-to-chin distance, so a lowered chin still lies inside the region.
    """
    left, right = landmarks[MOUTH_LEFT], landmarks[MOUTH_RIGHT]
    centre = (left + right) / 2
    across = (right - left) / max(float(np.linalg.norm(right - left)), 1e-6)
    down = np.array([-across[1], across[0]], np.float32)
    if float(np.dot(landmarks[CHIN] - centre, down)) < 0:
        down = -down
    nose_v = float(np.dot(landmarks[NOSE_BASE] - centre, down))
    chin_v = float(np.dot(landmarks[CHIN] - centre, down))
    oval = landmarks[list(FACE_OVAL)]
    v = (oval - centre) @ down
    arc = oval[v > nose_v]
    # Order the arc by angle around the mouth so the polygon does not self-intersect.
    rel = arc - centre
    angle = np.arctan2(rel @ down, rel @ across)
    arc = arc[np.argsort(angle)]
    below = np.clip(((arc - centre) @ down) / max(chin_v, 1e-6), 0.0, 1.0)
    push = (arc - centre) * (chin_room * below)[:, None]
    arc = arc + push
    # Close along the line under the nose, which keeps the nose itself out of the region.
    top_right = centre + across * float(np.dot(arc[0] - centre, across)) + down * nose_v
    top_left = centre + across * float(np.dot(arc[-1] - centre, across)) + down * nose_v
    return np.vstack([top_right[None], arc, top_left[None]]).astype(np.float32)


def inside_distance(
    polygon: Floats, width: int, height: int, margin: int = 2
) -> tuple[Box, Floats]:
    """The box around `polygon` and, over it, each pixel's distance to the polygon's outside."""
    box = box_around(polygon, margin, width, height)
    hard = np.zeros((box.height, box.width), np.uint8)
    pts = np.round((polygon - [box.x1, box.y1]) * 4).astype(np.int32)
    cv2.fillPoly(hard, [pts], (255,), lineType=cv2.LINE_8, shift=2)
    inside = np.asarray(cv2.distanceTransform(hard, cv2.DIST_L2, 5), dtype=np.float32)
    return box, inside


def feather_alpha(inside: Floats, feather: float) -> Floats:
    """Mask weights from inside distances: a smoothstep over the `feather` pixels at the edge."""
    t = np.clip(inside / max(feather, 1e-3), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)  # smoothstep: no visible edge


def mouth_jaw_distance(
    landmarks: Floats, width: int, height: int, chin_room: float = 0.35
) -> tuple[Box, Floats, float]:
    """`mouth_jaw_mask` before its fall-off: the box, the inside distances and the feather.

    The feather is 0.3 mouth widths, but never so wide that the lips themselves fade: the
    mouth centre always gets alpha 1.
    """
    left, right = landmarks[MOUTH_LEFT], landmarks[MOUTH_RIGHT]
    mouth_w = float(np.linalg.norm(right - left))
    centre = landmarks[[INNER_UPPER_MID, INNER_LOWER_MID]].mean(axis=0)
    nose_gap = float(np.linalg.norm(centre - landmarks[NOSE_BASE]))
    feather = max(2.0, min(0.3 * mouth_w, 0.8 * nose_gap))
    box, inside = inside_distance(mouth_jaw_polygon(landmarks, chin_room), width, height)
    return box, inside, feather


def mouth_jaw_mask(landmarks: Floats, width: int, height: int, chin_room: float = 0.35) -> Mask:
    """The feathered mouth-and-jaw mask of one face.

    The fall-off lies inside the polygon, so the mask is exactly zero outside it (and
    outside its box).
    """
    box, inside, feather = mouth_jaw_distance(landmarks, width, height, chin_room)
    return Mask(box, feather_alpha(inside, feather))


def match_color(patch: Image, reference: Image, weight: Floats | None = None) -> Image:
    """Shift `patch`'s per-channel mean and spread to `reference`'s (same shape, uint8 RGB).

    `weight` (H x W in [0, 1]) restricts the statistics to the region that matters, e.g. the
    mask, so background in the crop does not skew skin tone. The spread ratio is clamped so a
    flat patch is never blown up into noise.
    """
    p = patch.astype(np.float32)
    r = reference.astype(np.float32)
    w = np.ones(p.shape[:2], np.float32) if weight is None else weight.astype(np.float32)
    total = float(w.sum())
    if total < 1.0:
        return patch.copy()
    w3 = w[..., None] / total
    p_mean, r_mean = (p * w3).sum((0, 1)), (r * w3).sum((0, 1))
    p_std = np.sqrt((((p - p_mean) ** 2) * w3).sum((0, 1))) + 1e-3
    r_std = np.sqrt((((r - r_mean) ** 2) * w3).sum((0, 1))) + 1e-3
    gain = np.clip(r_std / p_std, 0.5, 2.0)
    out: Floats = (p - p_mean) * gain + r_mean
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def blend(frame: Image, patch: Image, mask: Mask, out: Image | None = None) -> Image:
    """Blend `patch` (the box-sized crop) over `frame` through `mask`; return the result.

    Only pixels with alpha > 0 are written: everywhere else the result equals `frame` exactly.
    Pass `out=frame` to blend in place.
    """
    result = frame.copy() if out is None else out
    rows, cols = mask.box.slices
    src = frame[rows, cols].astype(np.float32)
    alpha = mask.alpha[..., None]
    mixed = np.round(src + (patch.astype(np.float32) - src) * alpha)
    region = result[rows, cols]
    np.copyto(region, mixed.clip(0, 255).astype(np.uint8), where=alpha > 0)
    return result
