"""Demo media made from a public-domain source that ships in a registry package.

The face is NASA's portrait of astronaut Eileen Collins, bundled with scikit-image as
``skimage.data.astronaut()`` (public domain, a work of the US government).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from engines.lipsync.avatar_prep import photo_motion
from engines.media.video import VideoWriter

# Head-and-shoulders crop (x1, y1, x2, y2) of the 512x512 original, found by FaceMesh once.
PORTRAIT_CROP = (80, 0, 368, 288)
DEMO_SIDE = 512


def astronaut_portrait(side: int = DEMO_SIDE) -> npt.NDArray[np.uint8]:
    """Return the head-and-shoulders crop of the astronaut photo as side x side RGB uint8."""
    from skimage import data  # only needed to make demo assets

    x1, y1, x2, y2 = PORTRAIT_CROP
    # scikit-image ships no annotations for its sample-data loaders.
    photo = data.astronaut()  # type: ignore[no-untyped-call]
    crop = np.ascontiguousarray(photo[y1:y2, x1:x2])
    shrink = side < crop.shape[0]
    # resize keeps the dtype, so the portrait stays uint8 RGB.
    return cast(
        npt.NDArray[np.uint8],
        cv2.resize(
            crop, (side, side), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LANCZOS4
        ),
    )


def make_demo_avatar(out_path: Path, side: int = DEMO_SIDE) -> Path:
    """Write the demo avatar photo (PNG or JPEG by suffix) to `out_path`; return the path."""
    image = astronaut_portrait(side)
    ok, data = cv2.imencode(out_path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode an image as {out_path.suffix!r}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_bytes(data.tobytes())
    tmp.replace(out_path)
    return out_path


def make_face_clip(out_path: Path, seconds: float = 2.0, side: int = 256, fps: int = 25) -> Path:
    """Write a short real-face video (the portrait, gently moving) to `out_path` for tests."""
    photo = astronaut_portrait(side)
    frames = max(1, round(seconds * fps))
    with VideoWriter(out_path, side, side, fps, crf=18, preset="veryfast") as writer:
        for frame in photo_motion(photo, fps, frames):
            writer.write(frame)
    return out_path
