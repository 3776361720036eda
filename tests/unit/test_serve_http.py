"""deployments.serve_http: the middleware Serve puts in front of its HTTP handling, and the
parts of the installed Ray Serve it relies on (a Ray upgrade that changes them fails here)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from starlette.middleware import Middleware

from deployments.serve_http import DISCONNECT_DISABLED, NoDisconnectWatch, proxy_middlewares
from raymall.launcher.app import ray_env
from raymall.settings import Settings


def run(scope: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    asyncio.run(NoDisconnectWatch(app)(scope, None, None))
    return seen


def test_every_http_request_is_marked_and_the_mark_wins() -> None:
    from ray.serve._private.http_util import parse_disconnect_disabled_header

    plain = run({"type": "http", "headers": [(b"host", b"x")]})
    assert parse_disconnect_disabled_header(dict(plain["headers"]))
    assert plain["headers"][0] == (b"host", b"x")
    asked = run({"type": "http", "headers": [(DISCONNECT_DISABLED[0], b"?0")]})
    assert parse_disconnect_disabled_header(dict(asked["headers"]))  # as Serve reads them
    other = run({"type": "lifespan", "headers": []})
    assert other["headers"] == []


def test_serve_reads_the_header_and_the_callback_yields_starlette_middleware() -> None:
    from ray.serve._private import constants, replica

    assert (
        constants.SERVE_HTTP_REQUEST_DISCONNECT_DISABLED_HEADER.encode() == (DISCONNECT_DISABLED[0])
    )
    source = inspect.getsource(replica.Replica._direct_ingress_asgi)
    assert "parse_disconnect_disabled_header(" in source
    assert "receive_task = None" in source
    middlewares = proxy_middlewares()
    assert [m.cls for m in middlewares] == [NoDisconnectWatch]
    assert all(isinstance(m, Middleware) for m in middlewares)


def test_the_callback_is_set_unless_disconnects_are_watched(tmp_path: Any) -> None:
    key = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
    base = {"database_url": "sqlite://", "redis_url": "redis://x", "var_dir": str(tmp_path)}
    assert ray_env(Settings(**base))[key] == "deployments.serve_http:proxy_middlewares"
    assert key not in ray_env(Settings(**base, serve_watch_disconnects=True))
