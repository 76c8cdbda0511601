"""The Storage Protocol's promises, held by every backend (local folder and S3 bucket alike)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jayavatar.errors import BadInput, NotFound
from storage.base import Storage

BAD_KEYS = ["", "../x", "a//b", ".hidden", "a/../b", "/abs", "a\\b", "a/b/"]


def temp_items(store: Any) -> list[Path]:
    """Return what the backend's temp folder holds (nothing, once every call has returned)."""
    return list(store.tmp.iterdir())


def make_folder(root: Path, files: dict[str, bytes]) -> Path:
    """Write `files` (relative path -> bytes) under `root` and return it."""
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_put_get_overwrite_and_size(store: Storage) -> None:
    store.put_bytes("renders/u/a.mp4", b"one")
    store.put_bytes("renders/u/a.mp4", b"second")
    assert store.get_bytes("renders/u/a.mp4") == b"second"
    assert store.size("renders/u/a.mp4") == 6
    assert store.exists("renders/u/a.mp4") and store.exists("renders/u")
    assert not store.exists("renders/v")
    assert temp_items(store) == []


def test_missing_keys_raise_not_found(store: Storage) -> None:
    with pytest.raises(NotFound):
        store.get_bytes("renders/u/missing.mp4")
    with pytest.raises(NotFound):
        store.size("renders/u/missing.mp4")
    assert not store.local_path("renders/u/missing.mp4").exists()
    assert store.delete("renders/u/missing.mp4") is False
    assert store.delete_prefix("renders/nobody") == 0
    assert store.list("renders/nobody") == []


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_refused_by_every_call(store: Storage, key: str, tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", {"a.txt": b"a"})
    calls = [
        lambda: store.put_bytes(key, b"x"),
        lambda: store.put_file(key, src / "a.txt"),
        lambda: store.get_bytes(key),
        lambda: store.exists(key),
        lambda: store.local_path(key),
        lambda: store.publish_dir(key, src),
        lambda: store.delete(key),
        lambda: store.delete_prefix(key),
    ]
    for call in calls:
        with pytest.raises(BadInput):
            call()


def test_put_file_and_local_path_read_back(store: Storage, tmp_path: Path) -> None:
    src = tmp_path / "speech.wav"
    src.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    store.put_file("work/" + "a" * 32 + "/speech.wav", src)
    local = store.local_path("work/" + "a" * 32 + "/speech.wav")
    assert local.name == "speech.wav" and local.read_bytes() == src.read_bytes()
    assert temp_items(store) == []


def test_publish_dir_replaces_the_whole_folder(store: Storage, tmp_path: Path) -> None:
    first = make_folder(tmp_path / "first", {"clip.mp4": b"1", "old.txt": b"o", "t/x.npz": b"x"})
    second = make_folder(tmp_path / "second", {"clip.mp4": b"22", "t/x.npz": b"yy"})
    store.publish_dir("avatars/u/me", first)
    assert (store.local_path("avatars/u/me") / "old.txt").read_bytes() == b"o"
    store.publish_dir("avatars/u/me", second)
    assert store.list("avatars/u/me") == ["avatars/u/me/clip.mp4", "avatars/u/me/t/x.npz"]
    folder = store.local_path("avatars/u/me")
    assert folder.is_dir()
    got = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    assert got == {"clip.mp4": b"22", "t/x.npz": b"yy"}
    assert store.get_bytes("avatars/u/me/clip.mp4") == b"22"
    assert temp_items(store) == []


def test_delete_and_delete_prefix_remove_everything(store: Storage, tmp_path: Path) -> None:
    store.publish_dir("avatars/u/a", make_folder(tmp_path / "a", {"c.mp4": b"1", "t/x": b"2"}))
    store.put_bytes("renders/u/r.mp4", b"3")
    store.put_bytes("renders/u/r.quality.json", b"{}")
    store.put_bytes("renders/w/r.mp4", b"keep")
    assert store.delete("renders/u/r.quality.json") is True
    assert store.delete_prefix("avatars/u") == 2
    assert store.delete_prefix("renders/u") == 1
    assert store.list("avatars") == [] and store.list("renders") == ["renders/w/r.mp4"]
    assert not store.exists("avatars/u/a")
    assert not store.local_path("avatars/u/a").exists()
    assert temp_items(store) == []


def test_a_single_blob_is_a_prefix_of_itself(store: Storage) -> None:
    store.put_bytes("uploads/" + "b" * 32 + "/source.wav", b"w")
    assert store.delete_prefix("uploads/" + "b" * 32 + "/source.wav") == 1
    assert store.list("uploads") == []


def test_scratch_dirs_are_fresh_and_private(store: Storage) -> None:
    one, two = store.scratch_dir(), store.scratch_dir()
    assert one != two and one.is_dir() and two.is_dir() and not any(one.iterdir())
