"""Authentication and authorization at the edge: default deny.

Every route needs a valid access token unless its (method, path template) is on the
explicit ``PUBLIC_ROUTES`` allow list. The global dependency ``authenticate`` enforces
that for every route and leaves the caller on ``request.state.principal``. Routes take
``Depends(current_user)`` for any signed-in user, or ``Depends(require(resource, action))``
for an RBAC permission from the ``permissions`` table.

A bearer token on a public route is verified too (so public routes can personalise via
``optional_user``), but a bad or expired one there is ignored rather than refused: a client
that sends its stale access token along with ``POST /auth/refresh`` must still get through.
So is one whose standing cannot be checked now (``Unavailable``: the replica's revocation
mirror has not loaded): a public route is served anonymously rather than refused.

``client_ip(request)`` is the caller's address for per-IP limits, or None when the
deployment cannot know it (see its docstring).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from raymall.errors import DomainError, Forbidden, Unauthorized, Unavailable

# (method, route path template); "*" matches any method
PUBLIC_ROUTES: set[tuple[str, str]] = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}


def public(method: str, path: str) -> None:
    """Add a route to the allow list (called by router modules at import time)."""
    PUBLIC_ROUTES.add((method.upper(), path))


@dataclass(frozen=True)
class Principal:
    user_id: int
    role: str
    jti: str
    family_id: str | None = None


# Installed by the auth area: (request, bearer token) -> Principal, or raise Unauthorized.
TokenVerifier = Callable[[Request, str], Awaitable[Principal]]
# Installed by the auth area: (role, resource, action) -> allowed?
PermissionCheck = Callable[[Request, str, str, str], Awaitable[bool]]


def _is_public(request: Request) -> bool:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path is None:  # unknown route: let routing answer 404
        return True
    return (request.method, path) in PUBLIC_ROUTES or ("*", path) in PUBLIC_ROUTES


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <access token>'")
    return token.strip()


async def authenticate(request: Request) -> None:
    """Global dependency: resolve the caller; refuse a non-public route without one."""
    is_public = _is_public(request)
    principal = None
    try:
        token = _bearer(request)
        if token is not None:
            verify: TokenVerifier | None = getattr(request.app.state, "verify_token", None)
            if verify is None:
                raise Unauthorized("token authentication is not configured")
            principal = await verify(request, token)
    except DomainError as exc:
        if not is_public or not (exc.status in (401, 403) or isinstance(exc, Unavailable)):
            raise
        principal = None  # a stale or uncheckable token on a public route: anonymous
    request.state.principal = principal
    if principal is None and not is_public:
        raise Unauthorized("sign in: this route needs an access token")


def client_ip(request: Request) -> str | None:
    """The caller's IP address for per-IP limits, or None when it cannot be known.

    With ``trusted_proxy_hops = n > 0`` it is the n-th address from the right of
    ``X-Forwarded-For`` (what the outermost trusted proxy saw). Otherwise it is the socket
    peer, except under Serve's HAProxy ingress: there every connection comes from the local
    HAProxy, which adds no ``X-Forwarded-For`` and passes a client's own header through
    (which uvicorn would then believe), so the address is unknown and None is returned.
    Callers skip per-IP limits on None rather than lump every client into one bucket.
    """
    app_ctx = getattr(request.app.state, "ctx", None)
    return scope_client_ip(request.scope, getattr(app_ctx, "settings", None))


def scope_client_ip(scope: MutableMapping[str, Any], settings: Any) -> str | None:
    """``client_ip`` from an ASGI scope and the replica's settings."""
    hops = int(getattr(settings, "trusted_proxy_hops", 0) or 0)
    if hops > 0:
        forwarded = [
            part.strip()
            for name, value in scope.get("headers", ())
            if name == b"x-forwarded-for"
            for part in value.decode("latin-1").split(",")
            if part.strip()
        ]
        if len(forwarded) >= hops:
            return _valid_ip(forwarded[-hops])
    if getattr(settings, "ha_proxy", False):
        return None
    client = scope.get("client")
    return _valid_ip(client[0]) if client else None


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


async def current_user(request: Request) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        raise Unauthorized("sign in: this route needs an access token")
    return principal


async def optional_user(request: Request) -> Principal | None:
    return getattr(request.state, "principal", None)


def require(resource: str, action: str) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency factory: the caller's role must hold (resource, action)."""

    async def dependency(request: Request) -> Principal:
        principal = await current_user(request)
        check: PermissionCheck | None = getattr(request.app.state, "check_permission", None)
        if check is None or not await check(request, principal.role, resource, action):
            raise Forbidden(f"role '{principal.role}' may not {action} {resource}")
        return principal

    dependency.__name__ = f"require_{resource}_{action}"
    return dependency
