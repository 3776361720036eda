"""Uploaded images on local disk and in an S3-compatible bucket keep the same promises: the
same checks (declared type, magic bytes, size; 415/413), the same content-hash names, one
copy per content, no path tricks. The bucket is a real S3 server (moto's server mode on a
free port), reached over HTTP with boto3 exactly as a deployment reaches AWS or MinIO."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raymall.catalog.media import ImageStore, MediaStore
from raymall.catalog.media_s3 import S3MediaStore, parse_s3_url
from raymall.catalog.media_stores import open_media
from raymall.errors import PayloadTooLarge, Unavailable, UnsupportedMedia
from raymall.settings import ConfigError, Settings, load_settings
from tests.s3_server import S3Server, s3_server

BUCKET = "raymall-media"
MAX_BYTES = 2048


def tiny_png(seed: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes([0, seed % 256, 0, 0]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        server.make_bucket(BUCKET)
        yield server


def s3_settings(s3: S3Server, tmp_path: Path, url: str = f"s3://{BUCKET}/shop-a") -> Settings:
    env = s3.env(url)
    return load_settings(
        var_dir=tmp_path,
        media_url=env["RAYMALL_MEDIA_URL"],
        media_s3_endpoint_url=env["RAYMALL_MEDIA_S3_ENDPOINT_URL"],
        media_s3_access_key_id=env["RAYMALL_MEDIA_S3_ACCESS_KEY_ID"],
        media_s3_secret_access_key=env["RAYMALL_MEDIA_S3_SECRET_ACCESS_KEY"],
        max_upload_bytes=MAX_BYTES,
    )


@pytest.fixture(params=["disk", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ImageStore:
    if request.param == "disk":
        return MediaStore(tmp_path, max_bytes=MAX_BYTES)
    s3: S3Server = request.getfixturevalue("s3")
    return open_media(s3_settings(s3, tmp_path, f"s3://{BUCKET}/{tmp_path.name}"))


def test_either_store_checks_type_magic_bytes_and_size_alike(store: ImageStore) -> None:
    png = tiny_png()
    saved = store.save(png, "image/png")
    assert saved["content_type"] == "image/png" and saved["bytes"] == len(png)
    assert store.save(png, "image/png") == saved  # same content, same name
    with pytest.raises(UnsupportedMedia):
        store.save(png, "image/jpeg")  # declared jpeg, content png
    with pytest.raises(UnsupportedMedia):
        store.save(b"<svg/>", "image/svg+xml")
    with pytest.raises(UnsupportedMedia):
        store.save(b"GIF89a" + b"\x00" * 10, "image/png")
    with pytest.raises(UnsupportedMedia):
        store.save(b"", "image/png")
    with pytest.raises(PayloadTooLarge):
        store.save(png + b"\x00" * MAX_BYTES, "image/png")


def test_either_store_gives_back_exactly_what_was_stored_and_nothing_else(
    store: ImageStore,
) -> None:
    png = tiny_png(1)
    url = str(store.save(png, "image/png; charset=binary")["url"])
    name = url.rsplit("/", 1)[1]
    found = asyncio.run(store.load(name))
    assert (found.read_bytes() if isinstance(found, Path) else found) == png
    assert store.url_is_stored(url)
    assert store.url_is_stored("https://cdn.example/x.png")
    assert not store.url_is_stored("/media/images/" + "0" * 64 + ".png")
    assert not store.url_is_stored("/media/images/../../etc/passwd")
    for bad in ("../../etc/passwd", "0" * 64 + ".png", name.replace(".png", ".svg"), ""):
        assert asyncio.run(store.load(bad)) is None


def test_s3_objects_carry_their_checked_type_under_the_prefix(s3: S3Server, tmp_path: Path) -> None:
    store = open_media(s3_settings(s3, tmp_path, f"s3://{BUCKET}/shops/b/"))
    assert isinstance(store, S3MediaStore)
    png = tiny_png(2)
    name = str(store.save(png, "image/png")["url"]).rsplit("/", 1)[1]
    head: Any = s3.client().head_object(Bucket=BUCKET, Key=f"shops/b/images/{name}")  # type: ignore[attr-defined]
    assert head["ContentType"] == "image/png"
    assert head["ContentLength"] == len(png)
    assert "immutable" in head["CacheControl"]


def test_two_replicas_share_one_bucket(s3: S3Server, tmp_path: Path) -> None:
    one = open_media(s3_settings(s3, tmp_path / "one", f"s3://{BUCKET}/shared"))
    other = open_media(s3_settings(s3, tmp_path / "other", f"s3://{BUCKET}/shared"))
    url = str(one.save(tiny_png(3), "image/png")["url"])
    assert other.url_is_stored(url)
    assert asyncio.run(other.load(url.rsplit("/", 1)[1])) == tiny_png(3)


def test_an_unreachable_or_missing_bucket_is_unavailable_not_a_miss(
    s3: S3Server, tmp_path: Path
) -> None:
    missing = open_media(s3_settings(s3, tmp_path, "s3://no-such-bucket/x"))
    with pytest.raises(Unavailable) as refused:
        missing.save(tiny_png(4), "image/png")
    assert refused.value.details["error"] == "NoSuchBucket"
    down = open_media(
        load_settings(
            var_dir=tmp_path,
            media_url=f"s3://{BUCKET}",
            media_s3_endpoint_url="http://127.0.0.1:9",  # nothing listens on discard
            media_s3_timeout_s=0.5,
        )
    )
    with pytest.raises(Unavailable):
        asyncio.run(down.load("0" * 64 + ".png"))


def test_the_url_chooses_the_store_and_its_keys_stay_secret(tmp_path: Path) -> None:
    assert isinstance(open_media(load_settings(var_dir=tmp_path)), MediaStore)
    assert parse_s3_url("s3://bucket-1/a/b/") == ("bucket-1", "a/b/")
    assert parse_s3_url("s3://bucket-1") == ("bucket-1", "")
    for bad in ("http://bucket/x", "s3://", "s3://UPPER/x", "file:///tmp"):
        with pytest.raises(ConfigError, match="RAYMALL_MEDIA_URL"):
            load_settings(var_dir=tmp_path, media_url=bad)
    s = load_settings(
        var_dir=tmp_path, media_url="s3://bucket-1", media_s3_secret_access_key="very-secret"
    )
    assert "very-secret" not in repr(s) and "very-secret" not in str(s.model_dump())
