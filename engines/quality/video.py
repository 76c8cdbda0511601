"""The picture half of the quality report: one pass over a render and the avatar clip it came from.

Render frame i shows clip frame `pingpong_index(i, clip frames)` (every lip-sync engine loops the
clip back and forth the same way), so each render frame is measured against its own source frame:

- lip aperture: FaceMesh on the render frame, inner-lip gap over the inter-ocular distance;
- authenticity: how many pixels outside the mouth region differ from the source (below);
- artifacts: sharpness (variance of the Laplacian) and frame-to-frame change of a box around
  the lips, in the render and in the source.

Authenticity, precisely: the reference is the source clip's frames, in the render's order,
encoded once more with the render's own encoder settings (read from the x264 options in the
render; NVENC or unknown: its average bit rate), so codec noise is on both sides of the
comparison. The allowed region is the union of both engines' blend masks (the landmark warp's
and Wav2Lip's mouth-jaw mask, wherever alpha > 0, and for a photo avatar the eyes, which
blink) grown by CODEC_MARGIN pixels, since x264's
transform blocks that touch the mask carry its changes a few pixels out. Everything else is cut
into BLOCK x BLOCK tiles, and each tile's mean (per colour channel) is compared with the
reference's. Two encodes of the same pixels still differ: in an honest render of the test face
a tile's mean is off by up to 7 levels in one frame, but by at most 1.0 on average over the
render, since the noise has no lasting sign. So a tile differs when it is off by more than
FRAME_TOL in any frame (a transient change) or by more than LASTING_TOL on average (a subtle
change that stays: a 3-level shift averages 3.1-3.8). A face crop pasted back with a colour cast
(`tests.support.quality_cases.paste_face`) is off by about 30. The report counts the pixels of
differing tiles in every frame where they are checked.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
from engines.lipsync.idle import eye_boxes
from engines.lipsync.mouth_warp import warp_mask
from engines.lipsync.wav2lip_io import iter_pingpong as iter_pingpong_i420
from engines.media.probe import MediaInfo, probe
from engines.media.video import VideoWriter, iter_frames, iter_pingpong
from jayavatar.errors import BadInput, NotFound

BLOCK = 8
CODEC_MARGIN = 16
#: Grey levels a tile's mean may differ from the re-encoded source's in one frame ...
FRAME_TOL = 12.0
#: ... and on average over the render (codec noise has no lasting sign; a real change has).
LASTING_TOL = 2.0
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
    background = _Background()
    photo = _source(avatar_dir) == "photo"
    with FaceMesh(video=True) as mesh, tempfile.TemporaryDirectory() as tmp:
        reference = reencode_source(mp4, avatar_dir, len(track), Path(tmp) / "reference.mp4")
        for index, frame, source, again in _paired(mp4, avatar_dir, reference, len(track)):
            lm = mesh.landmarks(frame)
            stats.aperture.append(np.nan if lm is None else lip_aperture(lm))
            stats.width.append(np.nan if lm is None else mouth_width(lm))
            stats.eye_px.append(np.nan if lm is None else face_scale(lm))
            face = bool(track.present[index])
            stats.source_face.append(face)
            landmarks = track.landmarks[index] if face else None
            stats.source_aperture.append(np.nan if landmarks is None else lip_aperture(landmarks))
            if index not in allowed:
                allowed[index] = allowed_tiles(landmarks, track.width, track.height, photo)
            background.add(frame, again, index, allowed[index])
            _mouth_measures(stats, frame, source, landmarks, previous)
            previous = (frame, source)
    if not stats.aperture:
        raise BadInput(f"{mp4.name} holds no video frames")
    stats.changed_px, stats.outside_px = background.changed(allowed, track.height, track.width)
    return stats


@dataclass
class _Background:
    """Tile differences outside the allowed region from the re-encoded source, render-long."""

    sums: npt.NDArray[np.float64] | None = None  # signed, per tile and channel
    counts: npt.NDArray[np.float64] | None = None  # frames in which each tile was checked
    frames: list[tuple[int, Mask | None]] = field(default_factory=list)  # index, tiles > FRAME_TOL

    def add(self, frame: Image, reference: Image, index: int, allowed: Mask) -> None:
        """Take one render frame and its re-encoded source frame."""
        diff = (tile_means(frame) - tile_means(reference)).astype(np.float64)
        checked = ~allowed
        if self.sums is None or self.counts is None:
            self.sums, self.counts = np.zeros_like(diff), np.zeros(checked.shape)
        self.sums += np.where(checked[..., None], diff, 0.0)
        self.counts += checked
        bad = checked & (np.abs(diff).max(axis=-1) > FRAME_TOL)
        self.frames.append((index, bad if bad.any() else None))

    def changed(
        self, allowed: dict[int, Mask], height: int, width: int
    ) -> tuple[list[int], list[int]]:
        """Per frame (changed pixels, checked pixels): tiles off in that frame or all along."""
        if self.sums is None or self.counts is None:
            return [], []
        mean = self.sums / np.maximum(self.counts, 1.0)[..., None]
        lasting = np.abs(mean).max(axis=-1) > LASTING_TOL
        changed, checked_px = [], []
        for index, bad in self.frames:
            checked = ~allowed[index]
            flagged = lasting & checked if bad is None else (lasting & checked) | bad
            changed.append(_pixels(flagged, height, width))
            checked_px.append(_pixels(checked, height, width))
        return changed, checked_px


def _source(avatar_dir: Path) -> str:
    """The prepared avatar's source kind ("video" or "photo"; "" if not recorded)."""
    meta_path = avatar_dir / "avatar.json"
    if not meta_path.is_file():
        return ""
    return str(json.loads(meta_path.read_text(encoding="utf-8")).get("source", ""))


