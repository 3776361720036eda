"""HTTP routes: orders for their owners, order administration, and notifications.

Users (``orders:create`` / ``orders:read_own``): ``POST /orders`` (optional
``Idempotency-Key``; optional ``coupon_id`` / ``coupon_ids``: the coupons to use, locked
with the order, 409 ``coupon_*`` if one does not apply; optional ``shipping_method_id``:
its fee, by the address's region, is the order's ``shipping_cents`` and part of
``total_cents``, 404 ``shipping_method_not_found`` if unknown or inactive),
``POST /orders/quote`` (the same body: lines, promotions, the named coupons or else the
best combination of the caller's, each line's discount and the saving, the shipping fee;
nothing reserved), ``GET /orders``,
``GET /orders/{id}`` (with its ``shipments`` and their tracking ``events``),
``GET /orders/{id}/history``,
``POST /orders/{id}/cancel`` (a paid order that has not shipped is refunded in full
through the payment provider, its stock and coupons come back), ``POST
/orders/{id}/confirm-receipt``, and ``GET /me/notifications``. Another user's order is 404.

Admins: ``GET /admin/orders`` (``orders:read_all``; filters status, user_id, from_ms,
to_ms; keyset pages), ``GET /admin/orders/{id}``, ``POST /admin/orders/{id}/ship`` and
``/complete`` (``orders:ship``), ``POST /admin/orders/{id}/refund`` (``orders:refund``;
all that is left goes back through the provider, the units back to stock; partial
refunds: deployments.return_routes).
``/ship`` ships every unit that remains in one shipment: with an optional body
``{carrier, tracking_number}`` (as ``POST /admin/orders/{id}/shipments`` without lines,
deployments.shipping_routes), else as carrier ``manual`` with tracking number
``order-{id}``, which no carrier tracks (the customer confirms receipt).
Order ids are strings in bodies (64-bit) and integers in paths.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from deployments.security import Principal, current_user, require
from deployments.services import services
from deployments.shipping_routes import ShipAllIn
from raymall.domain import order_state as st
from raymall.orders.queries import OrderFilters
from raymall.orders.service import OrderRequest, OrderService

router = APIRouter(tags=["orders"])
MAX_ID = 2**63 - 1
OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]
Cursor = Annotated[int | None, Query(alias="cursor", ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=100)]
Status = Annotated[str | None, Query(pattern="^(" + "|".join(st.STATUSES) + ")$")]
IdemKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$"),
]
Creator = Annotated[Principal, Depends(require("orders", "create"))]
Reader = Annotated[Principal, Depends(require("orders", "read_own"))]
AdminReader = Annotated[Principal, Depends(require("orders", "read_all"))]
Shipper = Annotated[Principal, Depends(require("orders", "ship"))]
Refunder = Annotated[Principal, Depends(require("orders", "refund"))]
CouponId = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,18}$")]  # 64-bit ids travel as strings


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    sku_id: int = Field(ge=1, le=MAX_ID)
    quantity: int = Field(ge=1, le=1_000_000)


class OrderIn(BaseModel):
    """Either ``items``, or cart lines: ``cart_sku_ids`` selects lines of the cart (absent:
    the whole cart). Prices are never accepted: the server computes them."""

    model_config = ConfigDict(extra="forbid", strict=True)
    items: list[LineIn] | None = Field(None, min_length=1, max_length=500)
    cart_sku_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = Field(
        None, min_length=1, max_length=500
    )
    address_id: int | None = Field(None, ge=1, le=MAX_ID)
    coupon_id: CouponId | None = None
    coupon_ids: list[CouponId] | None = Field(None, min_length=1, max_length=5)
    shipping_method_id: int | None = Field(None, ge=1, le=MAX_ID)

    @model_validator(mode="after")
    def _one_source(self) -> OrderIn:
        if self.items is not None and self.cart_sku_ids is not None:
            raise ValueError("send either items or cart_sku_ids, not both")
        return self

    def coupons(self) -> tuple[int, ...]:
        named = [*(self.coupon_ids or ()), *(() if self.coupon_id is None else (self.coupon_id,))]
        return tuple(sorted({int(c) for c in named}))

    def request(self) -> OrderRequest:
        return OrderRequest(
            items=(
                tuple((line.sku_id, line.quantity) for line in self.items)
                if self.items is not None
                else None
            ),
            cart_sku_ids=tuple(self.cart_sku_ids or ()),
            address_id=self.address_id,
            coupon_ids=self.coupons(),
            shipping_method_id=self.shipping_method_id,
        )


def _svc(request: Request) -> OrderService:
    return services(request).orders


# ---- users ----------------------------------------------------------------------------
@router.post("/orders", status_code=201)
async def place_order(
    request: Request, response: Response, body: OrderIn, me: Creator, key: IdemKey = None
) -> dict[str, Any]:
    order, created = await _svc(request).place(me.user_id, body.request(), key)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return order


@router.post("/orders/quote")
async def quote_order(request: Request, body: OrderIn, me: Creator) -> dict[str, Any]:
    return await _svc(request).quote(me.user_id, body.request())


@router.get("/orders")
async def my_orders(
    request: Request, me: Reader, status: Status = None, limit: Limit = 20, cursor: Cursor = None
) -> dict[str, Any]:
    filters = OrderFilters(user_id=me.user_id, status=status)
    return await _svc(request).orders(filters, limit=limit, before_id=cursor, with_items=True)


@router.get("/orders/{order_id}")
async def my_order(request: Request, order_id: OrderId, me: Reader) -> dict[str, Any]:
    return await _svc(request).get(me.user_id, order_id)


@router.get("/orders/{order_id}/history")
async def my_order_history(request: Request, order_id: OrderId, me: Reader) -> dict[str, Any]:
    return {"items": await _svc(request).history(me.user_id, order_id)}


@router.post("/orders/{order_id}/cancel")
async def cancel_order(request: Request, order_id: OrderId, me: Creator) -> dict[str, Any]:
    view = await _svc(request).cancel(order_id, user_id=me.user_id)
    await services(request).aftersales.send_pending(order_id)  # a paid order's refund
    return view


@router.post("/orders/{order_id}/confirm-receipt")
async def confirm_receipt(request: Request, order_id: OrderId, me: Creator) -> dict[str, Any]:
    return await _svc(request).move(
        order_id, st.COMPLETED, role="user", actor_id=me.user_id, user_id=me.user_id
    )


@router.get("/me/notifications", tags=["profile"])
async def my_notifications(
    request: Request,
    me: Annotated[Principal, Depends(current_user)],
    limit: Limit = 20,
    cursor: Cursor = None,
) -> dict[str, Any]:
    return await _svc(request).notifications(me.user_id, limit=limit, before_id=cursor)


# ---- administration -------------------------------------------------------------------
@router.get("/admin/orders", tags=["admin"])
async def all_orders(
    request: Request,
    _: AdminReader,
    status: Status = None,
    user_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    from_ms: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    to_ms: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    filters = OrderFilters(user_id=user_id, status=status, from_ms=from_ms, to_ms=to_ms)
    return await _svc(request).orders(filters, limit=limit, before_id=cursor)


@router.get("/admin/orders/{order_id}", tags=["admin"])
async def any_order(request: Request, order_id: OrderId, _: AdminReader) -> dict[str, Any]:
    svc = _svc(request)
    view = await svc.get(None, order_id)
    view["history"] = await svc.history(None, order_id)
    return view


@router.post("/admin/orders/{order_id}/ship", tags=["admin"])
async def ship(
    request: Request, order_id: OrderId, admin: Shipper, body: ShipAllIn | None = None
) -> dict[str, Any]:
    if body is not None and body.carrier is not None and body.tracking_number is not None:
        answer = await services(request).shipping.ship(
            order_id,
            carrier=body.carrier,
            tracking_number=body.tracking_number,
            lines=None,
            admin_id=admin.user_id,
        )
        return dict(answer["order"])
    return await _svc(request).move(order_id, st.SHIPPED, role="admin", actor_id=admin.user_id)


@router.post("/admin/orders/{order_id}/complete", tags=["admin"])
async def complete(request: Request, order_id: OrderId, admin: Shipper) -> dict[str, Any]:
    return await _svc(request).move(order_id, st.COMPLETED, role="admin", actor_id=admin.user_id)


@router.post("/admin/orders/{order_id}/refund", tags=["admin"])
async def refund(request: Request, order_id: OrderId, admin: Refunder) -> dict[str, Any]:
    view = await _svc(request).move(order_id, st.REFUNDED, role="admin", actor_id=admin.user_id)
    await services(request).aftersales.send_pending(order_id)
    return view
