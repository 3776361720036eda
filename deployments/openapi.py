"""The OpenAPI document as the API really answers: one error body, and every error status
an operation can return.

FastAPI documents a ``{"detail": [...]}`` 422 (``HTTPValidationError``) on operations with
inputs and no other error. Every real error is ``raymall.errors.error_body``'s
``{"error": {"code", "message", "request_id", "details"?}}`` (``deployments.errors``), so
``install`` replaces the app's ``openapi()`` with one that post-processes FastAPI's
document once, from rules over each route:

- 401 and 403 on every route off the ``PUBLIC_ROUTES`` allow list (``deployments.security``):
  a missing, bad, expired or revoked token; a blocked account or a missing permission;
- 404 on a route with path parameters (an unknown or another user's object);
- 422 on a route with inputs (parameters or a body), with ``details.errors`` listing
  what failed, and 400 on a JSON body FastAPI cannot parse at all;
- 503 on every route: the edge answers it while the replica drains, and a Ray, database or
  Redis fault maps to it (``raymall.faults``), retriable;
- ``EXTRA_STATUSES``: what the rules cannot see (conflicts, rate limits, uploads, a
  public route that still wants a credential, a 404 for an id in a body).

Raw-body routes (image uploads, the payment callback) get the request body FastAPI cannot
see (``RAW_BODIES``); routes answering a plain ``Response``, a file or a dict get their
real success body (``SUCCESS_CONTENT``: metrics as text, images, the shapes of pages and
lists); routes off the allow list name the bearer scheme.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI

from deployments.security import PUBLIC_ROUTES

ERROR_SCHEMA = "Error"
BEARER = "bearerAuth"
FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")

# what each status means here, as the operation's response description
STATUS_TEXT = {
    400: "Bad request: a body that cannot be parsed (`bad_request`), `amount_mismatch`",
    401: "No valid credential: missing, malformed, expired or revoked (`unauthorized`, "
    "`invalid_token`, `token_expired`, `token_revoked`, `invalid_credentials`, …)",
    403: "Not allowed: the account is blocked, its role lacks the permission, or a flash "
    "purchase token is missing or invalid (`forbidden`, `account_blocked`, "
    "`flash_token_required`, `flash_token_invalid`)",
    404: "Not found, or not the caller's (`not_found`, `unknown_sku`)",
    409: "Conflict with the current state (`invalid_transition`, `out_of_stock`, "
    "`idempotency_key_reused`, `sold_out`, `email_taken`, …)",
    413: "Body too large (`payload_too_large`)",
    415: "Unsupported body type (`unsupported_media_type`)",
    422: "Invalid input (`validation_error`); for a malformed request `details.errors` "
    "lists each failure as `{loc, msg, type}`",
    429: "Rate limited (`rate_limited`); retry after `Retry-After` seconds",
    503: "Unavailable (`unavailable`, `not_ready`): draining, or a store or actor fault; "
    "retry (with the same `Idempotency-Key`, where there is one)",
}

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_CATALOG_WRITE = {409}
_UPLOAD = {409, 413, 415}

# (method, path) -> statuses the rules above cannot know about
EXTRA_STATUSES: dict[tuple[str, str], set[int]] = {
    # accounts and sessions
    ("POST", "/auth/register"): {409, 429},
    ("POST", "/auth/login"): {401, 403, 429},
    ("POST", "/auth/refresh"): {401, 403},
    ("POST", "/me/password"): {429},
    ("POST", "/me/addresses"): {409},  # at most 20 per account
    ("PATCH", "/me/addresses/{address_id}"): {409},  # the default cannot be unset
    ("PUT", "/me/avatar"): {413, 415},
    ("POST", "/admin/users/{user_id}/block"): {409},
    ("POST", "/admin/users/{user_id}/unblock"): {409},
    # catalog administration
    ("POST", "/admin/categories"): {404, 409},
    ("PATCH", "/admin/categories/{category_id}"): _CATALOG_WRITE,
    ("DELETE", "/admin/categories/{category_id}"): _CATALOG_WRITE,
    ("POST", "/admin/brands"): _CATALOG_WRITE,
    ("PATCH", "/admin/brands/{brand_id}"): _CATALOG_WRITE,
    ("DELETE", "/admin/brands/{brand_id}"): _CATALOG_WRITE,
    ("POST", "/admin/products"): {404, 409},
    ("PATCH", "/admin/products/{product_id}"): _CATALOG_WRITE,
    ("DELETE", "/admin/products/{product_id}"): _CATALOG_WRITE,
    ("POST", "/admin/products/{product_id}/publish"): _CATALOG_WRITE,
    ("POST", "/admin/products/{product_id}/unpublish"): _CATALOG_WRITE,
    ("POST", "/admin/products/{product_id}/skus"): _CATALOG_WRITE,
    ("PATCH", "/admin/skus/{sku_id}"): _CATALOG_WRITE,
    ("POST", "/admin/media/images"): _UPLOAD | {422},
    ("POST", "/admin/products/{product_id}/images"): _UPLOAD,
    ("POST", "/admin/inventory/{sku_id}/adjust"): {409},
    # cart: public for guests, who need a valid cart token instead
    ("GET", "/cart"): {401, 403},
    ("DELETE", "/cart"): {401, 403},
    ("POST", "/cart/items"): {401, 403, 404, 409},
    ("PUT", "/cart/items/{sku_id}"): {401, 403, 409},
    ("DELETE", "/cart/items/{sku_id}"): {401, 403},
    ("POST", "/cart/merge"): {409},
    # orders and payment
    ("POST", "/orders"): {404, 409},
    ("POST", "/orders/{order_id}/cancel"): {409},
    ("POST", "/orders/{order_id}/confirm-receipt"): {409},
    ("POST", "/orders/{order_id}/pay"): {409},
    ("POST", "/admin/orders/{order_id}/ship"): {409},
    ("POST", "/admin/orders/{order_id}/complete"): {409},
    ("POST", "/admin/orders/{order_id}/refund"): {409},
    ("POST", "/payments/callback"): {400, 401, 404, 409, 413, 422, 429},
    # shipping: a duplicate method code; a shipment of more than remains, of an order not
    # paid, or under another order's tracking number; the carrier's signed callback
    ("POST", "/admin/shipping-methods"): {409},
    ("PATCH", "/admin/shipping-methods/{method_id}"): {409},
    ("POST", "/admin/orders/{order_id}/shipments"): {409},
    ("POST", "/carrier/callback"): {400, 401, 404, 413, 422, 429},
    # money back: the provider's signed refund callback; a refund larger than what is left;
    # a return of more than was bought, after the window, or a step from the wrong state
    ("POST", "/payments/refund-callback"): {400, 401, 404, 409, 413, 422, 429},
    ("POST", "/admin/orders/{order_id}/refunds"): {409},
    ("POST", "/admin/refunds/{refund_id}/retry"): {409},
    ("POST", "/orders/{order_id}/returns"): {409},
    ("POST", "/returns/{return_id}/tracking"): {409},
    ("POST", "/returns/photos"): {413, 415},
    ("GET", "/admin/returns"): {404},  # the order filter names no order
    ("POST", "/admin/returns/{return_id}/approve"): {409},
    ("POST", "/admin/returns/{return_id}/reject"): {409},
    ("POST", "/admin/returns/{return_id}/receive"): {409},
    ("POST", "/admin/returns/{return_id}/refund"): {409},
    # reviews: a second review of a line, or of an order not yet received
    ("POST", "/orders/{order_id}/items/{item_id}/review"): {409},
    ("POST", "/reviews"): {409},
    # flash sales
    ("POST", "/flash-sales/{sale_id}/purchase"): {409, 429},
    ("GET", "/flash-sales/{sale_id}/token"): {409},  # not started, or ended
    ("POST", "/admin/flash-sales"): {404, 409},
    ("POST", "/admin/flash-sales/{sale_id}/end"): {409},
    # coupons and promotions
    ("POST", "/coupon-campaigns/{campaign_id}/claim"): {409},
    ("POST", "/me/coupons/redeem"): {404, 409},
    ("POST", "/orders/quote"): {404, 409},
    ("POST", "/admin/coupon-campaigns"): {409},
    ("PATCH", "/admin/coupon-campaigns/{campaign_id}"): {409},
    # recommendations
    ("POST", "/me/views"): {404},
    # in RAYMALL_ENV=prod, only with the operations token (deployments.headers)
    ("GET", "/metrics"): {401},
}

# routes that read their body themselves, so FastAPI cannot describe it
_IMAGES = {
    t: {"schema": {"type": "string", "format": "binary"}}
    for t in ("image/png", "image/jpeg", "image/webp", "image/gif")
}
_IMAGE_BODY = {"required": True, "description": "the image's bytes", "content": _IMAGES}
RAW_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/admin/media/images"): _IMAGE_BODY,
    ("POST", "/admin/products/{product_id}/images"): _IMAGE_BODY,
    ("PUT", "/me/avatar"): _IMAGE_BODY,
    ("POST", "/payments/callback"): {
        "required": True,
        "description": "the provider's event, signed: `X-Signature` is the hex HMAC-SHA256 "
        "of `X-Timestamp + '.' + body`",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    ("POST", "/payments/refund-callback"): {
        "required": True,
        "description": "the provider's answer to a refund (`refund_id`, `amount_cents`, "
        "`status`), signed like the payment callback",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    ("POST", "/returns/photos"): _IMAGE_BODY,
    ("POST", "/carrier/callback"): {
        "required": True,
        "description": "the carrier's tracking event (`event_id`, `shipment_id`, `order_id`, "
        "`tracking_number`, `status`, `location`, `occurred_ms`), signed: `X-Signature` is "
        "the hex HMAC-SHA256 of `X-Timestamp + '.' + body` with the carrier secret",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
}


_JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}
_OBJECTS = {"type": "array", "items": {"type": "object"}}
_CURSOR = {"type": ["string", "integer", "null"]}
# a list: {"items": [...]}, with "next_cursor" when it pages by keys
_LIST = {
    "application/json": {
        "schema": {"type": "object", "required": ["items"], "properties": {"items": _OBJECTS}}
    }
}
_KEYSET = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {"items": _OBJECTS, "next_cursor": _CURSOR},
        }
    }
}
# a catalog page (raymall.catalog.listing.Page)
_PAGE = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["items", "total", "page", "size", "next_cursor"],
            "properties": {
                "items": _OBJECTS,
                "total": {"type": "integer", "minimum": 0},
                "page": {"type": ["integer", "null"]},
                "size": {"type": "integer", "minimum": 1},
                "next_cursor": {"type": ["string", "null"]},
            },
        }
    }
}
# success bodies that FastAPI cannot see (a route answering a Response or a file, or a
# plain dict whose shape the route's annotation does not say)
SUCCESS_CONTENT: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/products"): _PAGE,
    ("GET", "/products/search"): _PAGE,
    ("GET", "/admin/products"): _PAGE,
    ("GET", "/categories"): _LIST,
    ("GET", "/brands"): _LIST,
    ("GET", "/search"): _LIST,
    ("GET", "/me/addresses"): _LIST,
    ("GET", "/admin/users"): _LIST,
    ("GET", "/orders/{order_id}/history"): _LIST,
    ("GET", "/flash-sales/{sale_id}/purchases/me"): _LIST,
    ("GET", "/orders"): _KEYSET,
    ("GET", "/admin/orders"): _KEYSET,
    ("GET", "/me/notifications"): _KEYSET,
    ("GET", "/products/{product_id}/reviews"): _KEYSET,
    ("GET", "/admin/flash-sales"): _KEYSET,
    ("GET", "/coupon-campaigns"): _LIST,
    ("GET", "/shipping-methods"): _LIST,
    ("GET", "/admin/shipping-methods"): _LIST,
    ("GET", "/promotions"): _LIST,
    ("GET", "/me/coupons"): _LIST,
    ("GET", "/admin/coupon-campaigns"): _KEYSET,
    ("GET", "/admin/promotions"): _KEYSET,
    ("GET", "/products/{product_id}"): _JSON_OBJECT,
    ("GET", "/products/{product_id}/similar"): _JSON_OBJECT,
    ("GET", "/media/images/{name}"): _IMAGES,
    ("GET", "/metrics"): {"text/plain": {"schema": {"type": "string"}}},
}


def error_schemas() -> dict[str, Any]:
    """The one error body (``raymall.errors.error_body``) as an OpenAPI component."""
    failure = {
        "type": "object",
        "properties": {
            "loc": {"type": "array", "items": {"type": "string"}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
        "required": ["loc", "msg", "type"],
    }
    return {
        ERROR_SCHEMA: {
            "title": "Error",
            "description": "Every error answer of the API.",
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "code": {"type": "string", "description": "stable machine code"},
                        "message": {"type": "string"},
                        "request_id": {"type": "string", "description": "as in X-Request-ID"},
                        "trace_id": {
                            "type": "string",
                            "description": "the request's trace (present when it is traced)",
                        },
                        "details": {
                            "type": "object",
                            "description": "present only when there are details",
                            "properties": {"errors": {"type": "array", "items": failure}},
                            "additionalProperties": True,
                        },
                    },
                    "required": ["code", "message", "request_id"],
                    "additionalProperties": False,
                }
            },
            "required": ["error"],
            "additionalProperties": False,
        }
    }


def is_public(method: str, path: str) -> bool:
    return (method, path) in PUBLIC_ROUTES or ("*", path) in PUBLIC_ROUTES


def error_statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses of ``method path``, from its document ``operation`` (see the
    module docstring)."""
    statuses = {503}
    if not is_public(method, path):
        statuses |= {401, 403}
    params = operation.get("parameters", [])
    if any(p.get("in") == "path" for p in params):
        statuses.add(404)
    if params or operation.get("requestBody"):
        statuses.add(422)
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        statuses.add(400)  # a body FastAPI cannot parse at all (e.g. nested too deep)
    statuses |= EXTRA_STATUSES.get((method, path), set())
    return statuses


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every (method, path template, operation) of the document."""
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if method in _METHODS:
                yield method.upper(), path, op


def truthful(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (FastAPI's document of the app) with the one error body, every error
    status, the raw bodies and the bearer scheme; changed in place and returned."""
    ref = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    for method, path, op in operations(schema):
        raw = RAW_BODIES.get((method, path))
        if raw is not None and "requestBody" not in op:
            op["requestBody"] = raw
        responses = op.setdefault("responses", {})
        success = SUCCESS_CONTENT.get((method, path))
        if success is not None:
            ok = min(code for code in responses if code.startswith("2"))
            responses[ok]["content"] = success
        for status in sorted(error_statuses(method, path, op)):
            responses[str(status)] = {
                "description": STATUS_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": ref}},
            }
        if not is_public(method, path):
            op["security"] = [{BEARER: []}]
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in FASTAPI_ERROR_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(error_schemas())
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "the access token of POST /auth/login",
    }
    return schema


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json`` and ``/docs``) the truthful
    document, built once per app."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = truthful(base())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
