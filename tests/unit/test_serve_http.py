"""deployments.serve_http: the middleware Serve puts in front of its HTTP handling, and the
parts of the installed Ray Serve it relies on (a Ray upgrade that changes them fails here)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from starlette.middleware import Middleware

from deployments.serve_http import (
    DISCONNECT_DISABLED,
    NoDisconnectWatch,
    RequestIdCheck,
    client_request_id,
    proxy_middlewares,
    proxy_middlewares_watching,
)
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
    assert [m.cls for m in middlewares] == [NoDisconnectWatch, RequestIdCheck]
    assert all(isinstance(m, Middleware) for m in middlewares)
    assert [m.cls for m in proxy_middlewares_watching()] == [RequestIdCheck]


def test_the_callback_is_set_unless_disconnects_are_watched(tmp_path: Any) -> None:
    key = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
    base = {"database_url": "sqlite://", "redis_url": "redis://x", "var_dir": str(tmp_path)}
    assert ray_env(Settings(**base))[key] == "deployments.serve_http:proxy_middlewares"
    watching = ray_env(Settings(**base, serve_watch_disconnects=True))
    assert watching[key] == "deployments.serve_http:proxy_middlewares_watching"


def serve_stack(headers: list[tuple[bytes, bytes]]) -> tuple[str, list[Any], list[Any]]:
    """One request through Serve's own middleware stack with raymall's callback, to an app
    that reads the request id as Serve's replica does (UTF-8)."""
    from ray.serve._private.http_util import _apply_middlewares

    seen: dict[str, Any] = {}
    sent: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        found = dict(scope["headers"]).get(b"x-request-id", b"").decode("utf-8")
        seen["rid"], seen["headers"] = found, scope["headers"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Any) -> None:
        sent.append(message)

    stack = _apply_middlewares(app, proxy_middlewares())
    asyncio.run(stack({"type": "http", "headers": headers}, None, send))
    return seen["rid"], seen["headers"], sent[0]["headers"]


def test_a_request_id_that_is_not_safe_is_replaced_before_serve_reads_it() -> None:
    for bad in (b"\xff\xfe", b"a b", b"x" * 65, b"", b"<script>", "é".encode()):
        rid, headers, answer = serve_stack([(b"x-request-id", bad), (b"host", b"x")])
        assert client_request_id(rid.encode()) == rid and len(rid) == 32
        assert [v for k, v in headers if k == b"x-request-id"] == [rid.encode()]
        assert (b"x-request-id", rid.encode()) in answer
    rid, _, answer = serve_stack([(b"x-request-id", b"abc-1.2:3_Z")])
    assert rid == "abc-1.2:3_Z" and (b"x-request-id", b"abc-1.2:3_Z") in answer
    _, headers, _ = serve_stack([(b"serve-multiplexed-model-id", b"\xff"), (b"x-session-id", b"")])
    assert {k for k, _ in headers} == {b"x-request-id", DISCONNECT_DISABLED[0]}
