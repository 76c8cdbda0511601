"""The picture half of the quality report: one pass over a render and the avatar clip it came from.

Render frame i shows clip frame `pingpong_index(i, clip frames)` (every lip-sync engine loops the
clip back and forth the same way), so each render frame is measured against its own source frame:

- lip aperture: FaceMesh on the render frame, inner-lip gap over the inter-ocular distance;
- authenticity: how many pixels outside the mouth region differ from the source (below);
- artifacts: sharpness (variance of the Laplacian) and frame-to-frame change of a box around
  the lips, in the render and in the source.

Authenticity, precisely: the source frame first goes through the encoder's own colour
conversion (RGB to YUV 4:2:0 and back, no compression), so rounding and chroma subsampling
cancel out. The allowed region is the union of both engines' blend masks (the landmark warp's
and Wav2Lip's mouth-jaw mask, wherever alpha > 0) grown by CODEC_MARGIN pixels, since x264's
transform blocks that touch the mask carry its changes a few pixels out. Everything else is cut
into BLOCK x BLOCK tiles; a tile differs when, in any colour channel, its mean difference
exceeds MEAN_TOL or its mean absolute difference exceeds ABS_TOL (grey levels). x264's
quantisation noise is small per tile: at most 8.6 and 9.8 levels in honest renders of the demo
face (a skipped block on a moving clip is the worst case), so the tolerances sit near twice
that. An honest render has no differing tile; a face crop pasted back with a 30-level colour
cast (`tests.support.quality_cases.paste_face`) has thousands. The report counts their pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from engines.lipsync.compositing import mouth_jaw_mask
from engines.lipsync.facetrack import (
    LIPS_OUTER_LOWER,
    LIPS_OUTER_UPPER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    FaceMesh,
    FaceTrack,
    face_scale,
    lip_aperture,
    mouth_width,
)
from engines.lipsync.mouth_warp import warp_mask
from engines.media.probe import MediaInfo, probe
from engines.media.video import iter_frames, iter_pingpong
from jayavatar.errors import BadInput, NotFound

BLOCK = 8
CODEC_MARGIN = 16
MEAN_TOL = 16.0
ABS_TOL = 20.0
#: The measured mouth box: the outer lips grown by these many mouth widths (sides, top, bottom).
MOUTH_PAD = (0.25, 0.25, 0.45)

Array = npt.NDArray[np.float64]
Image = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]
Landmarks = npt.NDArray[np.float32]
LIPS = list(LIPS_OUTER_UPPER + LIPS_OUTER_LOWER)


@dataclass
class VideoStats:
    """Per render frame measurements; NaN where a measure does not apply."""

    fps: float
    clip_frames: int
    aperture: list[float] = field(default_factory=list)  # NaN: FaceMesh found no face
    width: list[float] = field(default_factory=list)  # mouth corners apart, eye distances
    eye_px: list[float] = field(default_factory=list)  # eye distance, pixels
    source_aperture: list[float] = field(default_factory=list)  # the clip frame's own (track)
    source_face: list[bool] = field(default_factory=list)  # the clip frame has a face
    changed_px: list[int] = field(default_factory=list)  # outside the allowed region
    outside_px: list[int] = field(default_factory=list)
    sharp_render: list[float] = field(default_factory=list)
    sharp_source: list[float] = field(default_factory=list)
    motion_render: list[float] = field(default_factory=list)  # mean |frame - previous| in box
    motion_source: list[float] = field(default_factory=list)

    def array(self, name: str) -> Array:
        """One measurement series as a float array."""
        return np.asarray(getattr(self, name), np.float64)


def check_inputs(mp4: Path, avatar_dir: Path) -> tuple[MediaInfo, FaceTrack]:
    """Probe the render and load the avatar's track; raise at once if they do not belong."""
    if not ((avatar_dir / "track.npz").is_file() and (avatar_dir / "clip.mp4").is_file()):
        raise NotFound(f"no prepared avatar in {avatar_dir.name!r} (clip.mp4 and track.npz)")
    info = probe(mp4)
    if info.kind != "video":
        raise BadInput(f"{mp4.name} is not a video")
    track = FaceTrack.load(avatar_dir / "track.npz")
    if (info.width, info.height) != (track.width, track.height):
        raise BadInput(
            f"{mp4.name} is {info.width}x{info.height} but the avatar is "
            f"{track.width}x{track.height}; evaluate the render before any resize"
        )
    return info, track


