"""The mouth warp: poses a face's mouth and jaw by a smooth displacement field on its landmarks.

In local coordinates (u along the mouth, v down toward the chin) the field lowers everything
under the lips' parting line (lower lip, chin, a fading band below the chin) and lifts the
upper lip a little, tapering to zero at the mouth corners, the cheeks and under the nose. The
output is built by inverse mapping, so it has no holes; the opened gap is painted as a shaded
mouth interior. All work happens in the mask's crop; `blend` leaves the rest untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import cv2
import numpy as np
import numpy.typing as npt

from engines.compositing import Mask, blend, mouth_jaw_mask
from engines.facetrack import (
    CHIN,
    FACE_OVAL,
    INNER_LOWER_MID,
    INNER_UPPER_MID,
    LIPS_INNER_LOWER,
    LIPS_INNER_UPPER,
    LIPS_OUTER_LOWER,
    LIPS_OUTER_UPPER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    NOSE_BASE,
)

#: An RGB uint8 frame (or a crop of one).
Image: TypeAlias = npt.NDArray[np.uint8]
#: One frame's (478, 2) float32 pixel landmarks.
Landmarks: TypeAlias = npt.NDArray[np.float32]
#: Geometry and per-pixel maps; float32 or float64 as numpy's promotion makes them.
Floats: TypeAlias = npt.NDArray[np.floating[Any]]

#: Widest lip gap, in mouth widths (open vowels in lively speech reach about a third).
MAX_GAP = 0.22
#: Share of the gap made by the lower lip and jaw; the upper lip lifts only a little.
LOWER_SHARE = 0.75
#: Below the chin, the jaw's drop fades out over this many mouth widths (room to stay smooth).
CHIN_FADE = 0.55
#: The jaw's drop reaches this many half mouth widths to each side of the mouth centre.
JAW_REACH = 1.5
#: How far a full "oo" draws the mouth corners in (a share of their distance from the centre,
#: before the fall-off); an "ee" spreads them by the same gain.
ROUND_GAIN = 0.36
#: ... fading to nothing this many half mouth widths from the centre.
ROUND_REACH = 2.2
#: Colours of the mouth interior relative to the lips' own colour.
MOUTH_TINT = np.array([1.0, 0.72, 0.72])
TONGUE_TINT = np.array([0.62, 0.36, 0.38])


@dataclass(frozen=True)
class MouthPose:
    """How one frame's mouth should look: open in [0, 1], jaw gain, round in [-1, 1].

    Positive `round` draws the lips in toward the centre (an "oo"); negative spreads them (an
    "ee").
    """

    open: float
    jaw: float
    round: float


@dataclass(frozen=True)
class _Geometry:
    """A face's mouth in local coordinates: u along the mouth, v down toward the chin."""

    centre: Floats
    across: Floats
    down: Floats
    width: float  # mouth width, pixels
    split_u: Floats  # lower inner lip contour, sorted by u ...
    split_v: Floats  # ... and its v: where the lips part
    jaw_u: Floats  # lower face contour, sorted by u ...
    jaw_v: Floats  # ... and its v
    inner: tuple[float, float]  # u of the inner mouth corners
    nose_v: float
    source_gap: float  # how open the clip's own mouth already is, mouth widths

    def local(self, points: Floats) -> tuple[Floats, Floats]:
        """(u, v) of pixel points (..., 2)."""
        d = points - self.centre
        return d @ self.across, d @ self.down


def _geometry(lm: Landmarks) -> _Geometry:
    """Measure the mouth of one frame's landmarks."""
    left, right = lm[MOUTH_LEFT], lm[MOUTH_RIGHT]
    width = float(np.linalg.norm(right - left))
    across = (right - left) / max(width, 1e-6)
    down = np.array([-across[1], across[0]])
    centre = (lm[INNER_UPPER_MID] + lm[INNER_LOWER_MID]) / 2
    if float((lm[CHIN] - centre) @ down) < 0:
        down = -down
    rel = lm - centre
    u, v = rel @ across, rel @ down
    split = np.array(LIPS_INNER_LOWER)
    order = np.argsort(u[split])
    oval = np.array(FACE_OVAL)
    lower = oval[v[oval] > 0]
    jaw_order = np.argsort(u[lower])
    gap = float(np.linalg.norm(lm[INNER_UPPER_MID] - lm[INNER_LOWER_MID]))
    return _Geometry(
        centre=centre,
        across=across,
        down=down,
        width=width,
        split_u=u[split][order],
        split_v=v[split][order],
        jaw_u=u[lower][jaw_order],
        jaw_v=v[lower][jaw_order],
        inner=(float(u[split[0]]), float(u[split[-1]])),
        nose_v=float(v[NOSE_BASE]),
        source_gap=gap / max(width, 1e-6),
    )


