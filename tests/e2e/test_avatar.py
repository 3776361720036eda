"""Avatars over HTTP: ``PUT /me/avatar`` takes an image as the raw body with the checks of
every upload (declared type, magic bytes, size: 415/413 in the one error shape), ``GET /me``
shows its URL, the app serves it with its type, and only its owner can change it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.auth_helpers import TestUser, new_user
from tests.unit.test_media_stores import tiny_png

pytestmark = pytest.mark.e2e


def _put(client: httpx.Client, user: TestUser | None, body: bytes, ctype: str) -> httpx.Response:
    headers = {"Content-Type": ctype, **(user.headers if user else {})}
    return client.put("/me/avatar", content=body, headers=headers)


def _code(resp: httpx.Response) -> str:
    return str(resp.json()["error"]["code"])


def test_an_uploaded_avatar_shows_in_the_profile_and_is_served(
    client: httpx.Client, shopper: TestUser
) -> None:
    assert client.get("/me", headers=shopper.headers).json()["avatar_url"] is None
    png = tiny_png(7)
    resp = _put(client, shopper, png, "image/png")
    assert resp.status_code == 200, resp.text
    url = resp.json()["avatar_url"]
    assert url.startswith("/media/images/") and url.endswith(".png")
    me: dict[str, Any] = client.get("/me", headers=shopper.headers).json()
    assert me["avatar_url"] == url and me["id"] == shopper.user_id
    image = client.get(url)
    assert image.status_code == 200 and image.content == png
    assert image.headers["content-type"] == "image/png"
    assert "immutable" in image.headers["cache-control"]
    other = new_user(client, prefix="av")
    assert client.get("/me", headers=other.headers).json()["avatar_url"] is None
    cleared = client.delete("/me/avatar", headers=shopper.headers)
    assert cleared.status_code == 200 and cleared.json()["avatar_url"] is None
    assert client.get(url).status_code == 200  # the image stays; only the profile changed


def test_avatar_uploads_are_checked_like_every_image(
    app: Any, client: httpx.Client, shopper: TestUser
) -> None:
    png = tiny_png(8)
    assert _put(client, None, png, "image/png").status_code == 401
    refused = _put(client, shopper, b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")
    assert refused.status_code == 415 and _code(refused) == "unsupported_media_type"
    lying = _put(client, shopper, png, "image/jpeg")
    assert lying.status_code == 415 and _code(lying) == "unsupported_media_type"
    assert lying.json()["error"]["details"] == {"declared": "image/jpeg", "detected": "png"}
    too_big = _put(client, shopper, png + b"\0" * app.settings.max_upload_bytes, "image/png")
    assert too_big.status_code == 413 and _code(too_big) == "payload_too_large"
    assert client.get("/me", headers=shopper.headers).json()["avatar_url"] is None
