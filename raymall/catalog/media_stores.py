"""Which image store a shop uses: ``RAYMALL_MEDIA_URL`` decides, once per process."""

from __future__ import annotations

from raymall.catalog.media import ImageStore, MediaStore
from raymall.settings import Settings


def open_media(settings: Settings) -> ImageStore:
    """The store ``RAYMALL_MEDIA_URL`` names: unset, local disk (``RAYMALL_MEDIA_DIR``);
    ``s3://bucket[/prefix]``, that bucket (``RAYMALL_MEDIA_S3_*`` for endpoint and keys)."""
    if settings.media_url is None:
        return MediaStore(settings.resolved_media_dir, settings.max_upload_bytes)
    from raymall.catalog.media_s3 import S3MediaStore  # boto3 only where a bucket is used

    return S3MediaStore.from_settings(settings)
