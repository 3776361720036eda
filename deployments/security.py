"""Authentication and authorization at the edge: default deny.

Every route needs a valid access token unless its (method, path template) is on the
explicit ``PUBLIC_ROUTES`` allow list. The global dependency ``authenticate`` enforces
that for every route and leaves the caller on ``request.state.principal``. Routes take
``Depends(current_user)`` for any signed-in user, or ``Depends(require(resource, action))``
for an RBAC permission from the ``permissions`` table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from raymall.errors import Forbidden, Unauthorized

# (method, route path template); "*" matches any method
PUBLIC_ROUTES: set[tuple[str, str]] = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
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
    token = _bearer(request)
    principal = None
    if token is not None:
        verify: TokenVerifier | None = getattr(request.app.state, "verify_token", None)
        if verify is None:
            raise Unauthorized("token authentication is not configured")
        principal = await verify(request, token)
    request.state.principal = principal
    if principal is None and not _is_public(request):
        raise Unauthorized("sign in: this route needs an access token")


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
