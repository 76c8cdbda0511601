"""The inside of an opened mouth: depth, tongue, and upper and lower teeth, painted into a gap.

The mouth warp opens a gap between the lips and hands over, per pixel, where the gap's top and
bottom are in that column and how far across the mouth the column lies. The interior is built
from the lips' own colour (so it matches the face's light and white balance): a red-brown
cavity darkest at its centre and back, a tongue rising from the floor, the lower teeth's edges
riding on the lower lip (they move with the jaw), and the upper teeth hanging from the upper
lip where the clip's own mouth was shut and so shows none. Every edge is a ramp of a pixel or
more, and thin gaps fade out, so no sliver or hard line appears at the corners.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import cv2
import numpy as np
import numpy.typing as npt

from engines.lipsync.facetrack import (
    LIPS_INNER_LOWER,
    LIPS_INNER_UPPER,
    LIPS_OUTER_LOWER,
    LIPS_OUTER_UPPER,
)

Floats: TypeAlias = npt.NDArray[np.floating[Any]]
Image: TypeAlias = npt.NDArray[np.uint8]

#: Colours relative to the lips' own colour.
CAVITY_TINT = np.array([1.0, 0.72, 0.72])
TONGUE_TINT = np.array([0.62, 0.36, 0.38])
TEETH_TINT = np.array([1.75, 1.70, 1.58])
#: Teeth heights: a share of the gap, capped at a share of the mouth width.
UPPER_TEETH = (0.35, 0.09)
LOWER_TEETH = (0.22, 0.05)
#: The lower teeth sit a little in the lip's shadow.
LOWER_SHADE = 0.88
#: Fewer visible mouth pixels than this in the clip and its teeth colour is not trusted.
MIN_TEETH_PIXELS = 30


@dataclass(frozen=True)
class Gap:
    """Where the lips part, per pixel of a crop: v of the gap's top and bottom, and position."""

    v: Floats  # the pixel's own v (down the face), pixels
    top: Floats  # v of the upper lip's edge
    bottom: Floats  # v of the lower lip's edge (it moves with the jaw)
    across: Floats  # |u| from the mouth centre over the half width of the inner mouth
    mouth_width: float  # pixels
    show_upper_teeth: bool  # the clip's own mouth is shut, so its teeth must be drawn


