"""What keeps a photo avatar alive between words: blinks, and a small motion of the head alone.

A photo's prepared clip would otherwise be one still picture. Two things make it a person:

- `head_motion` (at preparation): the head sways and nods a little, inside a feathered mask
  around the face; every pixel outside the mask is the photo's own, so the background and
  the shoulders stay where they are.
- `blink_amounts` / `blink_i420` (at render): the eyelids close for about 150 ms every 2 to 6
  seconds, at times drawn from the render's own seed, so a render is repeatable and two renders
  do not blink in step. The upper lid's skin is stretched down over the eye and the eye itself
  squeezed into what is left, so nothing is painted from outside the face.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TypeAlias, cast

import cv2
import numpy as np
import numpy.typing as npt

from engines.lipsync.facetrack import FACE_OVAL
from engines.lipsync.wav2lip_io import even_box, roi_to_rgb, write_roi

Image: TypeAlias = npt.NDArray[np.uint8]
Landmarks: TypeAlias = npt.NDArray[np.float32]
Floats: TypeAlias = npt.NDArray[np.float64]

#: One blink, closing and opening, seconds.
BLINK_S = 0.15
#: Seconds between blinks, drawn uniformly from this range.
BLINK_GAP_S = (2.0, 6.0)
#: FaceMesh points of each eye: (outer corner, inner corner, upper lid middle, lower lid middle).
EYES = ((33, 133, 159, 145), (263, 362, 386, 374))
#: How far above the upper lid (in eye widths) the stretched eyelid skin begins.
LID_SKIN = 0.35
#: The head mask: the face outline grown by this share about its centre (hair, ears, chin).
HEAD_GROW = 1.35
#: ... and feathered over this share of the face's width.
HEAD_FEATHER = 0.12


def blink_amounts(seed: int, frames: int, fps: float) -> Floats:
    """Per frame, how closed the eyes are (0 open, 1 shut): blinks every 2-6 s, from `seed`."""
    rng = np.random.default_rng(seed)
    amounts = np.zeros(frames, np.float64)
    times = (np.arange(frames) + 0.5) / fps
    t = rng.uniform(0.8, BLINK_GAP_S[0])  # no blink in the very first frames
    while t < frames / fps:
        # Centre the blink on a frame, so one frame shows the eyes fully shut.
        centre = (math.floor(t * fps) + 0.5) / fps
        dt = np.abs(times - centre) / (BLINK_S / 2)
        amounts = np.maximum(amounts, np.clip(1.0 - dt**1.5, 0.0, 1.0))
        t += rng.uniform(*BLINK_GAP_S)
    return amounts


def blink_i420(frame: Image, size: tuple[int, int], lm: Landmarks, amount: float) -> Image:
    """Close both eyes of an I420 frame by `amount` in [0, 1], in place (only the eye boxes)."""
    if amount < 0.02:
        return frame
    width, height = size
    for eye, roi in zip(EYES, eye_boxes(lm, width, height), strict=True):
        if roi is None:
            continue
        rgb = roi_to_rgb(frame, roi, width, height)
        points = lm[list(eye)] - np.array(roi[:2], np.float32)
        shut, alpha = _close_eye(rgb, points, amount)
        write_roi(frame, shut, alpha, roi, width, height)
    return frame


def eye_boxes(lm: Landmarks, width: int, height: int) -> list[tuple[int, int, int, int] | None]:
    """Per eye, the even-aligned (x1, y1, x2, y2) box a blink may change (None: eye too small)."""
    boxes: list[tuple[int, int, int, int] | None] = []
    for outer, inner, upper, lower in EYES:
        eye_w = float(np.linalg.norm(lm[inner] - lm[outer]))
        if eye_w < 4.0:
            boxes.append(None)
            continue
        pts = lm[[outer, inner, upper, lower]]
        pad = math.ceil(0.6 * eye_w)
        x1, y1 = (int(v) for v in np.floor(pts.min(axis=0)) - pad)
        x2, y2 = (int(v) for v in np.ceil(pts.max(axis=0)) + pad)
        box = (max(0, x1), max(0, y1), min(width, x2), min(height, y2))
        boxes.append(even_box(box, width, height))
    return boxes


def _close_eye(rgb: Image, eye: Landmarks, amount: float) -> tuple[Image, npt.NDArray[np.float32]]:
    """One eye closed by `amount` in a crop; returns (crop, where it changed)."""
    outer, inner, upper, lower = (eye[k].astype(np.float64) for k in range(4))
    eye_w = float(np.linalg.norm(inner - outer))
    across = (inner - outer) / eye_w
    down = np.array([-across[1], across[0]])
    centre = (outer + inner) / 2
    if float((lower - upper) @ down) < 0:
        down = -down
    ys, xs = np.mgrid[0 : rgb.shape[0], 0 : rgb.shape[1]].astype(np.float64)
    rel_x, rel_y = xs - centre[0], ys - centre[1]
    u, v = rel_x * across[0] + rel_y * across[1], rel_x * down[0] + rel_y * down[1]
    lid, bottom = float((upper - centre) @ down), float((lower - centre) @ down)
    top = lid - LID_SKIN * eye_w
    # The lid comes down most in the middle of the eye and not at all past its corners.
    shape = np.cos(0.5 * np.pi * np.clip(np.abs(u) / (0.6 * eye_w), 0.0, 1.0)) ** 2
    edge = lid + amount * shape * (bottom - lid)  # where the lid's edge is now
    skin = (v >= top) & (v < edge)
    under = (v >= edge) & (v < bottom)
    v_src = v.copy()
    # Above the new edge: the lid's skin [top, lid] stretched over [top, edge].
    v_src[skin] = (top + (v - top) * (lid - top) / np.maximum(edge - top, 1e-3))[skin]
    # Below it: what shows of the eye, [lid, bottom] squeezed into [edge, bottom].
    v_src[under] = (lid + (v - edge) * (bottom - lid) / np.maximum(bottom - edge, 1e-3))[under]
    src = centre + u[..., None] * across + v_src[..., None] * down  # (H, W, 2) source x, y
    out = _sample(rgb, src)
    # The lashes: a soft dark line along the lid's edge, as strong as the lid is low.
    lash = amount * shape * np.exp(-(((v - edge) / max(0.06 * eye_w, 0.8)) ** 2))
    dark = out.astype(np.float64) * (1.0 - 0.45 * lash[..., None])
    out = np.clip(np.round(dark), 0, 255).astype(np.uint8)
    moved = (shape > 0) & (v >= top) & (v < bottom + 0.15 * eye_w)
    return out, moved.astype(np.float32)


def _sample(rgb: Image, src: npt.NDArray[np.float64]) -> Image:
    """The crop resampled at (H, W, 2) source points (x, y), edges repeated."""
    x, y = src[..., 0].astype(np.float32), src[..., 1].astype(np.float32)
    return cast(Image, cv2.remap(rgb, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))


def head_mask(lm: Landmarks, width: int, height: int) -> npt.NDArray[np.float32]:
    """Feathered mask (H, W) in [0, 1] of the head: the face outline, grown, soft at its edge."""
    oval = lm[list(FACE_OVAL)].astype(np.float64)
    centre = oval.mean(axis=0)
    grown = centre + (oval - centre) * HEAD_GROW
    mask = np.zeros((height, width), np.float32)
    cv2.fillPoly(mask, [np.round(grown).astype(np.int32)], (1.0,))
    face_w = float(oval[:, 0].max() - oval[:, 0].min())
    sigma = max(1.0, HEAD_FEATHER * face_w / 2)
    soft = np.asarray(cv2.GaussianBlur(mask, (0, 0), sigma), np.float32)
    # Inside the outline the head moves rigidly; the feather lies outside it only.
    return np.maximum(soft, mask)


def head_motion(photo: Image, lm: Landmarks, fps: int, frames: int) -> Iterator[Image]:
    """Yield a clip of `photo` whose head alone sways and nods a little (a rigid motion per frame,
    blended in through `head_mask`); pixels outside the mask are the photo's, bit for bit.

    Every motion is a cosine with a whole number of cycles over the clip, so velocity is zero
    at both ends and back-and-forth looping turns around smoothly.
    """
    h, w = photo.shape[:2]
    alpha = head_mask(lm, w, h)
    inside = alpha > 0
    weight = alpha[inside][:, None]
    oval = lm[list(FACE_OVAL)]
    face_w = float(oval[:, 0].max() - oval[:, 0].min())
    # The head turns about the neck: a point under the chin.
    pivot = (float(oval[:, 0].mean()), float(oval[:, 1].max()))
    duration = frames / fps
    for k in range(frames):
        phase = 2 * math.pi * (k / fps) / duration
        angle = 0.6 * math.cos(phase) - 0.2 * math.cos(3 * phase)  # degrees
        dx = 0.004 * face_w * math.cos(2 * phase)
        dy = 0.005 * face_w * (math.cos(2 * phase) - math.cos(phase)) / 2  # a small nod
        m = cast(npt.NDArray[np.float64], cv2.getRotationMatrix2D(pivot, angle, 1.0))
        m[:, 2] += (dx, dy)
        moved = cv2.warpAffine(
            photo, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
        )
        out = photo.copy()
        src = photo[inside].astype(np.float32)
        mix = src + (np.asarray(moved)[inside].astype(np.float32) - src) * weight
        out[inside] = np.clip(np.round(mix), 0, 255).astype(np.uint8)
        yield out
