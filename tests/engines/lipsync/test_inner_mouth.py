"""The inside of the mouth: soft edges, no slivers, teeth that ride on the jaw, matched colours."""

from __future__ import annotations

import numpy as np
import pytest

from engines.lipsync import inner_mouth
from engines.lipsync.demo_assets import astronaut_portrait
from engines.lipsync.facetrack import FaceMesh
from engines.lipsync.inner_mouth import Gap

pytestmark = pytest.mark.env("lipsync")

LIP = np.array([190.0, 140.0, 130.0])
TEETH = np.array([240.0, 232.0, 220.0])
H, W = 60, 80


def gap(top: float, bottom: float, width: float = 100.0, upper: bool = False) -> Gap:
    """A straight gap across a H x W crop, between rows `top` and `bottom`."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    return Gap(
        v=v,
        top=np.full((H, W), top),
        bottom=np.full((H, W), bottom),
        across=np.abs(u - W / 2) / (W / 2),
        mouth_width=width,
        show_upper_teeth=upper,
    )


def shown(g: Gap) -> np.ndarray:
    """The interior as it shows: weighted by how much of each pixel is inside the gap."""
    return inner_mouth.interior(g, LIP, TEETH) * inner_mouth.coverage(g)[..., None]


def brightest_row(colour: np.ndarray) -> int:
    """The row of the crop's centre column with the lightest colour."""
    return int(np.argmax(colour[:, W // 2].sum(axis=1)))


def test_only_the_gap_is_painted_with_soft_edges() -> None:
    patch = np.full((H, W, 3), 128, np.uint8)
    before = patch.copy()
    g = gap(20.3, 40.7)
    inner_mouth.paint(patch, g, LIP, TEETH)
    changed = np.any(patch != before, axis=2)
    rows = np.flatnonzero(changed[:, W // 2])
    assert rows.min() == 20 and rows.max() == 41
    alpha = inner_mouth.coverage(g)[:, W // 2]
    assert 0 < alpha[20] < 1 and 0 < alpha[41] < 1  # partial pixels at both lips
    assert alpha[25:36].min() == 1.0


def test_a_thin_gap_fades_instead_of_drawing_a_sliver() -> None:
    assert inner_mouth.coverage(gap(30.0, 30.8)).max() < 0.15
    assert inner_mouth.coverage(gap(30.0, 36.0)).max() == 1.0


def test_lower_teeth_show_when_wide_open_and_move_with_the_jaw() -> None:
    narrow, wide, lower = shown(gap(20, 28)), shown(gap(20, 45)), shown(gap(20, 50))
    # Barely open: the lip hides the teeth and the inside stays dark.
    assert narrow[20:28, W // 2].max() < 0.6 * TEETH.max()
    assert wide[:, W // 2].max() > 0.8 * TEETH.max()
    # The jaw drops 5 px more: the lower teeth go with it.
    assert brightest_row(lower) - brightest_row(wide) == 5
    assert 40 <= brightest_row(wide) < 45


def test_upper_teeth_hang_from_the_lip_only_for_a_shut_mouthed_clip() -> None:
    hidden, upper = shown(gap(20, 30)), shown(gap(20, 30, upper=True))
    assert hidden[21, W // 2].max() < 0.6 * TEETH.max() < upper[21, W // 2].max()


def test_colours_come_from_the_face() -> None:
    photo = astronaut_portrait(512)
    with FaceMesh(video=False) as mesh:
        lm = mesh.landmarks(photo)
    assert lm is not None
    lip = inner_mouth.lip_colour(photo, lm)
    assert lip[0] > lip[1] and lip[0] > lip[2]  # lips are red
    # The demo face smiles with its teeth showing: their own colour is used, light and neutral.
    teeth = inner_mouth.teeth_colour(photo, lm, lip)
    assert teeth.mean() > 200 and np.ptp(teeth) < 40
    # A shut, dark mouth shows no teeth: the colour is made from the lips instead.
    shut = photo.copy()
    shut[:] = (120, 60, 60)
    made = inner_mouth.teeth_colour(shut, lm, lip)
    assert np.allclose(made, np.clip(lip.mean() * inner_mouth.TEETH_TINT, 60, 225))
