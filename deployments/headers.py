"""What the edge (``deployments.edge``) adds to every response and decides before the app:
security headers, CORS, and the operations routes closed to the public in prod.

- Security headers on every response, shortcuts and errors alike: ``nosniff``,
  ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``, a Content-Security-Policy
  that lets a JSON answer load nothing (the docs pages get their own, which allows the
  Swagger UI and ReDoc assets FastAPI serves them with; the storefront and admin pages
  theirs, which allows this origin only), and ``Strict-Transport-Security``
  only when ``RAYMALL_BEHIND_TLS`` says clients reach the API over HTTPS.
- CORS, off unless ``RAYMALL_CORS_ORIGINS`` names origins: a request from a listed origin
  gets ``Access-Control-Allow-Origin`` with that origin (``Vary: Origin``), and its
  preflight is answered here (204); other origins get no CORS header, so browsers refuse
  them. Tokens travel in the ``Authorization`` header, never in cookies, so credentials
  are not allowed.
- Operations routes (``OPS_PATHS``: metrics and the API docs) in ``RAYMALL_ENV=prod`` need
  ``Authorization: Bearer <RAYMALL_OPS_TOKEN>`` (401 otherwise, and always when no token
  is set); ``/readyz`` stays public there but tells only ready or not, unless the caller
  has the token (``scope["state"]["ops"]``). Outside prod they are open.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Headers = list[tuple[bytes, bytes]]

OPS_PATHS = frozenset({"/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
READINESS_PATH = "/readyz"
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})

API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# FastAPI's docs pages: Swagger UI and ReDoc from jsdelivr, an inline start-up script
DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    b"https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; frame-ancestors 'none'; "
    b"base-uri 'none'; form-action 'self'"
)
# the storefront and admin pages (deployments.web_routes): their own scripts, styles and
# the app's images, and calls to this origin only
WEB_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
WEB_PATHS = frozenset({"/", "/admin"})
WEB_PREFIX = "/web/"
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
CORS_METHODS = b"GET, POST, PUT, PATCH, DELETE"
CORS_HEADERS = b"Authorization, Content-Type, Idempotency-Key, X-Request-ID, X-Flash-Token"
CORS_EXPOSE = b"X-Request-ID, Retry-After, Location"
CORS_MAX_AGE = b"600"


def _base(behind_tls: bool, csp: bytes) -> Headers:
    found = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", csp),
    ]
    return [*found, HSTS] if behind_tls else found


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return bytes(value)
    return None


class HttpPolicy:
    """Built once per replica from the settings (``from_settings``)."""

    def __init__(
        self,
        *,
        cors_origins: Iterable[str] = (),
        behind_tls: bool = False,
        ops_closed: bool = False,
        ops_token: str | None = None,
    ) -> None:
        self.origins = frozenset(o.rstrip("/").encode() for o in cors_origins)
        self.any_origin = b"*" in self.origins
        self.ops_closed = ops_closed
        self._ops_bearer = f"Bearer {ops_token}".encode() if ops_token else None
        self.api_headers = _base(behind_tls, API_CSP)
        self.docs_headers = _base(behind_tls, DOCS_CSP)
        self.web_headers = _base(behind_tls, WEB_CSP)
        if self.origins:  # answers differ by origin: caches must keep them apart
            self.api_headers.append((b"vary", b"Origin"))
            self.docs_headers.append((b"vary", b"Origin"))
            self.web_headers.append((b"vary", b"Origin"))

    @classmethod
    def from_settings(cls, settings: Any) -> HttpPolicy:
        token = getattr(settings, "ops_token", None)
        return cls(
            cors_origins=settings.cors_origins,
            behind_tls=settings.behind_tls,
            ops_closed=settings.env == "prod",
            ops_token=token.get_secret_value() if token is not None else None,
        )

    # ---- operations routes ------------------------------------------------------------
    def is_ops(self, scope: Scope) -> bool:
        """May this caller see operations routes and readiness details?"""
        if not self.ops_closed:
            return True
        given = _header(scope, b"authorization")
        return (
            self._ops_bearer is not None
            and given is not None
            and hmac.compare_digest(given.strip(), self._ops_bearer)
        )

    def refuses(self, scope: Scope) -> bool:
        """An operations route that this caller may not see (answer 401)."""
        return self.ops_closed and scope["path"] in OPS_PATHS and not self.is_ops(scope)

    # ---- headers ----------------------------------------------------------------------
    def response_headers(self, scope: Scope) -> Headers:
        """Security headers, plus CORS ones for an allowed origin."""
        path = scope["path"]
        if path in DOCS_PATHS:
            base = self.docs_headers
        elif path in WEB_PATHS or path.startswith(WEB_PREFIX):
            base = self.web_headers
        else:
            base = self.api_headers
        origin = self._allowed_origin(scope)
        if origin is None:
            return base
        return [
            *base,
            (b"access-control-allow-origin", origin),
            (b"access-control-expose-headers", CORS_EXPOSE),
        ]

    def preflight(self, scope: Scope) -> Headers | None:
        """The answer's own headers if this is a CORS preflight from an allowed origin
        (the origin's comes with ``response_headers``, as on every answer)."""
        if scope["method"] != "OPTIONS" or _header(scope, b"access-control-request-method") is None:
            return None
        if self._allowed_origin(scope) is None:
            return None
        return [
            (b"access-control-allow-methods", CORS_METHODS),
            (b"access-control-allow-headers", CORS_HEADERS),
            (b"access-control-max-age", CORS_MAX_AGE),
        ]

    def _allowed_origin(self, scope: Scope) -> bytes | None:
        if not self.origins:
            return None
        origin = _header(scope, b"origin")
        if origin is None:
            return None
        if self.any_origin:
            return b"*"
        return origin if origin.rstrip(b"/") in self.origins else None
