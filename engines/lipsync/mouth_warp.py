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

from engines.lipsync import inner_mouth
from engines.lipsync.compositing import Mask, blend, mouth_jaw_mask
from engines.lipsync.facetrack import (
    CHIN,
    FACE_OVAL,
    INNER_LOWER_MID,
    INNER_UPPER_MID,
    LIPS_INNER_LOWER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    NOSE_BASE,
)
from engines.lipsync.wav2lip_io import even_box, roi_to_rgb, write_roi

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
ROUND_GAIN = 0.55
#: ... fading to nothing this many half mouth widths from the centre.
ROUND_REACH = 2.2


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


def speak(frame: Image, lm: Landmarks, pose: MouthPose, mask: Mask | None = None) -> Image:
    """Return `frame` with the mouth posed as `pose`; pixels outside the mask are untouched.

    `mask` is `warp_mask(lm, ...)` of this frame, if the caller has it already.
    """
    if abs(pose.open) < 0.02 and abs(pose.round) < 0.02:
        return frame
    h, w = frame.shape[:2]
    geo = _geometry(lm)
    gap = MAX_GAP * geo.width * pose.open
    prof = _Profile(geo, lower=LOWER_SHARE * gap * pose.jaw, upper=(1 - LOWER_SHARE) * gap)
    mask = warp_mask(lm, w, h) if mask is None else mask
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


def speak_i420(frame: Image, size: tuple[int, int], lm: Landmarks, pose: MouthPose) -> Image:
    """`speak` on an I420 frame of `size` (width, height), in place, converting only the mouth.

    Only a box around the mask (with room for the warp to sample from) becomes RGB; it is
    written back where the mask is non-zero, so every pixel outside stays the decoded one and
    the frame goes to the encoder without another colour round trip.
    """
    if abs(pose.open) < 0.02 and abs(pose.round) < 0.02:
        return frame
    width, height = size
    mb = warp_mask(lm, width, height).box
    room = int(np.ceil(_geometry(lm).width))  # the warp samples at most a mouth width away
    roi = even_box((mb.x1 - room, mb.y1 - room, mb.x2 + room, mb.y2 + room), width, height)
    x0, y0 = max(0, roi[0]), max(0, roi[1])
    roi = (x0, y0, roi[2], roi[3])
    rgb = roi_to_rgb(frame, roi, width, height)
    shifted = (lm - np.array([x0, y0], np.float32)).astype(np.float32)
    mask = warp_mask(shifted, rgb.shape[1], rgb.shape[0])
    posed = speak(rgb, shifted, pose, mask)
    alpha = np.zeros(rgb.shape[:2], np.float32)
    alpha[mask.box.slices] = mask.alpha
    write_roi(frame, posed, alpha, roi, width, height)
    return frame


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


def _paint_mouth(
    patch: Image,
    frame: Image,
    lm: Landmarks,
    prof: _Profile,
    u: Floats,
    v: Floats,
) -> None:
    """Fill the newly opened lip gap with the inside of the mouth (`inner_mouth`), in place."""
    e = prof.opening(u)
    split = prof.split(u)
    a, b = prof.geo.inner
    gap = inner_mouth.Gap(
        v=v,
        top=split - prof.upper * e,
        bottom=split + prof.lower * e,
        across=np.abs(u - (a + b) / 2) / max((b - a) / 2, 1.0),
        mouth_width=prof.geo.width,
        show_upper_teeth=prof.geo.source_gap < 0.06,
    )
    lip = inner_mouth.lip_colour(frame, lm)
    inner_mouth.paint(patch, gap, lip, inner_mouth.teeth_colour(frame, lm, lip))
