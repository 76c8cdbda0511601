"""Local storage: safe keys, atomic writes, folder publishing and clean deletes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jayavatar.errors import BadInput, NotFound
from storage.keys import render_key, upload_key, validate_key, validate_name, voice_prefix
from storage.local import LocalStorage


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a//b",
        "a/./b",
        ".hidden",
        "a\\b",
        "a/b/",
        "x\x00y",
        "a/" + "b" * 200,
        "a/..",
        "ok/..",
    ],
)
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(BadInput):
        validate_key(key)


def test_names_are_folded_and_checked() -> None:
    assert validate_name(" Mom ") == "mom"
    for bad in ("../x", "", "a" * 33, "é", "a b", "-x"):
        with pytest.raises(BadInput):
            validate_name(bad)
    assert voice_prefix("discord-1", "Mom") == "voices/discord-1/mom"
    assert upload_key("a" * 32, "wav") == f"uploads/{'a' * 32}/source.wav"
    for ext in ("../x", "WAV", "tar;rm", "mp4\n", ""):
        with pytest.raises(BadInput):
            upload_key("a" * 32, ext)
    for user in ("eve\n", "eve\r\n", "Eve"):
        with pytest.raises(BadInput):
            voice_prefix(user, "mom")
    with pytest.raises(BadInput):
        render_key("local", "../x")


def test_put_get_and_overwrite(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    store.put_bytes("renders/u/a.mp4", b"one")
    store.put_bytes("renders/u/a.mp4", b"two")
    assert store.get_bytes("renders/u/a.mp4") == b"two"
    assert store.size("renders/u/a.mp4") == 3
    assert list((tmp_path / "s" / ".tmp").iterdir()) == []
    with pytest.raises(NotFound):
        store.get_bytes("renders/u/missing.mp4")


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    (tmp_path / "outside").mkdir()
    (tmp_path / "s" / "voices").mkdir(parents=True)
    os.symlink(tmp_path / "outside", tmp_path / "s" / "voices" / "evil")
    with pytest.raises(NotFound):
        store.put_bytes("voices/evil/x", b"data")
    assert not (tmp_path / "outside" / "x").exists()


def test_publish_dir_replaces_whole_folder(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "a.txt").write_text("a")
    (first / "old.txt").write_text("old")
    (second / "a.txt").write_text("b")
    store.publish_dir("voices/u/v", first)
    store.publish_dir("voices/u/v", second)
    assert store.list("voices/u/v") == ["voices/u/v/a.txt"]
    assert store.get_bytes("voices/u/v/a.txt") == b"b"
    assert list((tmp_path / "s" / ".tmp").iterdir()) == []


def test_delete_prefix_removes_everything_and_empty_parents(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    store.put_bytes("avatars/u/a/clip.mp4", b"1")
    store.put_bytes("avatars/u/a/track/x.npz", b"2")
    assert store.delete_prefix("avatars/u/a") == 2
    assert not (tmp_path / "s" / "avatars").exists()
    assert store.delete_prefix("avatars/u/a") == 0


def test_sweep_removes_temp_items_of_dead_processes(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (store.tmp / f"{dead.stdout.strip()}-abc").mkdir()
    mine = store.scratch_dir()
    assert store.sweep_orphans() == 1
    assert mine.exists()
