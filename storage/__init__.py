"""Storage of voices, avatars, uploads and renders behind one small Protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.base import Storage
from storage.local import LocalStorage

if TYPE_CHECKING:
    from jayavatar.settings import Settings

__all__ = ["LocalStorage", "Storage", "build_storage"]


def build_storage(settings: Settings) -> Storage:
    """Build the storage backend for these settings; an unusable bucket fails here, in one line."""
    if settings.storage == "local":
        return LocalStorage(settings.data_dir / "store")
    # Imported here so a local deployment never loads the S3 client.
    from storage.cache import ReadCache
    from storage.s3 import S3Storage
    from storage.s3check import S3Config

    config = S3Config(
        endpoint_url=settings.s3_endpoint_url,
        bucket=settings.s3_bucket,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id.get_secret_value(),
        secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        prefix=settings.s3_prefix,
        addressing_style=settings.s3_addressing_style,
    )
    if not config.bucket:
        from jayavatar.errors import BadInput

        raise BadInput("JAYAVATAR_STORAGE=s3 needs JAYAVATAR_S3_BUCKET")
    cache_root = settings.cache_dir or settings.data_dir / "cache"
    cache = ReadCache(cache_root, settings.cache_max_bytes, settings.cache_min_age_s)
    store = S3Storage(config, cache_root, cache)
    store.check()
    return store