def _smoothstep(x: Floats) -> Floats:
    """0 below 0, 1 above 1, a smooth S between."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class _Profile:
    """Per-column quantities of the warp, as functions of u."""

    geo: _Geometry
    lower: float  # drop of the lower lip at the centre, pixels
    upper: float  # lift of the upper lip at the centre, pixels

    def split(self, u: Floats) -> Floats:
        """v where the lips part."""
        return np.interp(u, self.geo.split_u, self.geo.split_v)

    def jaw_line(self, u: Floats) -> Floats:
        """v of the lower face outline."""
        return np.interp(u, self.geo.jaw_u, self.geo.jaw_v)

    def opening(self, u: Floats) -> Floats:
        """Shape of the lip gap across the mouth: 1 in the middle, 0 at the inner corners."""
        a, b = self.geo.inner
        half = max((b - a) / 2, 1.0)
        x = (u - (a + b) / 2) / half
        return np.clip(1.0 - x * x, 0.0, 1.0) ** 0.6

    def jaw(self, u: Floats) -> Floats:
        """How much of the jaw's drop a column gets: wide, fading out toward the cheeks."""
        a, b = self.geo.inner
        reach = JAW_REACH * self.geo.width / 2
        x = np.clip(np.abs(u - (a + b) / 2) / reach, 0.0, 1.0)
        fall: Floats = np.cos(0.5 * np.pi * x)
        return fall**2

    def drop(self, u: Floats, v: Floats) -> Floats:
        """Forward displacement (pixels, +down) of source point (u, v)."""
        s = self.split(u)
        e = self.opening(u)
        jaw_v = np.maximum(self.jaw_line(u), s + 1.0)
        ramp = _smoothstep((v - s) / (0.6 * (jaw_v - s)))
        fade = 1.0 - _smoothstep((v - jaw_v) / (CHIN_FADE * self.geo.width))
        below = self.lower * (e + (self.jaw(u) - e) * ramp) * fade
        lift = _smoothstep((v - self.geo.nose_v) / np.maximum(s - self.geo.nose_v, 1.0))
        above = -self.upper * e * lift
        return np.where(v > s, below, above)


def _inverse_table(
    prof: _Profile, u_range: tuple[float, float], v_range: tuple[float, float]
) -> tuple[Floats, tuple[float, float, float, float]]:
    """Tabulate output v -> source v per column; returns (table[v, u], (u0, du, v0, dv))."""
    nu = 48
    u0, u1 = u_range
    v0, v1 = v_range
    nv = int(max(64, (v1 - v0) * 2))
    us = np.linspace(u0, u1, nu)
    vs = np.linspace(v0, v1, nv)
    fwd = vs[None, :] + prof.drop(us[:, None], vs[None, :])
    # Folds cannot happen with these fall-off lengths, but guard so interp stays valid.
    fwd = np.maximum.accumulate(fwd, axis=1)
    table = np.empty((nv, nu), np.float32)
    for k in range(nu):
        table[:, k] = np.interp(vs, fwd[k], vs)
    return table, (u0, (u1 - u0) / (nu - 1), v0, (v1 - v0) / (nv - 1))


def warp_mask(lm: Landmarks, width: int, height: int) -> Mask:
    """The feathered region `speak` may change: lower face plus room for the chin to drop."""
    geo = _geometry(lm)
    chin_dist = max(float((lm[CHIN] - geo.centre) @ geo.down), 1.0)
    room = (CHIN_FADE + 0.35) * geo.width / chin_dist
    return mouth_jaw_mask(lm, width, height, chin_room=room)


