"""HTTP routes: flash sales.

Public: ``GET /flash-sales/{id}`` (price, quantity, sold, remaining, status, times).
Users (``flash_sale:purchase``): ``POST /flash-sales/{id}/purchase`` (optional
``Idempotency-Key``; optional body ``{"quantity": n}``) answers 201 with the order id of
a ``pending_payment`` order at the flash price (``Idempotent-Replayed: true`` on a replay);
409 ``sale_not_started`` / ``sale_ended`` / ``sold_out`` / ``purchase_limit_exceeded``,
429 ``rate_limited`` with ``Retry-After``, 503 ``unavailable`` (retry with the same key).
``GET /flash-sales/{id}/purchases/me`` lists the caller's purchases and their orders.
A sale created with ``require_token`` sells only to a request carrying ``X-Flash-Token``,
a token from ``GET /flash-sales/{id}/token`` (same permission; 409 ``sale_not_started``
before the start): 403 ``flash_token_required`` / ``flash_token_invalid``, 409
``flash_token_used`` (``raymall.flash.tokens``).
Admins (``flash_sale:manage``): ``POST /admin/flash-sales``, ``GET /admin/flash-sales``,
``POST /admin/flash-sales/{id}/end``.

The plainest purchases (no body, no query) are answered below FastAPI by
``PurchaseShortcut``: the same token check, permission, service call and answers.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from deployments.edge import Scope, Send, Shortcut, send_json_body
from deployments.errors import domain_error_json, json_bytes
from deployments.security import (
    PUBLIC_ROUTES,
    Principal,
    client_ip,
    public,
    require,
    scope_client_ip,
)
from deployments.services import Services, services
from raymall.auth.service import AuthService
from raymall.faults import to_domain
from raymall.flash import tokens
from raymall.flash.service import FlashService

router = APIRouter(tags=["flash-sales"])
public("GET", "/flash-sales/{sale_id}")
PURCHASE_PATH = "/flash-sales/{sale_id}/purchase"
PURCHASE_PERMISSION = ("flash_sale", "purchase")

MAX_ID = 2**63 - 1
SaleId = Annotated[int, Path(ge=1, le=MAX_ID)]
IdemKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$"),
]
FlashTokenHeader = Annotated[str | None, Header(alias=tokens.HEADER)]  # checked by the service
Buyer = Annotated[Principal, Depends(require(*PURCHASE_PERMISSION))]
Manager = Annotated[Principal, Depends(require("flash_sale", "manage"))]


class SaleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    sku_id: int = Field(ge=1, le=MAX_ID)
    price_cents: int = Field(ge=1, le=10**12)
    quantity: int = Field(ge=1, le=10**9)
    starts_at_ms: int = Field(ge=0, le=MAX_ID)
    ends_at_ms: int = Field(ge=1, le=MAX_ID)
    per_user_limit: int = Field(1, ge=1, le=10**6)
    title: str = Field("", max_length=200)
    # how long a buyer has to pay; default RAYMALL_FLASH_ORDER_TIMEOUT_S
    payment_timeout_s: int | None = Field(None, ge=1, le=7 * 86_400)
    # purchases need a token from GET /flash-sales/{id}/token (X-Flash-Token)
    require_token: bool = False


class PurchaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    quantity: int = Field(1, ge=1, le=10**6)


def _svc(request: Request) -> FlashService:
    return services(request).flash


@router.get("/flash-sales/{sale_id}")
async def get_sale(request: Request, sale_id: SaleId) -> dict[str, Any]:
    return await _svc(request).view(sale_id)


@router.post(PURCHASE_PATH, status_code=201)
async def purchase(
    request: Request,
    response: Response,
    sale_id: SaleId,
    me: Buyer,
    key: IdemKey = None,
    flash_token: FlashTokenHeader = None,
    body: PurchaseIn | None = None,
) -> dict[str, Any]:
    qty = body.quantity if body is not None else 1
    ip = client_ip(request)
    result = await _svc(request).purchase(me.user_id, sale_id, key, ip, qty, flash_token)
    if result["replayed"]:
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.get("/flash-sales/{sale_id}/token")
async def purchase_token(
    request: Request, response: Response, sale_id: SaleId, me: Buyer
) -> dict[str, Any]:
    """A short-lived, single-use purchase token for the caller, once the sale has started."""
    response.headers["Cache-Control"] = "no-store"
    return await _svc(request).mint_token(sale_id, me.user_id)


@router.get("/flash-sales/{sale_id}/purchases/me")
async def my_purchases(request: Request, sale_id: SaleId, me: Buyer) -> dict[str, Any]:
    return await _svc(request).mine(sale_id, me.user_id)


@router.post("/admin/flash-sales", status_code=201, tags=["admin"])
async def create_sale(request: Request, body: SaleIn, _: Manager) -> dict[str, Any]:
    return await _svc(request).create(
        sku_id=body.sku_id,
        title=body.title,
        price_cents=body.price_cents,
        quantity=body.quantity,
        per_user_limit=body.per_user_limit,
        starts_ms=body.starts_at_ms,
        ends_ms=body.ends_at_ms,
        payment_timeout_s=body.payment_timeout_s,
        require_token=body.require_token,
    )


@router.get("/admin/flash-sales", tags=["admin"])
async def list_sales(
    request: Request,
    _: Manager,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> dict[str, Any]:
    return await _svc(request).list(limit, cursor)


@router.post("/admin/flash-sales/{sale_id}/end", tags=["admin"])
async def end_sale(request: Request, sale_id: SaleId, _: Manager) -> dict[str, Any]:
    return await _svc(request).end(sale_id)


_PURCHASE = re.compile(r"/flash-sales/([1-9][0-9]{0,18})/purchase")
_IDEMPOTENCY_KEY = re.compile(rb"[\x21-\x7e]{1,100}")
_FLASH_TOKEN = re.compile(rb"[\x21-\x7e]{1,%d}" % tokens.MAX_LEN)


def plain_purchase_args(scope: Scope) -> tuple[int, str, str | None, str | None] | None:
    """(sale_id, bearer token, Idempotency-Key or None, X-Flash-Token or None) of a
    purchase in its plainest valid form: no query, no body, one ``Authorization: Bearer``
    header, at most one valid ``Idempotency-Key`` and at most one ``X-Flash-Token`` of
    printable ASCII. None for anything else, which the app then rules on."""
    if scope["method"] != "POST" or scope.get("query_string"):
        return None
    found = _PURCHASE.fullmatch(scope["path"])
    if found is None:
        return None
    sale_id = int(found.group(1))
    if sale_id > MAX_ID:
        return None
    token: str | None = None
    key: str | None = None
    flash_token: str | None = None
    seen_auth = seen_key = False
    for name, value in scope["headers"]:
        if name == b"authorization":
            if seen_auth:
                return None
            seen_auth = True
            scheme, _, rest = value.partition(b" ")
            if scheme.lower() != b"bearer" or not rest.strip():
                return None
            token = rest.strip().decode("latin-1")
        elif name == b"idempotency-key":
            if seen_key or not _IDEMPOTENCY_KEY.fullmatch(value):
                return None
            seen_key = True
            key = value.decode("ascii")
        elif name == b"x-flash-token":
            if flash_token is not None or not _FLASH_TOKEN.fullmatch(value):
                return None
            flash_token = value.decode("ascii")
        elif name == b"content-length":
            if value.strip() != b"0":
                return None
        elif name == b"transfer-encoding":
            return None
    if token is None:
        return None
    return sale_id, token, key, flash_token


class PurchaseShortcut:
    """``POST /flash-sales/{id}/purchase`` below FastAPI (``deployments.edge.Shortcut``)
    for requests ``plain_purchase_args`` accepts: the access token is verified and the
    permission checked as the app's dependencies do (a request that fails either is
    declined, and the app answers it), then the same ``FlashService.purchase`` call as
    ``purchase``, answered with the same status, body and headers, errors included (a
    purchase is not run twice)."""

    path = PURCHASE_PATH

    def __init__(self, auth: AuthService, svc: FlashService, settings: Any) -> None:
        if ("POST", PURCHASE_PATH) in PUBLIC_ROUTES or ("*", PURCHASE_PATH) in PUBLIC_ROUTES:
            raise RuntimeError(f"{PURCHASE_PATH} must not be public")
        self.auth = auth
        self.svc = svc
        self.settings = settings

    async def __call__(self, scope: Scope, send: Send) -> bool:
        args = plain_purchase_args(scope)
        if args is None:
            return False
        sale_id, token, key, flash_token = args
        try:
            claims = await self.auth.authenticate(token)
            if not await self.auth.allowed(claims.role, *PURCHASE_PERMISSION):
                return False
        except Exception:
            return False
        ip = scope_client_ip(scope, self.settings)
        try:
            result = await self.svc.purchase(claims.user_id, sale_id, key, ip, 1, flash_token)
        except Exception as exc:
            mapped = to_domain(exc)
            if mapped is None:
                raise  # the edge logs it and answers 500 in the one shape
            rid = str(scope.get("state", {}).get("request_id", "-"))
            status, body, headers = domain_error_json(mapped, rid, PURCHASE_PATH)
            extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            await send_json_body(send, status, body, extra)
            return True
        extra = [(b"idempotent-replayed", b"true")] if result["replayed"] else []
        await send_json_body(send, 201, json_bytes(result), extra)
        return True


def shortcuts(svc: Services) -> list[Shortcut]:
    """This module's shortcuts for ``deployments.edge.Edge``."""
    return [PurchaseShortcut(svc.auth, svc.flash, svc.settings)]
