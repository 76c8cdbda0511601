"""Audio around XTTS: reference clips in (decode, trim, normalise), speech out (trim, pause, WAV).

Used by `engines.voice.xtts`; needs numpy and PyAV, which only the xtts environment has.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jayavatar.errors import BadInput

SAMPLE_RATE = 24_000  # what the HiFi-GAN decoder writes
COND_RATE = 22_050  # what the GPT conditioning and the DVAE codes work at
GOOD_SPEECH_S = 6.0


def max_seconds(text: str, lang: str) -> float:
    """Longest plausible speech for `text`: slow speech plus a margin; longer is babble."""
    per_char = 0.30 if lang in ("zh", "ja", "ko") else 0.11
    return 1.0 + per_char * len(text)


def trim_tail(wav: np.ndarray, text: str, lang: str) -> np.ndarray:
    """Cut XTTS's end-of-sentence garbage: trailing low energy, and anything past the text's
    plausible length (at the quietest point of the overrun's start)."""
    frame = SAMPLE_RATE // 50
    if len(wav) < 4 * frame:
        return wav
    usable = len(wav) // frame * frame
    rms = np.sqrt(np.mean(wav[:usable].reshape(-1, frame) ** 2, axis=1) + 1e-12)
    limit = int(max_seconds(text, lang) * SAMPLE_RATE) // frame
    if len(rms) > limit:
        window = rms[int(limit * 0.8) : limit]
        rms = rms[: int(limit * 0.8) + int(np.argmin(window)) + 1]
    voiced = np.nonzero(rms > max(float(rms.max()) * 10 ** (-35 / 20), 1e-4))[0]
    end_frame = int(voiced[-1]) + 1 if len(voiced) else len(rms)
    end = min(len(wav), (end_frame + 5) * frame)  # keep 100 ms of natural decay
    out = wav[:end].copy()
    fade = min(len(out), SAMPLE_RATE // 50)
    out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=out.dtype)
    return out


def pause(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Return a pause of room-tone noise (about -80 dBFS): never exact digital silence."""
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 1e-4).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, rng: np.random.Generator | None, rate: int) -> float:
    """Write mono 16-bit PCM (1-LSB dither when `rng` is given); return the duration in seconds."""
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    dither = rng.triangular(-1.0, 0.0, 1.0, len(audio)) if rng is not None else 0.0
    pcm = np.clip(np.round(audio * 32767.0 + dither), -32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return len(pcm) / rate


@dataclass
class Reference:
    """Reference speech ready for the conditioning encoders."""

    clips: list[np.ndarray]
    speech_s: float
    warnings: list[str]


def decode_audio(path: Path, rate: int, max_s: float) -> np.ndarray:
    """Decode any audio (or video) file FFmpeg reads to mono float32 at `rate`."""
    import av  # only enrollment decodes files; synthesis-only hosts need not have PyAV

    from engines.media.guard import open_input

    parts: list[np.ndarray] = []
    limit = int(max_s * rate) + rate
    try:
        container = open_input(path)  # the demuxer its bytes announce, local files only
    except BadInput as exc:
        raise BadInput(f"{path.name} is not a readable audio file") from exc
    try:
        with container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(stream):
                parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
                if sum(len(p) for p in parts) > limit:
                    raise BadInput(f"{path.name} is longer than {max_s:g} s")
            parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as exc:
        raise BadInput(f"{path.name} is not a readable audio file") from exc
    audio = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    if not np.all(np.isfinite(audio)):
        raise BadInput(f"{path.name} holds invalid samples")
    return audio


def voiced_frames(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mark 20 ms frames that carry speech: above -55 dBFS and within 35 dB of the loud ones."""
    frame = rate // 50
    usable = len(audio) // frame * frame
    if usable == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(audio[:usable].reshape(-1, frame) ** 2, axis=1))
    loud = float(np.percentile(rms, 95))
    return np.asarray(rms > max(10 ** (-55 / 20), loud * 10 ** (-35 / 20)))


def clean_reference(audio: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """Trim silence (ends cut, pauses over 0.2 s shortened), normalise loudness to -20 dBFS.

    Returns the cleaned audio and its seconds of speech.
    """
    frame = rate // 50
    voiced = voiced_frames(audio, rate)
    if not voiced.any():
        return np.zeros(0, np.float32), 0.0
    # 100 ms around speech keeps consonant onsets and natural decay.
    near = np.convolve(voiced.astype(int), np.ones(11, dtype=int), mode="same") > 0
    first, last = np.nonzero(near)[0][[0, -1]]
    keep = np.zeros_like(near)
    quiet = 0
    for index in range(first, last + 1):
        quiet = 0 if near[index] else quiet + 1
        keep[index] = quiet <= 10
    frames = audio[: len(voiced) * frame].reshape(-1, frame)
    body = frames[keep].reshape(-1)
    speech_rms = float(np.sqrt(np.mean(frames[voiced] ** 2)))
    gain = min(0.1 / max(speech_rms, 1e-6), 0.95 / max(float(np.max(np.abs(body))), 1e-6))
    return (body * gain).astype(np.float32), float(voiced.sum()) / 50.0


def prepare_reference(clips: list[Path], min_speech_s: float, max_total_s: float) -> Reference:
    """Decode, trim and normalise the reference clips; reject too little or too much audio."""
    cleaned, speech, total = [], 0.0, 0.0
    for clip in clips:
        audio = decode_audio(clip, COND_RATE, max_total_s)
        total += len(audio) / COND_RATE
        if total > max_total_s:
            raise BadInput(f"reference audio is longer than {max_total_s:.0f} s in total")
        body, seconds = clean_reference(audio, COND_RATE)
        if seconds > 0:
            cleaned.append(body)
            speech += seconds
    if speech < min_speech_s:
        raise BadInput(f"only {speech:.1f} s of speech found; record at least {min_speech_s:.0f} s")
    warnings = []
    if speech < GOOD_SPEECH_S:
        warnings.append(f"only {speech:.1f} s of speech; about 6 s or more clones better")
    return Reference(cleaned, speech, warnings)


def with_last(items: Iterator[Any]) -> Iterator[tuple[bool, Any]]:
    """Pair each item with whether it is the last one."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield False, current
        current = following
    yield True, current


def pause_after(chunk: str) -> float:
    """A natural pause: longer after a full stop than after a clause cut mid-sentence."""
    return 0.3 if chunk.rstrip("\"')]»”’」』").endswith(tuple(".!?…。！？؟।")) else 0.12