def speak(frame: Image, lm: Landmarks, pose: MouthPose) -> Image:
    """Return `frame` with the mouth posed as `pose`; pixels outside the mask are untouched."""
    if pose.open < 0.02 and abs(pose.round) < 0.02:
        return frame
    h, w = frame.shape[:2]
    geo = _geometry(lm)
    gap = MAX_GAP * geo.width * pose.open
    prof = _Profile(geo, lower=LOWER_SHARE * gap * pose.jaw, upper=(1 - LOWER_SHARE) * gap)
    mask = warp_mask(lm, w, h)
    box = mask.box
    ys, xs = np.mgrid[box.y1 : box.y2, box.x1 : box.x2].astype(np.float32)
    u, v = geo.local(np.stack([xs, ys], axis=-1))
    table, (u0, du, v0, dv) = _inverse_table(
        prof, (float(u.min()), float(u.max())), (float(v.min()) - 2, float(v.max()) + 2)
    )
    v_src = cv2.remap(
        table,
        ((u - u0) / du).astype(np.float32),
        ((v - v0) / dv).astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    u_src = u + _rounding(prof, u, v, pose.round)
    src = geo.centre + u_src[..., None] * geo.across + v_src[..., None] * geo.down
    # remap keeps the source's dtype, so the patch is uint8 RGB like `frame`.
    patch = cast(
        Image,
        cv2.remap(
            frame,
            src[..., 0].astype(np.float32),
            src[..., 1].astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        ),
    )
    _paint_mouth(patch, frame, lm, prof, u_src, v)
    return blend(frame, patch, mask)


def _rounding(prof: _Profile, u: Floats, v: Floats, amount: float) -> Floats:
    """Extra source u: sampling further out draws the lips in (an "oo"), nearer spreads them."""
    if abs(amount) < 0.02:
        return np.zeros_like(u)
    geo = prof.geo
    mid = sum(geo.inner) / 2
    # The pull reaches past the corners (they are what must move) and fades before the cheeks.
    reach = ROUND_REACH * geo.width / 2
    across: Floats = np.clip(1.0 - np.abs(u - mid) / reach, 0.0, 1.0)
    height: Floats = np.exp(-(((v - prof.split(u)) / (0.45 * geo.width)) ** 2))
    return ROUND_GAIN * amount * (u - mid) * across * height


def _lip_colour(frame: Image, lm: Landmarks) -> Floats:
    """Median RGB of the lips, sampled halfway between their outer and inner outlines."""
    outer = lm[list(LIPS_OUTER_UPPER[1:-1] + LIPS_OUTER_LOWER[1:-1])]
    inner = lm[list(LIPS_INNER_UPPER[1:-1] + LIPS_INNER_LOWER[1:-1])]
    pts = np.round((outer + inner) / 2).astype(int)
    h, w = frame.shape[:2]
    xs, ys = pts[:, 0].clip(0, w - 1), pts[:, 1].clip(0, h - 1)
    colour: Floats = np.median(frame[ys, xs].astype(np.float32), axis=0)
    return colour


def _paint_mouth(
    patch: Image,
    frame: Image,
    lm: Landmarks,
    prof: _Profile,
    u: Floats,
    v: Floats,
) -> None:
    """Fill the newly opened lip gap with a shaded mouth interior (and upper teeth), in place."""
    e = prof.opening(u)
    split = prof.split(u)
    top = split - prof.upper * e
    bottom = split + prof.lower * e
    inside = np.minimum(v - top, bottom - v)
    # Half-pixel edges are anti-aliased; slivers under ~3 px fade out, so the gap's thin tails
    # toward the corners do not draw dark lines across teeth or lips.
    alpha = np.clip(inside + 0.5, 0.0, 1.0) * np.clip((bottom - top - 0.5) / 2.5, 0.0, 1.0)
    if not alpha.any():
        return
    half = np.maximum((bottom - top) / 2, 1e-3)
    depth = np.clip(inside / half, 0.0, 1.0)
    lip = _lip_colour(frame, lm)
    # A mouth interior is the lips' hue, redder and much darker, darkest in the middle and
    # back; the tongue shows as a dim warm shape rising from the lower lip.
    colour = (lip * MOUTH_TINT) * (0.46 - 0.30 * np.sqrt(depth))[..., None]
    gap = np.maximum(bottom - top, 1e-3)
    a, b = prof.geo.inner
    x = np.abs(u - (a + b) / 2) / max((b - a) / 2, 1.0)
    tongue = _smoothstep((v - (bottom - 0.45 * gap)) / (0.3 * gap)) * _smoothstep((0.8 - x) / 0.4)
    colour = colour * (1 - 0.7 * tongue[..., None]) + (lip * TONGUE_TINT) * 0.7 * tongue[..., None]
    if prof.geo.source_gap < 0.06:
        colour = _add_teeth(colour, lip, prof, u, v, top, bottom)
    weight = alpha[..., None]
    mixed = patch.astype(np.float32) * (1 - weight) + colour * weight
    patch[:] = np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def _add_teeth(
    colour: Floats,
    lip: Floats,
    prof: _Profile,
    u: Floats,
    v: Floats,
    top: Floats,
    bottom: Floats,
) -> Floats:
    """Show the edge of the upper teeth under the upper lip, as a closed-mouth clip hides them."""
    geo = prof.geo
    a, b = geo.inner
    x = np.abs(u - (a + b) / 2) / max((b - a) / 2, 1.0)
    height = np.minimum(0.35 * (bottom - top), 0.09 * geo.width)
    below_lip = np.clip(top + height - v, 0.0, 1.0)  # soft lower edge of the teeth
    across = _smoothstep((0.75 - x) / 0.3)
    weight = (0.85 * below_lip * across * (height > 1.0))[..., None]
    shade = (1.0 - 0.35 * x)[..., None]
    teeth = np.clip(lip.mean() * np.array([1.75, 1.70, 1.58]), 60, 225) * shade
    shown: Floats = colour * (1 - weight) + teeth * weight
    return shown
