"""Checks on uploads that need no download: name, declared type and size, content, WAV length."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.uploads import avatar_rules, check_content, check_declared, sniff, voice_rules
from jayavatar.errors import BadInput
from jayavatar.settings import Settings
from tests.support.assets import png, wav


def attachment(filename: str, content_type: str | None, size: int) -> discord.Attachment:
    """Return a discord.py attachment as an interaction would carry it."""
    data: dict[str, Any] = {
        "id": "1",
        "filename": filename,
        "size": size,
        "url": "http://127.0.0.1/x",
        "proxy_url": "http://127.0.0.1/x",
    }
    if content_type is not None:
        data["content_type"] = content_type
    return discord.Attachment(data=data, state=SimpleNamespace(http=None))  # type: ignore[arg-type]


def test_declared_type_and_size_are_checked_before_download() -> None:
    rules = voice_rules(Settings())
    assert check_declared(attachment("Me.WAV", "audio/x-wav", 1000), rules) == "wav"
    with pytest.raises(BadInput, match="not a voice sample; send one of"):
        check_declared(attachment("me.exe", "audio/wav", 1000), rules)
    with pytest.raises(BadInput, match="is image/png, not a voice sample"):
        check_declared(attachment("me.wav", "image/png", 1000), rules)
    with pytest.raises(BadInput, match=r"the limit for a voice sample is 25\.0 MiB"):
        check_declared(attachment("me.wav", "audio/wav", 26 * 2**20), rules)
    with pytest.raises(BadInput, match="is empty"):
        check_declared(attachment("me.wav", None, 0), rules)


def test_sniff_names_containers_by_their_first_bytes() -> None:
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "wave"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff(b"\x00\x00\x00\x18ftypisom") == "mp4"
    assert sniff(b"\x1aE\xdf\xa3\x01") == "matroska"
    assert sniff(b"\x89PNG\r\n") == "png"
    assert sniff(b"ID3\x04") == "mp3"
    assert sniff(b"hello world") is None


def test_content_must_match_the_kind_and_wav_length_is_checked(tmp_path: Path) -> None:
    settings = Settings()
    check_content(wav(tmp_path / "ok.wav", 3.0), voice_rules(settings), settings)
    with pytest.raises(BadInput, match=r"the sample is 1\.0 s long; at least 2 s needed"):
        check_content(wav(tmp_path / "short.wav", 1.0), voice_rules(settings), settings)
    with pytest.raises(BadInput, match=r"not a voice sample \(png content\)"):
        check_content(png(tmp_path / "p.png"), voice_rules(settings), settings)
    check_content(png(tmp_path / "face.png"), avatar_rules(settings), settings)
    with pytest.raises(BadInput, match=r"not an avatar video or photo \(wave content\)"):
        check_content(tmp_path / "ok.wav", avatar_rules(settings), settings)
