"""Audio in and out for the voice engines: decode, check, clean up and write speech.

Any container PyAV can read (WAV, MP3, OGG, M4A, a video with a sound track...) is decoded to
mono float32 at the engine's rate. A voice sample is then checked (not empty, not silent, not
noise, long enough, not too long), trimmed of leading/trailing silence and long pauses, and
brought to a fixed loudness, so every engine clones from the same kind of reference.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import av
import numpy as np
import numpy.typing as npt

from engines.media.guard import open_input
from jayavatar.errors import BadInput

if TYPE_CHECKING:
    from jayavatar.settings import Settings

Audio: TypeAlias = npt.NDArray[np.float32]
Mask: TypeAlias = npt.NDArray[np.bool_]

#: Loudness every sample and every synthesized clip is brought to (RMS of speech, dBFS); as
#: broadcast loudness (-23 LUFS), it leaves room for speech's ~20 dB peak-to-RMS ratio.
TARGET_DBFS = -23.0
#: Highest peak allowed after the loudness gain; louder clips are scaled down instead.
PEAK_LIMIT = 0.95
#: Analysis frames: 20 ms windows every 10 ms, the usual speech-analysis grid.
WIN_S = 0.020
HOP_S = 0.010
#: A file whose loud frames stay below this level (dBFS) counts as silent.
SILENT_DBFS = -60.0
#: Noise floor of the output: about 4 LSB of 16-bit audio, far below hearing in speech pauses,
#: but it keeps every stretch of the file non-zero (a log-mel of exact zeros is -inf/NaN).
FLOOR_RMS = 4.0 / 32768.0


@dataclass(frozen=True)
class Speech:
    """A validated voice sample: trimmed, loudness-normalised mono audio and what was measured."""

    audio: Audio
    rate: int
    speech_s: float
    warnings: list[str] = field(default_factory=list)


def decode(path: Path, rate: int, max_s: float) -> Audio:
    """Decode the first audio stream of any container into mono float32 at `rate`.

    Raises `BadInput` for empty, unreadable, truncated or audio-less files and stops decoding
    (with `BadInput`) once more than `max_s` seconds came out, so a huge file never fills RAM.
    """
    if path.stat().st_size == 0:
        raise BadInput("the file is empty (0 bytes)")
    _check_riff_size(path)
    try:
        container = open_input(path)
    except BadInput as exc:
        raise BadInput("the file is not audio or video that can be read") from exc
    with container:
        if not container.streams.audio:
            raise BadInput("the file has no sound track")
        declared = _declared_s(container)
        if declared is not None and declared > max_s + 1:
            # From the header, before decoding: a long file is refused without the work.
            raise BadInput(f"the sample is too long: {declared:.0f} s; at most {max_s:.0f} s")
        audio = _decode_stream(container, rate, max_s)
    got = len(audio) / rate
    # FFmpeg ends quietly at a cut; a header that promised much more means a truncated file.
    if declared is not None and got < 0.9 * declared - 0.2:
        raise BadInput(
            f"the audio is truncated: {got:.1f} s of the {declared:.1f} s it declares; "
            "export it again"
        )
    return audio


def _check_riff_size(path: Path) -> None:
    """Refuse a WAV whose RIFF header declares more bytes than the file holds (a cut download)."""
    with path.open("rb") as raw:
        head = raw.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    declared = int.from_bytes(head[4:8], "little") + 8
    # Streaming writers leave 0 or 0xFFFFFFFF when they could not know the size.
    if 8 < declared < 0xFFFFFFFF and path.stat().st_size < declared - 2:
        raise BadInput("the WAV file is truncated (shorter than its header says); export it again")


def _declared_s(container: av.container.InputContainer) -> float | None:
    """Return the audio duration the container's headers declare, if any."""
    stream = container.streams.audio[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # av.time_base: microseconds
    return None


def _decode_stream(container: av.container.InputContainer, rate: int, max_s: float) -> Audio:
    """Resample every frame of the first audio stream; stop past `max_s` seconds."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    limit = int(max_s * rate)
    chunks: list[Audio] = []
    total = 0
    try:
        for frame in container.decode(container.streams.audio[0]):
            for out in resampler.resample(frame):
                chunks.append(np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1))
                total += out.samples
            if total > limit:
                raise BadInput(f"the sample is too long: more than {max_s:.0f} s of audio")
        for out in resampler.resample(None):
            chunks.append(np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1))
    except (av.FFmpegError, ValueError) as exc:
        raise BadInput("the audio is corrupt or truncated; export it again") from exc
    if not chunks:
        raise BadInput("the file contains no decodable audio")
    audio = np.nan_to_num(np.concatenate(chunks), nan=0.0, posinf=0.0, neginf=0.0)
    return np.asarray(audio, dtype=np.float32)


def frame_levels(audio: Audio, rate: int) -> npt.NDArray[np.float64]:
    """Return the level (dBFS) of each 20 ms frame, one every 10 ms."""
    frames = _frames(audio, rate)
    power = np.mean(frames.astype(np.float64) ** 2, axis=1)
    return np.asarray(10.0 * np.log10(power + 1e-12), dtype=np.float64)


def _frames(audio: Audio, rate: int, win_s: float = WIN_S) -> Audio:
    """Cut audio into frames of `win_s` starting every 10 ms (zero-padded at the end).

    The frame count depends on the hop only, so frames of any width line up with the mask.
    """
    win, hop = int(win_s * rate), int(HOP_S * rate)
    count = max(1, -(-len(audio) // hop))
    padded = np.zeros((count - 1) * hop + win, dtype=np.float32)
    padded[: len(audio)] = audio[: len(padded)]
    view = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop]
    return np.asarray(view[:count])


def speech_mask(audio: Audio, rate: int) -> Mask:
    """Mark the 10 ms frames that hold speech (voice-activity detection).

    Energy-based with an adaptive threshold: a frame is speech when it rises a third of the
    way from the file's noise floor to its loud parts (at least 6 dB above the floor) and is
    within 40 dB of the loud parts. Steady sound (hum, hiss, a tone) never rises: no speech.
    Gaps up to 150 ms are bridged and blips under 60 ms dropped, so words stay whole.
    """
    levels = frame_levels(audio, rate)
    floor = float(np.percentile(levels, 10))
    loud = float(np.percentile(levels, 98))
    rise = max(6.0, (loud - floor) / 3.0)
    active = levels > max(floor + rise, loud - 40.0, SILENT_DBFS)
    return _drop_short(_bridge_gaps(active, 15), 6)


def _bridge_gaps(mask: Mask, frames: int) -> Mask:
    """Fill False runs shorter than `frames` that lie between True frames."""
    out = mask.copy()
    idx = np.flatnonzero(mask)
    for a, b in itertools.pairwise(idx):
        if 1 < b - a <= frames:
            out[a:b] = True
    return out


def _drop_short(mask: Mask, frames: int) -> Mask:
    """Clear True runs shorter than `frames`."""
    out = mask.copy()
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start < frames:
            out[start:stop] = False
    return out


def voiced_fraction(audio: Audio, rate: int, mask: Mask) -> float:
    """Return the share of speech frames that are periodic (voiced), as human speech is.

    Broadband noise passes an energy detector when it is bursty; it fails this: its
    normalised autocorrelation has no strong peak at a pitch lag between 60 and 400 Hz.
    40 ms frames hold two periods of the lowest voices.
    """
    frames = _frames(audio, rate, 0.040)[mask]
    if len(frames) == 0:
        return 0.0
    size = frames.shape[1]
    frames = frames - frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(frames, n=2 * size, axis=1)
    corr = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :size]
    lo, hi = int(rate / 400), int(rate / 60)
    # Unbiased: a lag-L product sums only size - L terms.
    lags = corr[:, lo:hi] * (size / (size - np.arange(lo, hi)))
    peak = lags.max(axis=1) / (corr[:, 0] + 1e-12)
    return float(np.mean(peak > 0.5))


def loudness_dbfs(audio: Audio, rate: int, mask: Mask | None = None) -> float:
    """Return the RMS level (dBFS) of the speech frames, or of all frames without a mask."""
    levels = frame_levels(audio, rate)
    if mask is not None and mask.any():
        levels = levels[mask]
    return float(10.0 * np.log10(np.mean(10.0 ** (levels / 10.0)) + 1e-12))


def normalise(audio: Audio, rate: int, mask: Mask | None = None) -> Audio:
    """Bring speech to `TARGET_DBFS`, scaling down instead where a peak would pass `PEAK_LIMIT`."""
    gain = 10.0 ** ((TARGET_DBFS - loudness_dbfs(audio, rate, mask)) / 20.0)
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak * gain > PEAK_LIMIT:
        gain = PEAK_LIMIT / max(peak, 1e-12)
    return np.asarray(audio * gain, dtype=np.float32)


def trim(audio: Audio, rate: int, mask: Mask, margin_s: float = 0.1) -> Audio:
    """Cut silence before and after the speech and shorten pauses to at most 0.4 s."""
    hop = int(HOP_S * rate)
    keep = np.zeros(len(audio), dtype=bool)
    margin = int(margin_s / HOP_S)
    grown = _bridge_gaps(mask, int(0.4 / HOP_S))  # pauses up to 0.4 s stay as they are
    for i in np.flatnonzero(grown).tolist():
        lo, hi = max(0, i - margin) * hop, (i + margin + 2) * hop
        keep[lo:hi] = True
    return np.asarray(audio[keep], dtype=np.float32)


def add_floor(audio: Audio, seed: int = 0) -> Audio:
    """Add a faint noise floor so that no stretch of the written file is exact digital silence."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, FLOOR_RMS, len(audio)).astype(np.float32)
    return np.asarray(np.clip(audio + noise, -1.0, 1.0), dtype=np.float32)


def load_speech(path: Path, settings: Settings, rate: int) -> Speech:
    """Decode and validate a voice sample; return it trimmed and loudness-normalised.

    Raises `BadInput` (one line) for files that are empty, too big, not audio, corrupt,
    silent, noise without a voice, or with too little or too much speech.
    """
    size = path.stat().st_size
    if size > settings.max_sample_bytes:
        limit_mb = settings.max_sample_bytes / 1e6
        raise BadInput(
            f"the sample is too big: {size / 1e6:.1f} MB, the limit is {limit_mb:.0f} MB"
        )
    # Allow twice the speech limit of raw audio: long pauses are trimmed away below.
    audio = decode(path, rate, 2 * settings.max_sample_s)
    return check_speech(audio, rate, settings)


def check_speech(audio: Audio, rate: int, settings: Settings) -> Speech:
    """Validate decoded audio as a voice sample; return the cleaned-up `Speech`."""
    total_s = len(audio) / rate
    if total_s < settings.min_sample_s:
        raise BadInput(
            f"the sample is too short: {total_s:.1f} s, "
            f"at least {settings.min_sample_s:g} s of speech are needed"
        )
    # Silent: even its loudest frames are below -60 dBFS (a faint hiss counts as silence).
    if float(np.percentile(frame_levels(audio, rate), 98)) < SILENT_DBFS:
        raise BadInput("the sample is silent")
    mask = speech_mask(audio, rate)
    speech_s = float(mask.sum()) * HOP_S
    if speech_s == 0.0 or voiced_fraction(audio, rate, mask) < 0.15:
        raise BadInput("no voice found in the sample: it sounds like noise or silence")
    if speech_s < settings.min_sample_s:
        raise BadInput(
            f"the sample has too little speech: {speech_s:.1f} s, "
            f"at least {settings.min_sample_s:g} s are needed"
        )
    if speech_s > settings.max_sample_s:
        raise BadInput(
            f"the sample is too long: {speech_s:.0f} s of speech, "
            f"the limit is {settings.max_sample_s:g} s"
        )
    warnings = _warnings(audio, rate, mask, speech_s)
    trimmed = trim(audio, rate, mask)
    cleaned = normalise(trimmed, rate, speech_mask(trimmed, rate))
    return Speech(audio=cleaned, rate=rate, speech_s=round(speech_s, 2), warnings=warnings)


def _warnings(audio: Audio, rate: int, mask: Mask, speech_s: float) -> list[str]:
    """List what makes a usable sample a poor reference."""
    warnings = []
    if np.mean(np.abs(audio) >= 0.999) > 1e-3:
        warnings.append("the sample is clipped (too loud when recorded); cloning may sound harsh")
    levels = frame_levels(audio, rate)
    quiet = levels[~mask]
    if len(quiet) > 10 and loudness_dbfs(audio, rate, mask) - float(np.median(quiet)) < 25.0:
        warnings.append("background noise is high; a quieter room clones better")
    if speech_s < 6.0:
        warnings.append(f"only {speech_s:.1f} s of speech; 6 s or more clones better")
    return warnings


def write_wav(path: Path, audio: Audio, rate: int) -> None:
    """Write mono 16-bit PCM WAV atomically (temp file in the same folder, then rename)."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(pcm.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