def measure_video(mp4: Path, avatar_dir: Path) -> VideoStats:
    """Walk the render and its source clip frame by frame and collect every picture measure."""
    info, track = check_inputs(mp4, avatar_dir)
    stats = VideoStats(fps=info.fps or 25.0, clip_frames=len(track))
    previous: tuple[Image, Image] | None = None
    # A looping render shows each clip frame more than once; its mask is the same each time.
    allowed: dict[int, Mask] = {}
    with FaceMesh(video=True) as mesh:
        for index, frame, source in _paired(mp4, avatar_dir, len(track), stats.fps):
            lm = mesh.landmarks(frame)
            stats.aperture.append(np.nan if lm is None else lip_aperture(lm))
            stats.width.append(np.nan if lm is None else mouth_width(lm))
            stats.eye_px.append(np.nan if lm is None else face_scale(lm))
            face = bool(track.present[index])
            stats.source_face.append(face)
            landmarks = track.landmarks[index] if face else None
            stats.source_aperture.append(np.nan if landmarks is None else lip_aperture(landmarks))
            if index not in allowed:
                allowed[index] = allowed_tiles(landmarks, track.width, track.height)
            changed, outside = changed_pixels(frame, source, landmarks, allowed[index])
            stats.changed_px.append(changed)
            stats.outside_px.append(outside)
            _mouth_measures(stats, frame, source, landmarks, previous)
            previous = (frame, source)
    if not stats.aperture:
        raise BadInput(f"{mp4.name} holds no video frames")
    return stats


def _paired(
    mp4: Path, avatar_dir: Path, n_clip: int, fps: float
) -> Iterator[tuple[int, Image, Image]]:
    """Yield (clip index, render frame, source frame) for every render frame."""
    # The header's frame count may be off by a frame or two: ask the clip for some to spare.
    clip = iter_pingpong(avatar_dir / "clip.mp4", n_clip, probe(mp4).frames + n_clip, fps)
    for frame, (index, source) in zip(iter_frames(mp4), clip, strict=False):
        yield index, frame, source


def as_encoded(frame: Image) -> Image:
    """`frame` after the encoder's colour conversion alone: RGB to YUV 4:2:0 and back."""
    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    return np.asarray(vf.reformat(format="yuv420p").to_ndarray(format="rgb24"))


