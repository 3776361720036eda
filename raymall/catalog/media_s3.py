"""Images in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, moto): ``RAYMALL_MEDIA_URL=
s3://bucket/prefix``. The checks and names are ``raymall.catalog.media.ImageStore``'s; an
image is the object ``<prefix>/images/<sha256>.<ext>`` with its checked Content-Type.

Images are served through the app (``GET /media/images/{name}`` reads the object), not by
redirect: the bucket stays private, an image's URL stays the same when a shop moves from
disk to a bucket (product rows keep their URLs), and the app's immutable cache header lets
a CDN in front of ``/media/`` keep them. Images are small (``RAYMALL_MAX_UPLOAD_BYTES``).

Faults: a missing object is a miss (404 at the route); any other error of the store
(unreachable, timed out after botocore's own retries, refused) is ``Unavailable`` (503),
raised from the original so that it is logged with its cause.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from raymall.catalog.media import CACHE_CONTROL, NAME_RE, ImageStore
from raymall.errors import Unavailable
from raymall.settings import Settings

MISSING = {"404", "NoSuchKey", "NotFound"}


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")`` (prefix may be "")."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError("must be an s3://bucket[/prefix] URL")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the settings (thread-safe; one per store). Credentials not
    given here come from boto3's own chain (AWS_* variables, a pod's service account)."""
    import boto3
    from botocore.config import Config

    key_id, secret = settings.media_s3_access_key_id, settings.media_s3_secret_access_key
    endpoint = settings.media_s3_endpoint_url
    config = Config(
        region_name=settings.media_s3_region,
        connect_timeout=settings.media_s3_timeout_s,
        read_timeout=settings.media_s3_timeout_s,
        retries={"max_attempts": 3, "mode": "standard"},
        # a custom endpoint (MinIO, moto, ...) is addressed by path: no bucket DNS names
        s3={"addressing_style": "path" if endpoint else "auto"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id.get_secret_value() if key_id else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=config,
    )


class S3MediaStore(ImageStore):
    def __init__(self, client: Any, bucket: str, prefix: str, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def from_settings(cls, settings: Settings) -> S3MediaStore:
        assert settings.media_url is not None
        bucket, prefix = parse_s3_url(settings.media_url)
        return cls(s3_client(settings), bucket, prefix, settings.max_upload_bytes)

    def key(self, name: str) -> str:
        return f"{self.prefix}images/{name}"

    def has(self, name: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except (BotoCoreError, ClientError) as exc:
            if _missing(exc):
                return False
            raise _unavailable(exc, "head") from exc
        return True

    def put(self, name: str, data: bytes, content_type: str) -> None:
        try:  # one PUT: the object appears whole or not at all
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.key(name),
                Body=data,
                ContentType=content_type,
                CacheControl=CACHE_CONTROL,
            )
        except (BotoCoreError, ClientError) as exc:
            raise _unavailable(exc, "put") from exc

    def get(self, name: str) -> bytes | None:
        if not NAME_RE.match(name):
            return None
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
            return bytes(reply["Body"].read())
        except (BotoCoreError, ClientError) as exc:
            if _missing(exc):
                return None
            raise _unavailable(exc, "get") from exc

    async def load(self, name: str) -> Path | bytes | None:
        if not NAME_RE.match(name):
            return None
        return await asyncio.to_thread(self.get, name)


def _missing(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    return isinstance(response, dict) and str(response.get("Error", {}).get("Code")) in MISSING


def _unavailable(exc: BaseException, operation: str) -> Unavailable:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return Unavailable(
        f"object storage did not answer ({operation}); retry the request",
        details={"store": "s3", "operation": operation, "error": code or type(exc).__name__},
    )