def _paired(
    mp4: Path, avatar_dir: Path, reference: Path, n_clip: int
) -> Iterator[tuple[int, Image, Image, Image]]:
    """Yield (clip index, render frame, source frame, re-encoded source) per render frame."""
    fps = probe(mp4).fps or 25.0
    # The header's frame count may be off by a frame or two: ask the clip for some to spare.
    clip = iter_pingpong(avatar_dir / "clip.mp4", n_clip, probe(mp4).frames + n_clip, fps)
    frames = zip(iter_frames(mp4), clip, iter_frames(reference), strict=False)
    for frame, (index, source), again in frames:
        yield index, frame, source, again


def encoder_settings(mp4: Path) -> dict[str, int]:
    """The render's rate control: ``{"crf": n}`` or ``{"bitrate": bit/s}``.

    libx264 writes its options into the stream; without them (NVENC), the average bit rate.
    """
    with mp4.open("rb") as f:
        head = f.read(4 << 20)
    start = head.find(b"x264 - core")
    if start >= 0:
        options = head[start : head.find(b"\x00", start)].decode("ascii", "replace")
        crf = re.search(r" crf=([0-9.]+)", options)
        if " rc=crf" in options and crf:
            return {"crf": round(float(crf.group(1)))}
        rate = re.search(r" (?:vbv_maxrate|bitrate)=([0-9]+)", options)
        if rate:
            return {"bitrate": int(rate.group(1)) * 1000}
    info = probe(mp4)
    return {"bitrate": max(50_000, int(mp4.stat().st_size * 8 / max(info.duration_s, 0.1)))}


def reencode_source(mp4: Path, avatar_dir: Path, n_clip: int, out: Path) -> Path:
    """Encode the source frames the render shows, with the render's settings, into `out`."""
    info = probe(mp4)
    fps = info.fps or 25.0
    settings = encoder_settings(mp4)
    with VideoWriter(
        out,
        info.width,
        info.height,
        round(fps),
        crf=settings.get("crf", 20),
        bitrate=settings.get("bitrate"),
    ) as writer:
        # The header's frame count may be off by a frame or two: a second to spare, so every
        # render frame has its reference (the pairing stops at the render's last frame).
        frames = info.frames + round(fps)
        for _, frame in iter_pingpong_i420(avatar_dir / "clip.mp4", n_clip, frames, fps):
            writer.write_i420(frame)
    return out


def allowed_tiles(landmarks: Landmarks | None, width: int, height: int, eyes: bool = False) -> Mask:
    """bool (tile rows, tile columns): tiles a lip-sync engine may change, margin included.

    With `eyes` (a photo avatar, which the engine makes blink) the eye boxes count too.
    """
    tiles = np.zeros((-(-height // BLOCK), -(-width // BLOCK)), np.uint8)
    if landmarks is None:
        return tiles.astype(bool)
    for eye in eye_boxes(landmarks, width, height) if eyes else []:
        if eye is not None:
            x1, y1, x2, y2 = eye
            tiles[y1 // BLOCK : -(-y2 // BLOCK), x1 // BLOCK : -(-x2 // BLOCK)] = 1
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
    reference: Image,
    landmarks: Landmarks | None,
    allowed: Mask | None = None,
) -> tuple[int, int]:
    """(pixels in differing tiles, pixels checked) outside the allowed region; see module doc.

    `reference` is the source frame after the same encode as the render (`reencode_source`).
    """
    height, width = frame.shape[:2]
    if allowed is None:
        allowed = allowed_tiles(landmarks, width, height)
    # Tile means are linear, so the mean difference is the difference of the means.
    mean = np.abs(tile_means(frame) - tile_means(reference)).max(axis=-1)
    checked = ~allowed
    bad = checked & (mean > FRAME_TOL)
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
