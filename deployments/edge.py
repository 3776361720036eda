"""The outermost ASGI layer, in pure ASGI (no Starlette middleware) because it runs on
every request: it assigns and echoes ``X-Request-ID`` (a client's own only if it is safe:
``deployments.serve_http.client_request_id``), records per-route metrics, turns any escaped
exception into the one error body, and answers the liveness probe itself. When tracing is
on (``raymall.tracing``) it opens the request's SERVER span, continuing a client's
``traceparent``, names it by the route template with the status and the user, and returns
its ``traceparent`` on the response. Through its
``HttpPolicy`` (``deployments.headers``) it puts the security and CORS headers on every
response, answers CORS preflights, and refuses the operations routes closed in prod.

It also offers each request to the app's *shortcuts* before the app: a shortcut answers
the plainest requests of one hot public route without FastAPI's routing, dependencies
and validation (about a third of a replica's time per similar-product read), and declines
everything else, errors included, so the app remains the one place that rules on a
request it did not answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Protocol

from deployments.headers import HttpPolicy
from deployments.serve_http import client_request_id, new_request_id
from raymall import metrics, tracing
from raymall.errors import error_body
from raymall.logs import get_logger, request_id_var

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Shortcut(Protocol):
    """Answers some requests of the public route ``path`` (its metrics label), or
    declines (False) before sending anything."""

    path: str

    async def __call__(self, scope: Scope, send: Send) -> bool: ...


LIVENESS_PATH = "/healthz"
MAX_BOUND_SERIES = 1_000  # (route, method, status) series kept bound
log = get_logger("http")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return client_request_id(value) or new_request_id()
    return new_request_id()


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class Edge:
    """``echo_request_id=False`` under Ray Serve, whose own middleware already assigns the
    id to the request headers and echoes it on the response."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        echo_request_id: bool = True,
        draining: Callable[[], bool] | None = None,
        shortcuts: Sequence[Shortcut] = (),
        policy: HttpPolicy | None = None,
    ) -> None:
        self.app = app
        self.policy = policy or HttpPolicy()
        self.shortcuts = tuple(shortcuts)
        self.echo_request_id = echo_request_id
        self.draining = draining or (lambda: False)
        self._bound: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        token = request_id_var.set(rid)
        policy = self.policy
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["ops"] = policy.is_ops(scope)  # operations details (/readyz) for this caller
        rid_header = (b"x-request-id", rid.encode("latin-1"))
        added = policy.response_headers(scope)
        status_box = [500]
        started = time.perf_counter()
        traced = _start_span(scope) if tracing.enabled else None
        if traced is not None:
            added = [*added, traced[1]]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                extra = [*added, rid_header] if self.echo_request_id else added
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            if scope["path"] == LIVENESS_PATH and scope["method"] in ("GET", "HEAD"):
                scope["route"] = _Liveness
                await _send_json(send_wrapper, 200, {"status": "ok"})
            elif (preflight := policy.preflight(scope)) is not None:
                scope["route"] = _Preflight
                await send_json_body(send_wrapper, 204, b"", preflight, content_type=False)
            elif policy.refuses(scope):
                body = error_body(rid, "unauthorized", "this route needs the operations token")
                await _send_json(send_wrapper, 401, body, [(b"www-authenticate", b"Bearer")])
            elif self.draining():
                body = error_body(rid, "unavailable", "shutting down: retry on another instance")
                await _send_json(
                    send_wrapper, 503, body, [(b"retry-after", b"1"), (b"connection", b"close")]
                )
            else:
                for shortcut in self.shortcuts:
                    if await shortcut(scope, send_wrapper):
                        scope["route"] = shortcut
                        break
                else:
                    await self.app(scope, receive, send_wrapper)
        except Exception:  # the app failed before answering: answer in the one shape
            log.exception("unhandled error")
            status_box[0] = 500
            try:
                await _send_json(
                    send_wrapper, 500, error_body(rid, "internal_error", "internal error")
                )
            except Exception:  # response already started; nothing more can be sent
                log.warning("could not send the error response", exc_info=True)
        finally:
            route = _route_label(scope)
            counter, latency = self._series(route, scope["method"], status_box[0])
            counter.inc()
            latency.observe(time.perf_counter() - started)
            if traced is not None:
                _end_span(traced, scope, route, status_box[0], rid)
            request_id_var.reset(token)

    def _series(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency series of (route, method, status), bound once."""
        key = (route, method, status)
        found = self._bound.get(key)
        if found is None:
            if len(self._bound) >= MAX_BOUND_SERIES:
                self._bound.clear()
            found = self._bound[key] = (
                metrics.HTTP_REQUESTS.labels(route, method, str(status)),
                metrics.HTTP_LATENCY.labels(route, method),
            )
        return found


def _start_span(scope: Scope) -> tuple[Any, tuple[bytes, bytes], Any] | None:
    """The request's SERVER span, made current: (span, its traceparent header, token); None
    for a request that is not sampled and brought no trace of its own (no header, no id)."""
    return tracing.start_request(scope["method"], scope["path"], scope.get("headers", ()))


def _end_span(
    traced: tuple[Any, Any, Any], scope: Scope, route: str, status: int, rid: str
) -> None:
    attributes: dict[str, str | int] = {
        "http.route": route,
        "http.response.status_code": status,
        "raymall.request_id": rid,
    }
    user_id = getattr(scope.get("state", {}).get("principal"), "user_id", None)
    if user_id is not None:
        attributes["enduser.id"] = str(user_id)
    tracing.end_request(traced, f"{scope['method']} {route}", attributes, status >= 500)


class _LivenessRoute:
    path = LIVENESS_PATH


class _PreflightRoute:
    path = "cors_preflight"


_Liveness = _LivenessRoute()
_Preflight = _PreflightRoute()


async def send_json_body(
    send: Send,
    status: int,
    body: bytes,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bool = True,
) -> None:
    """A complete JSON response whose body is already encoded."""
    headers = [
        *([(b"content-type", b"application/json")] if content_type else []),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(
    send: Send,
    status: int,
    payload: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send_json_body(send, status, body, extra_headers)