def allowed_tiles(landmarks: Landmarks | None, width: int, height: int) -> Mask:
    """bool (tile rows, tile columns): tiles a lip-sync engine may change, margin included."""
    tiles = np.zeros((-(-height // BLOCK), -(-width // BLOCK)), np.uint8)
    if landmarks is None:
        return tiles.astype(bool)
    for mask in (warp_mask(landmarks, width, height), mouth_jaw_mask(landmarks, width, height)):
        box = mask.box
        y0, x0 = box.y1 // BLOCK, box.x1 // BLOCK
        rows, cols = -(-box.y2 // BLOCK) - y0, -(-box.x2 // BLOCK) - x0
        grid = np.zeros((rows * BLOCK, cols * BLOCK), bool)
        dy, dx = box.y1 - y0 * BLOCK, box.x1 - x0 * BLOCK
        grid[dy : dy + box.height, dx : dx + box.width] = mask.alpha > 0
        tiles[y0 : y0 + rows, x0 : x0 + cols] |= grid.reshape(rows, BLOCK, cols, BLOCK).any((1, 3))
    # Whole tiles of margin, so at least CODEC_MARGIN pixels on every side.
    reach = -(-CODEC_MARGIN // BLOCK)
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    return np.asarray(cv2.dilate(tiles, kernel)).astype(bool)


def tile_means(image: Image) -> npt.NDArray[np.float32]:
    """Per-channel mean of every BLOCK x BLOCK tile (edge tiles: of the pixels they hold)."""
    height, width = image.shape[:2]
    th, tw = -(-height // BLOCK), -(-width // BLOCK)
    data = image.astype(np.float32)
    if th * BLOCK == height and tw * BLOCK == width:
        # Area resampling by an integer factor is exactly the tile mean, and fast.
        return np.asarray(cv2.resize(data, (tw, th), interpolation=cv2.INTER_AREA))
    padded = np.zeros((th * BLOCK, tw * BLOCK, data.shape[2]), np.float32)
    padded[:height, :width] = data
    count = np.zeros((th * BLOCK, tw * BLOCK), np.float32)
    count[:height, :width] = 1
    sums = padded.reshape(th, BLOCK, tw, BLOCK, -1).sum((1, 3))
    return np.asarray(sums / count.reshape(th, BLOCK, tw, BLOCK).sum((1, 3))[..., None])


def changed_pixels(
    frame: Image,
    source: Image,
    landmarks: Landmarks | None,
    allowed: Mask | None = None,
) -> tuple[int, int]:
    """(pixels in differing tiles, pixels checked) outside the allowed region; see module doc."""
    height, width = frame.shape[:2]
    reference = as_encoded(source)
    if allowed is None:
        allowed = allowed_tiles(landmarks, width, height)
    # Tile means are linear, so the mean difference is the difference of the means.
    mean = np.abs(tile_means(frame) - tile_means(reference)).max(axis=-1)
    spread = tile_means(np.asarray(cv2.absdiff(frame, reference), np.uint8)).max(axis=-1)
    checked = ~allowed
    bad = checked & ((mean > MEAN_TOL) | (spread > ABS_TOL))
    return _pixels(bad, height, width), _pixels(checked, height, width)


def _pixels(tiles: Mask, height: int, width: int) -> int:
    """How many frame pixels the flagged tiles cover (edge tiles may be cut short)."""
    rows = np.minimum(BLOCK, height - BLOCK * np.arange(tiles.shape[0]))
    cols = np.minimum(BLOCK, width - BLOCK * np.arange(tiles.shape[1]))
    return int((rows[:, None] * cols[None, :])[tiles].sum())


def mouth_box(landmarks: Landmarks, width: int, height: int) -> tuple[slice, slice]:
    """(rows, columns) of the box around the lips, grown by MOUTH_PAD mouth widths."""
    mouth_w = float(np.linalg.norm(landmarks[MOUTH_RIGHT] - landmarks[MOUTH_LEFT]))
    lips = landmarks[LIPS]
    side, top, bottom = (p * mouth_w for p in MOUTH_PAD)
    x1 = int(np.clip(lips[:, 0].min() - side, 0, width - 1))
    x2 = int(np.clip(lips[:, 0].max() + side, x1 + 1, width))
    y1 = int(np.clip(lips[:, 1].min() - top, 0, height - 1))
    y2 = int(np.clip(lips[:, 1].max() + bottom, y1 + 1, height))
    return slice(y1, y2), slice(x1, x2)


def sharpness(grey: Image) -> float:
    """Variance of the Laplacian: high for crisp detail, low for blur."""
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _grey(frame: Image) -> Image:
    return np.asarray(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))


def _mouth_measures(
    stats: VideoStats,
    frame: Image,
    source: Image,
    landmarks: Landmarks | None,
    previous: tuple[Image, Image] | None,
) -> None:
    """Append the sharpness and motion of the mouth box (NaN without a face)."""
    if landmarks is None:
        for name in ("sharp_render", "sharp_source", "motion_render", "motion_source"):
            getattr(stats, name).append(np.nan)
        return
    rows, cols = mouth_box(landmarks, frame.shape[1], frame.shape[0])
    now = (_grey(frame[rows, cols]), _grey(source[rows, cols]))
    stats.sharp_render.append(sharpness(now[0]))
    stats.sharp_source.append(sharpness(now[1]))
    if previous is None:
        stats.motion_render.append(np.nan)
        stats.motion_source.append(np.nan)
        return
    # The same box in the previous frame: what changed at this spot from one frame to the next.
    before = (_grey(previous[0][rows, cols]), _grey(previous[1][rows, cols]))
    stats.motion_render.append(float(cv2.absdiff(now[0], before[0]).mean()))
    stats.motion_source.append(float(cv2.absdiff(now[1], before[1]).mean()))
