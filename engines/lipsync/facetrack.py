"""The face track of an avatar clip: FaceMesh landmarks and a steady face box for every frame.

Computed once when an avatar is prepared (`track.npz`) and reused by every render, so no
render ever runs a face detector. Landmarks are mediapipe FaceMesh's 478 points (468 mesh
points plus 10 iris points) in pixel coordinates.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from engines.base import ProgressFn, no_progress

N_LANDMARKS = 478
# FaceMesh topology (indices into the 478 points), from mediapipe's FACEMESH_LIPS / FACE_OVAL.
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
INNER_UPPER_MID, INNER_LOWER_MID = 13, 14
CHIN, NOSE_TIP, NOSE_BASE = 152, 1, 2
IRIS_A, IRIS_B = 468, 473

#: Gaps up to this many frames (a blink of the detector) are bridged by interpolation.
MAX_GAP_FRAMES = 5
#: Temporal smoothing (frames, Gaussian sigma). Centred, so it removes jitter without lag.
LANDMARK_SIGMA = 1.0
BOX_SIGMA = 2.0

#: An RGB uint8 frame of shape (height, width, 3).
Image: TypeAlias = npt.NDArray[np.uint8]
#: Pixel x, y points, float32: (478, 2) for one frame, (N, 478, 2) for a clip.
Points: TypeAlias = npt.NDArray[np.float32]
#: One bool per frame.
Mask: TypeAlias = npt.NDArray[np.bool_]
#: (N, 4) int32 x1, y1, x2, y2.
Boxes: TypeAlias = npt.NDArray[np.int32]


@dataclass
class FaceTrack:
    """Per-frame face data of one clip; arrays are indexed by frame number."""

    fps: float
    width: int
    height: int
    present: Mask  # (N,) bool: a face was found (or bridged) in this frame
    boxes: Boxes  # (N, 4) int32 x1, y1, x2, y2 around all landmarks; zeros when absent
    landmarks: Points  # (N, 478, 2) float32 pixel x, y; zeros when absent

    def __len__(self) -> int:
        return int(self.present.shape[0])

    @property
    def face_frames(self) -> int:
        """How many frames have a face."""
        return int(self.present.sum())

    def save(self, path: Path) -> None:
        """Write the track as a compressed .npz (atomically: temp file, then rename)."""
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            fps=np.float64(self.fps),
            size=np.array([self.width, self.height], np.int32),
            present=self.present.astype(bool),
            boxes=self.boxes.astype(np.int32),
            landmarks=self.landmarks.astype(np.float32),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> FaceTrack:
        """Read a track written by `save`."""
        with np.load(path) as data:
            width, height = (int(v) for v in data["size"])
            return cls(
                fps=float(data["fps"]),
                width=width,
                height=height,
                present=data["present"].astype(bool),
                boxes=data["boxes"].astype(np.int32),
                landmarks=data["landmarks"].astype(np.float32),
            )


class FaceMesh:
    """mediapipe FaceMesh (478 points, one face), made to work on faces small in the frame.

    FaceMesh's own detector only finds faces that fill a good part of the picture, so a
    person in a wide 16:9 shot is often missed. Here the mesh runs on a square crop around
    the face: the previous frame's face when tracking (`video=True`), else a box from
    mediapipe's full-range face detector, else the whole frame.
    """

    def __init__(self, *, video: bool = True, min_confidence: float = 0.5) -> None:
        import mediapipe as mp  # heavy; only the lip-sync environment has it

        def mesh(static: bool) -> Any:
            return mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )

        self._video = video
        self._static: Any = mesh(True)
        self._tracking: Any = mesh(False) if video else None
        self._detector: Any = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=min_confidence
        )
        self._roi: tuple[int, int, int] | None = None  # square crop x, y, side

    def landmarks(self, frame: Image) -> Points | None:
        """Return (478, 2) float32 pixel landmarks of the most prominent face, or None."""
        frame = np.ascontiguousarray(frame)
        found = None
        if self._roi is not None and self._tracking is not None:
            found = self._run(self._tracking, frame, self._roi)
        if found is None:
            found = self._run(self._static, frame, None)
        if found is None:
            box = self._detect(frame)
            if box is not None:
                found = self._run(self._static, frame, _square(box, frame.shape, 2.0))
        self._roi = None if found is None else _square(_bounds(found), frame.shape, 1.7)
        return found

    def _run(self, mesh: Any, frame: Image, roi: tuple[int, int, int] | None) -> Points | None:
        """Run a mesh graph on the crop `roi` (or the whole frame); landmarks in frame pixels."""
        x, y = 0, 0
        image = frame
        if roi is not None:
            x, y, side = roi
            image = np.ascontiguousarray(frame[y : y + side, x : x + side])
        result = mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        points = result.multi_face_landmarks[0].landmark
        xy = np.array([(p.x, p.y) for p in points], dtype=np.float32)
        return xy * np.array([w, h], np.float32) + np.array([x, y], np.float32)

    def _detect(self, frame: Image) -> tuple[float, float, float, float] | None:
        """Find the largest face with the full-range detector; (x1, y1, x2, y2) in pixels."""
        result = self._detector.process(frame)
        if not result.detections:
            return None
        h, w = frame.shape[:2]
        boxes = [d.location_data.relative_bounding_box for d in result.detections]
        b = max(boxes, key=lambda r: r.width * r.height)
        return b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h

    def close(self) -> None:
        """Release the graphs."""
        for graph in (self._static, self._tracking, self._detector):
            if graph is not None:
                graph.close()

    def __enter__(self) -> FaceMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bounds(points: Points) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) around a set of points."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _square(
    box: tuple[float, float, float, float], shape: tuple[int, ...], grow: float
) -> tuple[int, int, int]:
    """A square crop (x, y, side) around `box`, `grow` times its long side, kept in the frame."""
    h, w = shape[:2]
    x1, y1, x2, y2 = box
    side = int(min(max(x2 - x1, y2 - y1) * grow, w, h))
    side = max(side, 16)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x = int(np.clip(cx - side / 2, 0, max(0, w - side)))
    y = int(np.clip(cy - side / 2, 0, max(0, h - side)))
    return x, y, min(side, w, h)


def track_frames(
    frames: Iterable[Image],
    fps: float,
    total: int = 0,
    progress: ProgressFn = no_progress,
) -> FaceTrack:
    """Run FaceMesh over a frame stream and return the smoothed track.

    Frames are consumed one at a time; only the landmarks are kept. `total` (if known) scales
    the progress reports.
    """
    raw: list[Points | None] = []
    width = height = 0
    with FaceMesh(video=True) as mesh:
        for i, frame in enumerate(frames):
            height, width = frame.shape[:2]
            raw.append(mesh.landmarks(frame))
            if total and i % 10 == 0:
                progress(min(1.0, i / total), "track")
    present = np.array([r is not None for r in raw], dtype=bool)
    landmarks = np.zeros((len(raw), N_LANDMARKS, 2), np.float32)
    for i, r in enumerate(raw):
        if r is not None:
            landmarks[i] = r
    present, landmarks = bridge_gaps(present, landmarks)
    landmarks = smooth_landmarks(present, landmarks)
    boxes = smooth_boxes(present, landmarks, width, height)
    return FaceTrack(fps, width, height, present, boxes, landmarks)


def segments(present: Mask) -> list[tuple[int, int]]:
    """Return [start, stop) runs of consecutive True values."""
    padded = np.concatenate([[False], present.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def bridge_gaps(
    present: Mask, landmarks: Points, max_gap: int = MAX_GAP_FRAMES
) -> tuple[Mask, Points]:
    """Fill short detector dropouts between two face frames by linear interpolation.

    A face that blinks out for a frame or two would otherwise make the mouth freeze and jump.
    """
    present = present.copy()
    landmarks = landmarks.copy()
    runs = segments(present)
    for (_, end), (start, _) in itertools.pairwise(runs):
        gap = start - end
        if gap > max_gap:
            continue
        a, b = landmarks[end - 1], landmarks[start]
        for k in range(1, gap + 1):
            w = k / (gap + 1)
            landmarks[end - 1 + k] = (1 - w) * a + w * b
        present[end:start] = True
    return present, landmarks


def smooth_landmarks(present: Mask, landmarks: Points, sigma: float = LANDMARK_SIGMA) -> Points:
    """Remove detector jitter with a centred Gaussian over time, within each face run."""
    # Imported here: scipy.ndimage takes about 0.36 s to import, and renders never smooth.
    from scipy.ndimage import gaussian_filter1d

    out = landmarks.copy()
    for a, b in segments(present):
        if b - a > 1:
            out[a:b] = gaussian_filter1d(landmarks[a:b], sigma, axis=0, mode="nearest")
    return out


def smooth_boxes(
    present: Mask,
    landmarks: Points,
    width: int,
    height: int,
    sigma: float = BOX_SIGMA,
) -> Boxes:
    """Return int32 boxes around each frame's landmarks, smoothed over time and clipped."""
    from scipy.ndimage import gaussian_filter1d

    boxes = np.zeros((len(present), 4), np.float64)
    boxes[:, :2] = landmarks.min(axis=1)
    boxes[:, 2:] = landmarks.max(axis=1)
    for a, b in segments(present):
        if b - a > 1:
            boxes[a:b] = gaussian_filter1d(boxes[a:b], sigma, axis=0, mode="nearest")
    boxes[~present] = 0
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return np.round(boxes).astype(np.int32)


def face_scale(landmarks: Points) -> float:
    """A size measure of one face: the distance between the iris centres, in pixels."""
    return float(np.linalg.norm(landmarks[IRIS_A] - landmarks[IRIS_B]))


def lip_aperture(landmarks: Points) -> float:
    """Inner-lip opening (points 13 to 14) divided by the inter-ocular distance."""
    gap = float(np.linalg.norm(landmarks[INNER_UPPER_MID] - landmarks[INNER_LOWER_MID]))
    return gap / max(face_scale(landmarks), 1e-6)


def mouth_width(landmarks: Points) -> float:
    """Mouth corner to corner (points 61 to 291) divided by the inter-ocular distance."""
    gap = float(np.linalg.norm(landmarks[MOUTH_LEFT] - landmarks[MOUTH_RIGHT]))
    return gap / max(face_scale(landmarks), 1e-6)
