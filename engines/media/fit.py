"""Re-encodes a finished render so it fits a byte cap (e.g. Discord's upload limit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.media.guard import open_input
from engines.media.probe import probe
from engines.media.video import VideoWriter, iter_frames, load_audio, video_bitrate_for
from jayavatar.errors import BadInput

AUDIO_RATE = 48_000
#: Lower audio bit rates for tighter caps, so speech stays clear while the video shrinks.
AUDIO_BITRATES = (96_000, 64_000)


def fit_to_size(src: Path, dst: Path, max_bytes: int) -> dict[str, Any]:
    """Write `src` re-encoded under `max_bytes` to `dst`; raise `BadInput` if it cannot fit well."""
    info = probe(src)
    audio = load_audio(src, AUDIO_RATE)
    with open_input(src) as container:
        tags = dict(container.metadata)
    for attempt, audio_bitrate in enumerate(AUDIO_BITRATES):
        # Each attempt aims lower: x264's rate control can overshoot a little on short clips.
        bitrate = int(video_bitrate_for(max_bytes, info.duration_s, audio_bitrate) * (0.9**attempt))
        with VideoWriter(
            dst,
            info.width,
            info.height,
            round(info.fps),
            audio=audio,
            audio_rate=AUDIO_RATE,
            bitrate=bitrate,
            audio_bitrate=audio_bitrate,
            metadata=tags,
        ) as writer:
            for frame in iter_frames(src):
                writer.write(frame)
        if dst.stat().st_size <= max_bytes:
            return {"bytes": dst.stat().st_size, "video_bitrate": bitrate, "attempts": attempt + 1}
    dst.unlink(missing_ok=True)
    raise BadInput(f"the video cannot fit in {max_bytes / 2**20:.1f} MiB at watchable quality")
