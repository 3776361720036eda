"""Map every failure to the one JSON error body: ``{"error": {"code", "message",
"request_id"}}``. Domain errors carry their own code and status; framework errors
(validation, unknown route, wrong method) and Ray faults are converted here, once."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from raymall import metrics
from raymall.errors import DomainError, RateLimited
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
    body: dict[str, Any] = {"code": code, "message": message, "request_id": request_id(request)}
    if details:
        body["details"] = details
    route = getattr(request.scope.get("route"), "path", "unmatched")
    metrics.HTTP_ERRORS.labels(route, code).inc()
    return JSONResponse({"error": body}, status_code=status, headers=headers)


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
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(max(1, exc.retry_after))}
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
        mapped = map_fault(exc)
        if mapped is not None:
            return await _domain(request, mapped)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal_error", "internal error")


def map_fault(exc: BaseException) -> DomainError | None:
    """Convert Ray and connection faults into retriable 503s; unwrap domain errors that a
    Ray task raised (Ray wraps them in RayTaskError)."""
    from raymall.errors import Unavailable

    cause = getattr(exc, "cause", None)
    if isinstance(cause, DomainError):
        return cause
    if isinstance(exc, DomainError):
        return exc
    name = type(exc).__name__
    if name in {
        "RayActorError",
        "ActorDiedError",
        "ActorUnavailableError",
        "GetTimeoutError",
        "BackPressureError",
        "OperationalError",
        "ConnectionError",
        "TimeoutError",
        "RedisConnectionError",
    } or isinstance(exc, ConnectionError | TimeoutError):
        return Unavailable(f"a backing service is unavailable ({name}); retry the request")
    return None
