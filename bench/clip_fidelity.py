"""Benchmark: how close a render stays to the uploaded video outside the mouth, per clip quality.

Encodes a moving face as the "upload" (CRF 18), prepares it with each prepared-clip CRF, renders
Piper speech with the landmark engine and measures the PSNR of the render against the upload
outside the feathered mouth/jaw mask (plus a margin for the codec's blocks), with the disk cost
of the prepared clip per minute. Prints one table.

Runs in the lip-sync environment: ``.venvs/lipsync/bin/python bench/clip_fidelity.py``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from cli.demo import DEMO_TEXT
from engines.lipsync import avatar_prep
from engines.lipsync.demo_assets import make_face_clip
from engines.lipsync.facetrack import FaceTrack
from engines.lipsync.landmark import LandmarkEngine
from engines.lipsync.mouth_warp import warp_mask
from engines.media.video import iter_frames, iter_pingpong
from engines.quality import voice as quality_voice
from jayavatar.settings import Settings

MARGIN = 16


def outside_psnr(render: Path, upload: Path, avatar: Path) -> float:
    """PSNR (dB) of the render against the upload over pixels outside every mouth mask."""
    track = FaceTrack.load(avatar / "track.npz")
    n = len(track)
    source = iter_pingpong(upload, n, 10_000, int(track.fps))
    err, count = 0.0, 0
    kernel = np.ones((2 * MARGIN + 1, 2 * MARGIN + 1), np.uint8)
    for frame, (index, original) in zip(iter_frames(render), source, strict=False):
        keep = np.ones(frame.shape[:2], np.uint8)
        if track.present[index]:
            mask = warp_mask(track.landmarks[index], track.width, track.height)
            region = np.zeros(frame.shape[:2], np.uint8)
            region[mask.box.slices] = mask.alpha > 0
            keep = 1 - cv2.dilate(region, kernel)
        diff = (frame.astype(np.float64) - original.astype(np.float64))[keep > 0]
        err += float((diff**2).sum())
        count += diff.size
    return float(10 * np.log10(255.0**2 / max(err / max(count, 1), 1e-12)))


def main() -> None:
    """Prepare and render at each CRF; print PSNR outside the mask and clip size per minute."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--crf", type=int, nargs="+", default=[16, 8, 4, 0])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        upload = make_face_clip(tmp / "upload.mp4", seconds=4.0, side=args.side)
        speech = tmp / "speech.wav"
        sf.write(speech, quality_voice.stock_speech(DEMO_TEXT), quality_voice.RATE)
        print("| clip CRF | PSNR outside mask vs upload | clip MB per minute |")
        print("|---|---|---|")
        for crf in args.crf:
            avatar_prep.CLIP_CRF = crf
            engine = LandmarkEngine(Settings())
            prepared = tmp / f"avatar{crf}"
            engine.prepare(upload, prepared)
            out = tmp / f"render{crf}.mp4"
            engine.render(prepared, speech, out, lambda f, p: None, {}, DEMO_TEXT, "en")
            track = FaceTrack.load(prepared / "track.npz")
            minutes = len(track) / track.fps / 60
            mb = (prepared / "clip.mp4").stat().st_size / 1e6 / minutes
            print(f"| {crf} | {outside_psnr(out, upload, prepared):.2f} dB | {mb:.1f} |")


if __name__ == "__main__":
    main()
