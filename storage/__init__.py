"""Storage of voices, avatars, uploads and renders behind one small Protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.base import Storage
from storage.local import LocalStorage

if TYPE_CHECKING:
    from jayavatar.settings import Settings

__all__ = ["LocalStorage", "Storage", "build_storage"]


def build_storage(settings: Settings) -> Storage:
    """Build the storage backend for these settings (the local file system)."""
    return LocalStorage(settings.data_dir / "store")
