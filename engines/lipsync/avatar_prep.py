"""Preparing an avatar once, for every render: normalised clip, face track, metadata, poster.

A prepared avatar directory holds (shared by every lip-sync engine):

- ``clip.mp4``: H.264 yuv420p, constant ``settings.output_fps``, even size, long side <= 1920,
  no audio, one keyframe a second (cheap seeks for back-and-forth looping);
- ``track.npz``: the `engines.lipsync.facetrack.FaceTrack` of that clip, frame for frame;
- ``avatar.json``: frames, fps, width, height, duration_s, face_frames, source (video|photo);
- ``poster.jpg``: a thumbnail.

A photo becomes an 8 s clip in which the head alone sways and nods a little
(`engines.lipsync.idle.head_motion`: a rigid motion inside a feathered head mask, so the face
is never warped and the background never moves); the render adds blinks. Video is decoded and
re-encoded frame by frame in one pass.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import cv2
import numpy as np
import numpy.typing as npt

from engines.base import ProgressFn, no_progress
from engines.lipsync.facetrack import FaceMesh, FaceTrack, track_frames
from engines.lipsync.idle import head_motion
from engines.media.guard import Budget, Limits
from engines.media.probe import MediaInfo, probe
from engines.media.video import VideoWriter, even_size, iter_frames_i420
from jayavatar.errors import BadInput

if TYPE_CHECKING:
    from jayavatar.settings import Settings

MAX_SIDE = 1920
PHOTO_CLIP_S = 8.0
POSTER_SIDE = 512
# The clip is re-encoded once and decoded on every render: spend bits on quality here.
CLIP_CRF = 16
CLIP_PRESET = "fast"
# Every render decodes the clip again, forth and back: without CABAC and the deblocking
# filter it decodes about 1.7x faster (measured on a 16-core host); at CRF 16 the loss is
# not visible, and only the mouth region is ever regenerated from it.
CLIP_TUNE = "fastdecode"
FILES = ("clip.mp4", "track.npz", "avatar.json", "poster.jpg")

#: An RGB uint8 frame of shape (height, width, 3).
Frame: TypeAlias = npt.NDArray[np.uint8]


def prepare_avatar(
    media: Path, out_dir: Path, settings: Settings, progress: ProgressFn = no_progress
) -> dict[str, Any]:
    """Validate `media` (video or photo) and write the prepared avatar into `out_dir`.

    Raises `BadInput` with a one-line reason for anything unusable; nothing is left behind
    in `out_dir` on failure. Returns the contents of ``avatar.json``.
    """
    info = _validate(media, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _prepare(media, info, out_dir, settings, progress)
    except BaseException:
        for name in (*FILES, "clip.tmp.mp4"):
            (out_dir / name).unlink(missing_ok=True)
        raise


def _validate(media: Path, settings: Settings) -> MediaInfo:
    """Probe and check the limits (from the headers, before any decode) before heavy work."""
    limits = Limits(settings.max_avatar_pixels, settings.max_avatar_s, settings.output_fps)
    info = probe(media, limits)
    if info.kind == "audio":
        raise BadInput(f"{media.name} is audio only; an avatar needs a video or a photo")
    # The first decoded frame must agree with the header the limits were checked on.
    limits.check_size(media, info.width, info.height)
    return info


#: Share of the promised frames below which a video counts as cut off.
TRUNCATED_SHARE = 0.9


def _prepare(
    media: Path, info: MediaInfo, out_dir: Path, settings: Settings, progress: ProgressFn
) -> dict[str, Any]:
    """Write clip, track, metadata and poster; the caller cleans up on failure."""
    fps = settings.output_fps
    width, height, total, frames = _source_frames(media, info, settings)
    tmp = out_dir / "clip.tmp.mp4"
    poster: list[Frame] = []
    with VideoWriter(
        tmp, width, height, fps, crf=CLIP_CRF, preset=CLIP_PRESET, tune=CLIP_TUNE
    ) as writer:
        track = track_frames(_tee(frames, writer, poster), fps, total, progress)
    _check_track(track, media, info, fps, total)
    tmp.replace(out_dir / "clip.mp4")
    track.save(out_dir / "track.npz")
    _write_poster(_poster_frame(poster, track), out_dir / "poster.jpg")
    meta = _metadata(track, info, fps, width, height)
    _write_json(meta, out_dir / "avatar.json")
    progress(1.0, "track")
    return meta


def _source_frames(
    media: Path, info: MediaInfo, settings: Settings
) -> tuple[int, int, int, Iterable[Frame]]:
    """(width, height, expected frames, I420 frames) of the clip to make from `media`."""
    fps = settings.output_fps
    width, height = even_size(info.width, info.height, MAX_SIDE)
    if info.kind == "image":
        photo = load_photo(media)
        height, width = photo.shape[:2]
        landmarks = _require_face(photo, media)
        total = round(PHOTO_CLIP_S * fps)
        motion = head_motion(photo, landmarks, fps, total)
        return width, height, total, (_to_i420(f) for f in motion)
    total = max(1, round(info.duration_s * fps))
    limit = math.ceil(settings.max_avatar_s * fps) + fps
    # The upload's own 4:2:0 samples go to the encoder: an RGB round trip would blur
    # the chroma once more before every render adds its own generation.
    decoded = iter_frames_i420(media, size=(width, height), fps=fps)
    frames = _capped(decoded, limit, media, settings, info.width * info.height)
    return width, height, total, frames


def _check_track(track: FaceTrack, media: Path, info: MediaInfo, fps: int, total: int) -> None:
    """Reject a clip with no frame, a cut-off video, or no face anywhere."""
    if len(track) == 0:
        raise BadInput(f"{media.name} holds no decodable video frame")
    if info.kind != "image" and len(track) < TRUNCATED_SHARE * total and total - len(track) > fps:
        # The header promises more than the file holds: a cut upload, not a short clip.
        raise BadInput(
            f"{media.name} is truncated: its header says {info.duration_s:.1f} s but only "
            f"{len(track) / fps:.1f} s of video could be read"
        )
    if track.face_frames == 0:
        raise BadInput(
            f"no face found in {media.name}; use a clip where the face is clearly visible"
        )


def _metadata(
    track: FaceTrack, info: MediaInfo, fps: int, width: int, height: int
) -> dict[str, Any]:
    """The contents of ``avatar.json`` for a prepared clip."""
    return {
        "frames": len(track),
        "fps": fps,
        "width": width,
        "height": height,
        "duration_s": round(len(track) / fps, 3),
        "face_frames": track.face_frames,
        "source": "photo" if info.kind == "image" else "video",
    }


def _capped(
    frames: Iterator[Frame], limit: int, media: Path, settings: Settings, source_px: int
) -> Iterator[Frame]:
    """Stop a clip whose header understates its length once it passes the duration limit,
    or whose frames cost more work (pixels, wall time) than its file size allows.

    Each frame counts at the source's size (decoded before it is scaled down), or its own.
    """
    budget = Budget(media)
    for i, frame in enumerate(frames):
        if i >= limit:
            raise BadInput(
                f"{media.name} is longer than {settings.max_avatar_s:.0f} s, the avatar limit"
            )
        budget.spend(max(source_px, frame.shape[0] * 2 // 3 * frame.shape[1]))
        yield frame


def _tee(frames: Iterable[Frame], writer: VideoWriter, poster: list[Frame]) -> Iterator[Frame]:
    """Encode each I420 frame as it is; pass it on to the face tracker as RGB.

    Keeps a few RGB candidate posters.
    """
    for i, frame in enumerate(frames):
        writer.write_i420(frame)
        rgb = cast(Frame, cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_I420))
        if i < 50 and i % 10 == 0:
            poster.append(rgb)
        yield rgb


def _to_i420(frame: Frame) -> Frame:
    """An RGB frame as an I420 array ((3H/2) x W), the clip's own layout."""
    return cast(Frame, cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420))


