"""Product images on local disk under ``settings.resolved_media_dir``.

Guarantees: a stored file is at most ``max_bytes``, its declared Content-Type is one of
png/jpeg/webp/gif *and* its magic bytes agree (else 415), and it is stored under its
content hash, so names cannot collide, traverse paths or be guessed from other input.
The public URL is ``/media/images/<sha256>.<ext>``. In a multi-node cluster the media
directory must be shared storage (or fronted by object storage); every node serves it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
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


class MediaStore:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.images = self.root / "images"
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

    def save(self, data: bytes, content_type: str | None) -> dict[str, object]:
        """Store an image; returns its URL, type and size."""
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
        name = f"{hashlib.sha256(data).hexdigest()}.{actual}"
        path = self.images / name
        if not path.exists():
            self.images.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.images, prefix=".upload-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: readers never see a partial file
        return {
            "url": URL_PREFIX + name,
            "content_type": CONTENT_TYPES[actual],
            "bytes": len(data),
        }

    def path_for(self, name: str) -> Path | None:
        """The file behind a public name, or None (bad name or not stored)."""
        if not NAME_RE.match(name):
            return None
        path = self.images / name
        return path if path.is_file() else None

    def url_is_stored(self, url: str) -> bool:
        """External https URLs are accepted as given; local ones must exist."""
        if url.startswith(URL_PREFIX):
            return self.path_for(url[len(URL_PREFIX) :]) is not None
        return url.startswith("https://")
