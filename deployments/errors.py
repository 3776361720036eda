"""Map every failure to the one JSON error body (``raymall.errors.error_body``):
``{"error": {"code", "message", "request_id"}}``. Domain errors carry their own code and
status; framework errors (validation, unknown route, wrong method) are converted here, and
Ray, database and Redis faults by the one fault table (``raymall.faults``), once."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from raymall import metrics
from raymall.errors import DomainError, RateLimited, Unavailable, error_body
from raymall.faults import to_domain
from raymall.logs import get_logger

log = get_logger("errors")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    route = getattr(request.scope.get("route"), "path", "unmatched")
    metrics.HTTP_ERRORS.labels(route, code).inc()
    body = error_body(request_id(request), code, message, details)
    return JSONResponse(body, status_code=status, headers=headers)


def domain_headers(exc: DomainError) -> dict[str, str] | None:
    """Response headers a domain error carries (``Retry-After`` on 429, and on a 503 that
    names when to retry)."""
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(max(1, exc.retry_after))}
    if isinstance(exc, Unavailable) and exc.retry_after is not None:
        return {"Retry-After": str(exc.retry_after)}
    return None


def domain_error_json(exc: DomainError, rid: str, route: str) -> tuple[int, bytes, dict[str, str]]:
    """A domain error answered below the app (``deployments.edge`` shortcuts): status,
    body and headers exactly as the app's handler sends them, and the same metrics."""
    if exc.status >= 500:
        log.warning("domain error %s: %s", exc.code, exc.message)
    metrics.HTTP_ERRORS.labels(route, exc.code).inc()
    body = error_body(rid, exc.code, exc.message, exc.details or None)
    return exc.status, json_bytes(body), domain_headers(exc) or {}


def json_bytes(content: Any) -> bytes:
    """JSON as FastAPI's ``JSONResponse`` renders it."""
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        headers = domain_headers(exc)
        if exc.status >= 500:
            log.warning("domain error %s: %s", exc.code, exc.message)
        return error_response(
            request, exc.status, exc.code, exc.message, exc.details or None, headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(
            request,
            422,
            "validation_error",
            "request validation failed",
            {"errors": _validation_details(exc)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route for {request.method} {request.url.path}"
        return error_response(
            request, exc.status_code, code, message, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        mapped = to_domain(exc)
        if mapped is not None:
            return await _domain(request, mapped)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal_error", "internal error")
