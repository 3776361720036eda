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
``/healthz``. ``RAYMALL_SERVE_WATCH_DISCONNECTS=1`` leaves Serve's default in place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.middleware import Middleware

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

# Serve's header (ray.serve._private.constants.SERVE_HTTP_REQUEST_DISCONNECT_DISABLED_HEADER)
DISCONNECT_DISABLED = (b"x-request-disconnect-disabled", b"?1")


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
    """Serve's HTTP proxy callback: the middlewares it applies around its HTTP handling."""
    return [Middleware(NoDisconnectWatch)]