def _poster_frame(candidates: list[Frame], track: FaceTrack) -> Frame:
    """Pick the first kept frame that shows a face."""
    for k, frame in enumerate(candidates):
        if track.present[k * 10]:
            return frame
    return candidates[0]


def _write_poster(frame: Frame, path: Path) -> None:
    """Save a JPEG thumbnail, long side at most POSTER_SIDE."""
    h, w = frame.shape[:2]
    scale = min(1.0, POSTER_SIDE / max(h, w))
    small = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("could not encode the poster")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.tobytes())
    tmp.replace(path)


def _write_json(data: dict[str, Any], path: Path) -> None:
    """Write JSON atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def load_photo(path: Path, max_side: int = MAX_SIDE) -> Frame:
    """Decode a photo upright (EXIF orientation applied): RGB uint8, even size, long side capped."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadInput(f"{path.name} is not a readable image") from exc
    h, w = rgb.shape[:2]
    size = even_size(w, h, max_side)
    if size != (w, h):
        shrink = size[0] < w
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.ascontiguousarray(rgb)


def _require_face(photo: Frame, media: Path) -> npt.NDArray[np.float32]:
    """Fail fast on a photo without a face, before making a clip of it; return its landmarks."""
    with FaceMesh(video=False) as mesh:
        landmarks = mesh.landmarks(photo)
    if landmarks is None:
        raise BadInput(
            f"no face found in {media.name}; use a photo where the face is clearly visible"
        )
    return landmarks


def photo_motion(photo: Frame, fps: int, frames: int, overscan: float = 0.04) -> Iterator[Frame]:
    """Yield a clip of `photo` gently breathing and swaying: a rigid similarity per frame.

    The whole picture moves: a moving test face for tests and benchmarks (photo avatars move
    only the head: `engines.lipsync.idle.head_motion`).

    Every motion is a cosine with a whole number of cycles over the clip, so velocity is zero
    at both ends and back-and-forth looping turns around smoothly. The `overscan` zoom keeps
    the moving picture's edges out of view.
    """
    h, w = photo.shape[:2]
    duration = frames / fps
    cx, cy = w / 2, h / 2
    for k in range(frames):
        phase = 2 * math.pi * (k / fps) / duration
        scale = 1 + overscan - 0.006 * math.cos(2 * phase)  # two slow breaths
        dx = -0.008 * w * math.cos(phase)  # one slow sway
        dy = 0.003 * h * math.cos(2 * phase) - 0.002 * h * math.cos(phase)
        angle = 0.4 * math.cos(phase)  # degrees
        m = cast(npt.NDArray[np.float64], cv2.getRotationMatrix2D((cx, cy), angle, scale))
        m[:, 2] += (dx, dy)
        # warpAffine keeps the photo's dtype: the frame is uint8 RGB like `photo`.
        yield cast(
            Frame,
            cv2.warpAffine(
                photo, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101
            ),
        )
