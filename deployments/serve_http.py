"""ASGI middlewares that Ray Serve puts in front of its own HTTP handling, in every replica
(direct ingress) and proxy, through Serve's HTTP proxy callback
(``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=deployments.serve_http:proxy_middlewares``,
set by ``raymall.launcher.app.ray_env``).

``NoDisconnectWatch``: by default Serve watches every request for a client disconnect, with
a receive task and a request task awaited together, so that it can cancel the handler when
the client goes away. raymall's handlers are short, and cutting one short gains nothing: a
purchase that has been queued is decided and committed whatever becomes of its caller, and
an abandoned answer is dropped by the server. The middleware sets Serve's own per-request
switch, the ``x-request-disconnect-disabled: ?1`` header, so Serve calls the handler
directly: about a sixth of a replica's time per request on a cheap route, measured on
``/healthz``. ``RAYMALL_SERVE_WATCH_DISCONNECTS=1`` leaves Serve's default in place
(``proxy_middlewares_watching``).

``RequestIdCheck`` (always installed, outermost): Serve decodes ``X-Request-ID`` and its
routing headers as UTF-8 before any app code runs, so a non-UTF-8 value was a plain-text
500 from the proxy. A client's request id is kept only if it is 1-64 characters of
``[A-Za-z0-9._:-]`` (``client_request_id``); any other is replaced by a fresh one, so Serve,
the logs and the response all carry the same safe id. Serve's routing headers
(multiplexed model id, session id) are not the client's to set: raymall uses neither, and
they are dropped.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.middleware import Middleware

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

# Serve's header (ray.serve._private.constants.SERVE_HTTP_REQUEST_DISCONNECT_DISABLED_HEADER)
DISCONNECT_DISABLED = (b"x-request-disconnect-disabled", b"?1")
REQUEST_ID = b"x-request-id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
# Serve's routing headers (constants.SERVE_MULTIPLEXED_MODEL_ID, SERVE_SESSION_ID), as
# Serve compares them: lower case, "-" and "_" alike
_SERVE_ROUTING = frozenset({b"serve_multiplexed_model_id", b"x_session_id"})


def client_request_id(value: bytes) -> str | None:
    """A client's ``X-Request-ID`` if it is safe to keep (1-64 of ``[A-Za-z0-9._:-]``)."""
    return value.decode("ascii") if _REQUEST_ID.fullmatch(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdCheck:
    """Leaves exactly one valid ``X-Request-ID`` on every HTTP request (the client's if
    valid, else a fresh one) and drops Serve's routing headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            kept: list[tuple[bytes, bytes]] = []
            rid: str | None = None
            for name, value in scope["headers"]:
                if name == REQUEST_ID:
                    rid = rid or client_request_id(value)
                elif name.lower().replace(b"-", b"_") not in _SERVE_ROUTING:
                    kept.append((name, value))
            kept.append((REQUEST_ID, (rid or new_request_id()).encode()))
            scope["headers"] = kept
        await self.app(scope, receive, send)


class NoDisconnectWatch:
    """Marks every HTTP request as one whose client disconnect Serve need not watch for.
    The mark is appended last, so it overrides a value the client sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["headers"] = [*scope["headers"], DISCONNECT_DISABLED]
        await self.app(scope, receive, send)


def proxy_middlewares() -> list[Middleware]:
    """Serve's HTTP proxy callback: the middlewares it applies around its HTTP handling
    (the last is outermost)."""
    return [Middleware(NoDisconnectWatch), Middleware(RequestIdCheck)]


def proxy_middlewares_watching() -> list[Middleware]:
    """The callback when Serve watches for client disconnects (its default)."""
    return [Middleware(RequestIdCheck)]
