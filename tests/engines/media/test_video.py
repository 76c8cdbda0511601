"""Media I/O: streaming decode, the MP4 writer, audio loading, back-and-forth looping."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from engines.media import video as media
from engines.media.probe import probe
from jayavatar.errors import BadInput

pytestmark = pytest.mark.env("lipsync")

FPS = 25


def level_frame(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    """A flat frame whose grey level encodes its index, so decoded order can be checked."""
    return np.full((h, w, 3), (i * 7) % 250, np.uint8)


def write_levels(path: Path, n: int, fps: int = FPS, audio: np.ndarray | None = None) -> Path:
    """Write an n-frame clip of `level_frame`s."""
    with media.VideoWriter(path, 64, 48, fps, audio=audio) as w:
        for i in range(n):
            w.write(level_frame(i))
    return path


def stream_durations(path: Path) -> dict[str, float]:
    """Duration in seconds of each stream, by type, read back with PyAV."""
    with av.open(str(path)) as c:
        return {s.type: float(s.duration * s.time_base) for s in c.streams}


def test_writer_makes_h264_aac_faststart_with_equal_durations(tmp_path: Path) -> None:
    rate = media.OUTPUT_AUDIO_RATE
    audio = (0.2 * np.sin(np.arange(int(1.37 * rate)) * 0.05)).astype(np.float32)
    n = media.frames_for_audio(len(audio), rate, FPS)
    out = write_levels(tmp_path / "o.mp4", n, audio=audio)
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264"
        assert v.codec_context.pix_fmt == "yuv420p"
        assert a.codec_context.name == "aac"
    d = stream_durations(out)
    assert abs(d["video"] - n / FPS) < 1e-6
    assert abs(d["audio"] - d["video"]) <= 1 / FPS
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")


def test_writer_pads_short_audio_to_the_video_length(tmp_path: Path) -> None:
    audio = np.zeros(1000, np.float32)
    out = write_levels(tmp_path / "o.mp4", 50, audio=audio)
    d = stream_durations(out)
    assert abs(d["audio"] - 2.0) <= 1 / FPS


def test_writer_stores_provenance_tags(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    tags = {"comment": "made by jayavatar", "description": "request r-123"}
    with media.VideoWriter(out, 64, 48, FPS, metadata=tags) as w:
        w.write(level_frame(0))
    with av.open(str(out)) as c:
        assert c.metadata["comment"] == "made by jayavatar"
        assert c.metadata["description"] == "request r-123"


def test_bitrate_keeps_the_file_under_a_cap(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cap, seconds = 150_000, 2.0
    rate = media.video_bitrate_for(cap, seconds, audio_bitrate=64_000)
    out = tmp_path / "capped.mp4"
    audio = rng.normal(0, 0.1, int(seconds * 48_000)).astype(np.float32)
    with media.VideoWriter(out, 128, 96, FPS, audio=audio, bitrate=rate, audio_bitrate=64_000) as w:
        for _ in range(int(seconds * FPS)):
            w.write(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))  # worst case: noise
    assert out.stat().st_size <= cap


def test_bitrate_for_an_impossible_cap_is_a_clear_error() -> None:
    with pytest.raises(BadInput, match="cannot fit"):
        media.video_bitrate_for(10_000, 60.0)


def test_nvenc_request_falls_back_to_x264_without_a_gpu(tmp_path: Path) -> None:
    with media.VideoWriter(tmp_path / "o.mp4", 64, 48, FPS, nvenc=True) as w:
        w.write(level_frame(0))
        assert w.codec == ("h264_nvenc" if media.nvenc_available() else "libx264")
    assert probe(tmp_path / "o.mp4").frames == 1


def test_writer_removes_the_partial_file_on_error(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    with pytest.raises(RuntimeError), media.VideoWriter(out, 64, 48, FPS) as w:
        w.write(level_frame(0))
        raise RuntimeError("boom")
    assert not out.exists()


def test_iter_frames_streams_in_order_and_resizes(tmp_path: Path) -> None:
    path = write_levels(tmp_path / "v.mp4", 20)
    frames = list(media.iter_frames(path, size=(32, 24)))
    assert len(frames) == 20
    assert all(f.shape == (24, 32, 3) and f.dtype == np.uint8 for f in frames)
    levels = [int(f.mean()) for f in frames]
    assert all(abs(lv - (i * 7) % 250) <= 3 for i, lv in enumerate(levels))


def test_rotated_phone_video_comes_out_upright(tmp_path: Path) -> None:
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)  # stored sideways, shown turned a quarter left
        for i in range(3):
            image = np.zeros((32, 64, 3), np.uint8)
            image[:12, :12] = 255  # marker in the stored top-left corner
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    info = probe(path)
    assert (info.width, info.height) == (32, 64)
    frames = list(media.iter_frames(path, size=(16, 32)))
    assert frames[0].shape == (32, 16, 3)
    # A quarter turn left moves the stored top-left corner to the bottom-left.
    assert frames[0][-4:, :4].mean() > 200 and frames[0][:4, :4].mean() < 50


def test_iter_frames_resamples_to_a_constant_rate(tmp_path: Path) -> None:
    path = write_levels(tmp_path / "v10.mp4", 10, fps=10)  # 1 s at 10 fps
    frames = list(media.iter_frames(path, fps=25))
    assert len(frames) == 25
    src = [round(int(f.mean()) / 7) for f in frames]
    # Each output shows the source frame nearest its time: never backwards, all sources used.
    assert src == sorted(src)
    assert set(src) == set(range(10))


def test_load_audio_resamples_to_mono(tmp_path: Path) -> None:
    sr = 22050
    t = np.arange(sr) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "s.wav", np.stack([left, left], axis=1).astype(np.float32), sr)
    y = media.load_audio(tmp_path / "s.wav", 16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == pytest.approx(16000, abs=64)
    spectrum = np.abs(np.fft.rfft(y))
    assert np.argmax(spectrum) * 16000 / len(y) == pytest.approx(440, abs=3)


def test_load_audio_rejects_video_without_audio(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no audio"):
        media.load_audio(write_levels(tmp_path / "v.mp4", 5), 16000)


def test_pingpong_index_turns_without_repeats() -> None:
    seq = [media.pingpong_index(i, 4) for i in range(12)]
    assert seq == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1]
    assert [media.pingpong_index(i, 1) for i in range(3)] == [0, 0, 0]
    steps = np.abs(np.diff([media.pingpong_index(i, 37) for i in range(500)]))
    assert set(steps.tolist()) == {1}  # never a jump cut


def test_iter_pingpong_matches_sequential_decode(tmp_path: Path) -> None:
    n = 23
    path = write_levels(tmp_path / "v.mp4", n)
    forward = list(media.iter_frames(path))
    got = list(media.iter_pingpong(path, n, 70, FPS, chunk=6))
    assert [i for i, _ in got] == [media.pingpong_index(i, n) for i in range(70)]
    for index, frame in got:
        assert np.array_equal(frame, forward[index])


def test_even_size_caps_the_long_side() -> None:
    assert media.even_size(3840, 2160, 1920) == (1920, 1080)
    assert media.even_size(642, 482, 1920) == (642, 482)
    w, h = media.even_size(1081, 1921, 1920)
    assert max(w, h) <= 1920 and w % 2 == 0 and h % 2 == 0
