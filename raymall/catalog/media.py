"""Uploaded images (product images, avatars): checked once, stored by content hash.

Guarantees, whichever store holds the bytes: a stored image is at most ``max_bytes``, its
declared Content-Type is one of png/jpeg/webp/gif *and* its magic bytes agree (else 415),
and it is stored under its content hash, so names cannot collide, traverse paths or be
guessed from other input. The public URL is ``/media/images/<sha256>.<ext>`` and the app
serves it (``GET /media/images/{name}``) from either store, with the checked Content-Type
and an immutable cache lifetime.

Stores, chosen by ``RAYMALL_MEDIA_URL`` (``raymall.catalog.media_stores.open_media``):
- ``MediaStore``: local disk under ``settings.resolved_media_dir`` (the default). In a
  multi-node cluster that directory must be shared storage; every node serves it.
- ``raymall.catalog.media_s3.S3MediaStore``: an S3-compatible bucket (``s3://bucket/prefix``);
  every replica on every node reads and writes the same objects.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from raymall.errors import PayloadTooLarge, UnsupportedMedia

URL_PREFIX = "/media/images/"
NAME_RE = re.compile(r"^[0-9a-f]{64}\.(png|jpg|webp|gif)$")
TYPES = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
}
CONTENT_TYPES = {ext: ctype for ctype, ext in TYPES.items()}
CACHE_CONTROL = "public, max-age=31536000, immutable"  # a name is its content's hash


def sniff(data: bytes) -> str | None:
    """The image kind named by the leading bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def content_type_of(name: str) -> str:
    """The Content-Type of a stored image's public name (its extension was checked)."""
    return CONTENT_TYPES[name.rsplit(".", 1)[1]]


class ImageStore(ABC):
    """The checks and naming every store shares; a store only keeps bytes by name.

    ``save`` and ``has`` block (call them off the event loop); ``load`` is awaitable and
    answers a local file as its ``Path`` (sent with sendfile) or the bytes themselves."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def check_declared(self, content_type: str | None) -> str:
        """The extension for a declared Content-Type, or 415."""
        ctype = (content_type or "").split(";")[0].strip().lower()
        if ctype not in TYPES:
            raise UnsupportedMedia(
                f"Content-Type must be one of {', '.join(sorted(TYPES))}",
                details={"content_type": ctype or None},
            )
        return TYPES[ctype]

    def checked_name(self, data: bytes, content_type: str | None) -> str:
        """The public name of an acceptable upload, or 413/415."""
        declared = self.check_declared(content_type)
        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"images are limited to {self.max_bytes} bytes")
        if not data:
            raise UnsupportedMedia("the upload is empty")
        actual = sniff(data)
        if actual != declared:
            raise UnsupportedMedia(
                "the file content is not the declared image type",
                details={"declared": CONTENT_TYPES[declared], "detected": actual},
            )
        return f"{hashlib.sha256(data).hexdigest()}.{actual}"

    def save(self, data: bytes, content_type: str | None) -> dict[str, object]:
        """Store an image (once: the same content keeps its name); returns its URL, type and
        size."""
        name = self.checked_name(data, content_type)
        if not self.has(name):
            self.put(name, data, content_type_of(name))
        return {"url": URL_PREFIX + name, "content_type": content_type_of(name), "bytes": len(data)}

    def url_is_stored(self, url: str) -> bool:
        """External https URLs are accepted as given; ours must be stored."""
        if url.startswith(URL_PREFIX):
            name = url[len(URL_PREFIX) :]
            return bool(NAME_RE.match(name)) and self.has(name)
        return url.startswith("https://")

    @abstractmethod
    def has(self, name: str) -> bool:
        """Whether an image of this (well-formed) name is stored."""

    @abstractmethod
    def put(self, name: str, data: bytes, content_type: str) -> None:
        """Keep checked bytes under their name; readers never see a partial image."""

    @abstractmethod
    async def load(self, name: str) -> Path | bytes | None:
        """The image behind a public name, or None (bad name or not stored)."""


class MediaStore(ImageStore):
    """Images as files under ``root/images``."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self.root = Path(root)
        self.images = self.root / "images"

    def has(self, name: str) -> bool:
        return (self.images / name).is_file()

    def put(self, name: str, data: bytes, content_type: str) -> None:
        self.images.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.images, prefix=".upload-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, self.images / name)  # atomic: readers never see a partial file

    def path_for(self, name: str) -> Path | None:
        """The file behind a public name, or None (bad name or not stored)."""
        if not NAME_RE.match(name):
            return None
        path = self.images / name
        return path if path.is_file() else None

    async def load(self, name: str) -> Path | None:
        return self.path_for(name)