def smoothstep(x: Floats) -> Floats:
    """0 below 0, 1 above 1, a smooth S between."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def lip_colour(frame: Image, lm: Floats) -> Floats:
    """Median RGB of the lips, sampled halfway between their outer and inner outlines."""
    outer = lm[list(LIPS_OUTER_UPPER[1:-1] + LIPS_OUTER_LOWER[1:-1])]
    inner = lm[list(LIPS_INNER_UPPER[1:-1] + LIPS_INNER_LOWER[1:-1])]
    pts = np.round((outer + inner) / 2).astype(int)
    h, w = frame.shape[:2]
    xs, ys = pts[:, 0].clip(0, w - 1), pts[:, 1].clip(0, h - 1)
    colour: Floats = np.median(frame[ys, xs].astype(np.float32), axis=0)
    return colour


def teeth_colour(frame: Image, lm: Floats, lip: Floats) -> Floats:
    """The avatar's own teeth colour where its mouth shows them, else one made from the lips'."""
    made: Floats = np.clip(lip.mean() * TEETH_TINT, 60, 225)
    ring = lm[list(LIPS_INNER_UPPER) + list(LIPS_INNER_LOWER[::-1])]
    x1, y1 = np.floor(ring.min(axis=0)).astype(int)
    x2, y2 = np.ceil(ring.max(axis=0)).astype(int) + 1
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 3 or y2 - y1 < 3:
        return made
    hole = np.zeros((y2 - y1, x2 - x1), np.uint8)
    cv2.fillPoly(hole, [np.round(ring - [x1, y1]).astype(np.int32)], (1,))
    pixels = frame[y1:y2, x1:x2][hole > 0].astype(np.float32)
    if len(pixels) < MIN_TEETH_PIXELS:
        return made
    bright = pixels[pixels.sum(axis=1) >= np.percentile(pixels.sum(axis=1), 75)]
    own: Floats = np.median(bright, axis=0)
    # Only a clearly light, unsaturated colour is teeth; a dark or red one is the mouth's inside.
    if own.mean() < 1.15 * lip.mean() or own.max() - own.min() > 0.35 * own.mean():
        return made
    return own


def coverage(gap: Gap) -> Floats:
    """Per pixel, how much of it is inside the gap (anti-aliased; thin gaps fade out)."""
    inside = np.minimum(gap.v - gap.top, gap.bottom - gap.v)
    # Half-pixel edges are anti-aliased; slivers under ~3 px fade out, so the gap's thin tails
    # toward the corners do not draw dark lines across teeth or lips.
    edge = np.clip(inside + 0.5, 0.0, 1.0)
    thin = np.clip((gap.bottom - gap.top - 0.5) / 2.5, 0.0, 1.0)
    return np.asarray(edge * thin, np.float64)


def interior(gap: Gap, lip: Floats, teeth: Floats) -> Floats:
    """The RGB (float) of the mouth's inside at every pixel of the crop."""
    height = np.maximum(gap.bottom - gap.top, 1e-3)
    inside = np.minimum(gap.v - gap.top, gap.bottom - gap.v)
    depth = np.clip(inside / np.maximum(height / 2, 1e-3), 0.0, 1.0)
    # Darkest in the middle, where the cavity runs back.
    light = 0.46 - 0.30 * np.sqrt(depth)
    colour = (lip * CAVITY_TINT) * light[..., None]
    # The tongue: a dim warm mound rising from the floor of the mouth, narrower than the gap.
    tongue = smoothstep((gap.v - (gap.bottom - 0.45 * height)) / (0.3 * height))
    tongue = tongue * smoothstep((0.8 - gap.across) / 0.4)
    t = 0.7 * tongue[..., None]
    colour = colour * (1 - t) + (lip * TONGUE_TINT) * t
    colour = _teeth(colour, gap, teeth, lower=True)
    if gap.show_upper_teeth:
        colour = _teeth(colour, gap, teeth, lower=False)
    return colour


def _teeth(colour: Floats, gap: Gap, teeth: Floats, *, lower: bool) -> Floats:
    """Blend a row of teeth onto `colour`: hanging from the upper lip, or standing on the lower."""
    share, cap = LOWER_TEETH if lower else UPPER_TEETH
    height = np.minimum(share * (gap.bottom - gap.top), cap * gap.mouth_width)
    if lower:
        # Soft upper edge, `height` above the lower lip: they ride on the lip, so on the jaw.
        inside = np.clip((gap.v - (gap.bottom - height)) / 1.5, 0.0, 1.0)
        # The lower lip hides the lower teeth until the jaw is well down.
        wide_open = smoothstep(((gap.bottom - gap.top) / gap.mouth_width - 0.1) / 0.08)
        spread = smoothstep((0.6 - gap.across) / 0.3) * wide_open
    else:
        inside = np.clip(gap.top + height - gap.v, 0.0, 1.0)
        spread = smoothstep((0.75 - gap.across) / 0.3)
    weight = (0.9 * inside * spread * np.clip(height - 1.0, 0.0, 1.0))[..., None]
    shade = (1.0 - 0.35 * gap.across)[..., None] * (LOWER_SHADE if lower else 1.0)
    shown: Floats = colour * (1 - weight) + (teeth * shade) * weight
    return shown


def paint(patch: Image, gap: Gap, lip: Floats, teeth: Floats) -> None:
    """Fill the gap in `patch` (a crop, modified in place) with the mouth's inside."""
    alpha = coverage(gap)
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if not rows.size:
        return
    # The gap is a thin band of the crop: paint only its bounding box (every step is per pixel,
    # and outside the band the weight is 0, so the rest of the crop would come out unchanged).
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    inside = Gap(
        gap.v[box], gap.top[box], gap.bottom[box], gap.across[box],
        gap.mouth_width, gap.show_upper_teeth,
    )  # fmt: skip
    weight = alpha[box][..., None]
    mixed = patch[box].astype(np.float32) * (1 - weight) + interior(inside, lip, teeth) * weight
    patch[box] = np.clip(np.round(mixed), 0, 255).astype(np.uint8)
