"""HTTP routes: shipping methods, shipments and the carrier's tracking callback.

- ``GET /shipping-methods``: public, the active methods (fee, free-over threshold, region
  fees). An order or a quote names one with ``shipping_method_id`` (deployments.order_routes).
- ``GET|POST /admin/shipping-methods``, ``GET|PATCH|DELETE /admin/shipping-methods/{id}``
  (``shipping:manage``): administer them; a duplicate ``code`` is 409 ``already_exists``.
- ``POST /admin/orders/{id}/shipments`` (``orders:ship``): ``{carrier, tracking_number,
  lines?: [{order_item_id, quantity}]}`` (no lines: every unit that remains) ships a paid
  or partially shipped order; 201 with ``{shipment, order, created}``, 200 when the same
  carrier and tracking number were sent for this order before (nothing happens twice).
  A shipment of the simulated carrier (``RAYMALL_CARRIER_NAME``) gets its tracking events.
- ``POST /carrier/callback``: public, authenticated by its HMAC signature (``X-Signature``
  over ``X-Timestamp + "." + body`` with ``RAYMALL_CARRIER_SECRET``). Bad or stale
  signature 401 ``bad_signature``, unknown shipment 404 ``shipment_not_found``, another
  order's or tracking number's 400 ``carrier_event_mismatch``, malformed 422: each is
  audited (``carrier_audit``) and changes nothing. A duplicate event id answers 200 with
  ``"duplicate": true``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from deployments.security import Principal, client_ip, public, require
from deployments.services import services
from raymall.errors import PayloadTooLarge, ValidationFailed
from raymall.orders.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from raymall.shipping.fees import MAX_FEE_CENTS
from raymall.shipping.service import ShippingService

router = APIRouter(tags=["shipping"])
public("GET", "/shipping-methods")
public("POST", "/carrier/callback")
MAX_ID = 2**63 - 1
MAX_CALLBACK_BYTES = 16 * 1024
OrderId = Annotated[int, Path(ge=1, le=MAX_ID)]
MethodId = Annotated[int, Path(ge=1, le=MAX_ID)]
Manager = Annotated[Principal, Depends(require("shipping", "manage"))]
Shipper = Annotated[Principal, Depends(require("orders", "ship"))]
Cents = Annotated[int, Field(ge=0, le=MAX_FEE_CENTS)]
RegionKey = Annotated[str, Field(pattern=r"^[A-Za-z]{2}(-[A-Za-z0-9]{1,3})?$")]
Code = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")]
Carrier = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")]
Tracking = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class MethodIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    code: Code
    name: str = Field(min_length=1, max_length=64)
    fee_cents: Cents
    free_over_cents: Cents | None = None
    region_fees: dict[RegionKey, Cents] = Field(default_factory=dict, max_length=300)
    active: bool = True


class MethodPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    code: Code | None = None
    name: str | None = Field(None, min_length=1, max_length=64)
    fee_cents: Cents | None = None
    free_over_cents: Cents | None = None
    region_fees: dict[RegionKey, Cents] | None = Field(None, max_length=300)
    active: bool | None = None

    def changes(self) -> dict[str, Any]:
        """The fields sent (``free_over_cents: null`` removes the threshold)."""
        data = self.model_dump(exclude_unset=True)
        for name in ("code", "name", "fee_cents", "region_fees", "active"):
            if name in data and data[name] is None:
                raise ValidationFailed(f"{name} cannot be null", details={"field": name})
        return data


class ShipLine(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    order_item_id: int = Field(ge=1, le=MAX_ID)
    quantity: int = Field(ge=1, le=1_000_000)


class ShipmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    carrier: Carrier
    tracking_number: Tracking
    lines: list[ShipLine] | None = Field(None, min_length=1, max_length=500)

    def line_pairs(self) -> list[tuple[int, int]] | None:
        if self.lines is None:
            return None
        return [(ln.order_item_id, ln.quantity) for ln in self.lines]


class ShipAllIn(BaseModel):
    """``POST /admin/orders/{id}/ship``: optional carrier and tracking number (both or
    neither); without them the order ships as one ``manual`` shipment."""

    model_config = ConfigDict(extra="forbid", strict=True)
    carrier: Carrier | None = None
    tracking_number: Tracking | None = None

    @model_validator(mode="after")
    def _both(self) -> ShipAllIn:
        if (self.carrier is None) != (self.tracking_number is None):
            raise ValueError("send carrier and tracking_number together, or neither")
        return self


def _svc(request: Request) -> ShippingService:
    return services(request).shipping


# ---- methods ------------------------------------------------------------------------
@router.get("/shipping-methods")
async def shipping_methods(request: Request) -> dict[str, Any]:
    return {"items": await _svc(request).methods.list()}


@router.get("/admin/shipping-methods", tags=["admin"])
async def all_shipping_methods(request: Request, _: Manager) -> dict[str, Any]:
    return {"items": await _svc(request).methods.list(include_inactive=True)}


@router.post("/admin/shipping-methods", tags=["admin"], status_code=201)
async def create_shipping_method(request: Request, body: MethodIn, _: Manager) -> dict[str, Any]:
    return await _svc(request).methods.create(body.model_dump())


@router.get("/admin/shipping-methods/{method_id}", tags=["admin"])
async def shipping_method(request: Request, method_id: MethodId, _: Manager) -> dict[str, Any]:
    return await _svc(request).methods.get(method_id)


@router.patch("/admin/shipping-methods/{method_id}", tags=["admin"])
async def update_shipping_method(
    request: Request, method_id: MethodId, body: MethodPatch, _: Manager
) -> dict[str, Any]:
    return await _svc(request).methods.update(method_id, body.changes())


@router.delete("/admin/shipping-methods/{method_id}", tags=["admin"], status_code=204)
async def delete_shipping_method(request: Request, method_id: MethodId, _: Manager) -> Response:
    await _svc(request).methods.delete(method_id)
    return Response(status_code=204)


# ---- shipments ----------------------------------------------------------------------
@router.post("/admin/orders/{order_id}/shipments", tags=["admin"], status_code=201)
async def create_shipment(
    request: Request, response: Response, order_id: OrderId, body: ShipmentIn, admin: Shipper
) -> dict[str, Any]:
    answer = await _svc(request).ship(
        order_id,
        carrier=body.carrier,
        tracking_number=body.tracking_number,
        lines=body.line_pairs(),
        admin_id=admin.user_id,
    )
    if not answer["created"]:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return answer


# ---- the carrier's callback ---------------------------------------------------------
@router.post("/carrier/callback")
async def carrier_callback(request: Request) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_CALLBACK_BYTES:
            raise PayloadTooLarge(f"a callback is at most {MAX_CALLBACK_BYTES} bytes")
    return await _svc(request).callback(
        raw,
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        client_ip(request) or "unknown",
    )
