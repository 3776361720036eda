"""HTTP routes: the storefront (``/``) and the admin console (``/admin``), plain HTML, CSS
and JavaScript from ``raymall/web/`` (no build step; nothing is fetched from elsewhere at
run time: the pages' Content-Security-Policy, ``deployments.headers.WEB_CSP``, allows
only this origin).

The pages are clients like any other: they call the JSON API with the user's bearer token
(kept in the browser's storage with its refresh token) and see what the user's role
grants. Assets are read once per replica; ``GET /web/{name}`` serves only the files the
folder held at start-up.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

import raymall
from deployments.security import public
from raymall.errors import NotFound

router = APIRouter(include_in_schema=False)
WEB_DIR = FilePath(raymall.__file__).resolve().parent / "web"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
for _path in ("/", "/admin", "/web/{name}"):
    public("GET", _path)


@cache
def assets() -> dict[str, tuple[bytes, str]]:
    """File name -> (content, media type) of every servable file of ``WEB_DIR``."""
    found: dict[str, tuple[bytes, str]] = {}
    for path in sorted(WEB_DIR.iterdir()):
        kind = TYPES.get(path.suffix)
        if kind is not None and path.is_file():
            found[path.name] = (path.read_bytes(), kind)
    return found


def _asset(name: str) -> Response:
    found = assets().get(name)
    if found is None:
        raise NotFound(f"no page asset {name}")
    body, kind = found
    return Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})


@router.get("/")
async def storefront() -> Response:
    return _asset("index.html")


@router.get("/admin")
async def admin_console() -> Response:
    return _asset("admin.html")


@router.get("/web/{name}")
async def web_asset(
    name: Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,40}\.(css|js|svg|png|html)$")],
) -> Response:
    return _asset(name)
