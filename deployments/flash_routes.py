"""HTTP routes: flash sales.

Public: ``GET /flash-sales/{id}`` (price, quantity, sold, remaining, status, times).
Users (``flash_sale:purchase``): ``POST /flash-sales/{id}/purchase`` (optional
``Idempotency-Key``; optional body ``{"quantity": n}``) answers 201 with the order id of
a ``pending_payment`` order at the flash price (``Idempotent-Replayed: true`` on a replay);
409 ``sale_not_started`` / ``sale_ended`` / ``sold_out`` / ``purchase_limit_exceeded``,
429 ``rate_limited`` with ``Retry-After``, 503 ``unavailable`` (retry with the same key).
``GET /flash-sales/{id}/purchases/me`` lists the caller's purchases and their orders.
Admins (``flash_sale:manage``): ``POST /admin/flash-sales``, ``GET /admin/flash-sales``,
``POST /admin/flash-sales/{id}/end``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from actors.inventory_client import InventoryClient
from deployments.context import AppContext, ctx
from deployments.security import Principal, client_ip, public, require
from raymall.flash.service import FlashService

router = APIRouter(tags=["flash-sales"])
public("GET", "/flash-sales/{sale_id}")

MAX_ID = 2**63 - 1
SaleId = Annotated[int, Path(ge=1, le=MAX_ID)]
IdemKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$"),
]
Buyer = Annotated[Principal, Depends(require("flash_sale", "purchase"))]
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


class PurchaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    quantity: int = Field(1, ge=1, le=10**6)


async def startup(app_ctx: AppContext) -> None:
    inventory = app_ctx.services.get("inventory") or InventoryClient(app_ctx.settings)
    service = FlashService(app_ctx.settings, app_ctx.sessions, app_ctx.redis, inventory)
    app_ctx.services["flash"] = service

    app_ctx.services["flash_warmup"] = asyncio.get_running_loop().create_task(service.keep_warm())


def _svc(request: Request) -> FlashService:
    return ctx(request).service("flash")  # type: ignore[no-any-return]


@router.get("/flash-sales/{sale_id}")
async def get_sale(request: Request, sale_id: SaleId) -> dict[str, Any]:
    return await _svc(request).view(sale_id)


@router.post("/flash-sales/{sale_id}/purchase", status_code=201)
async def purchase(
    request: Request,
    response: Response,
    sale_id: SaleId,
    me: Buyer,
    key: IdemKey = None,
    body: PurchaseIn | None = None,
) -> dict[str, Any]:
    qty = body.quantity if body is not None else 1
    result = await _svc(request).purchase(me.user_id, sale_id, key, client_ip(request), qty)
    if result["replayed"]:
        response.headers["Idempotent-Replayed"] = "true"
    return result


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
