"""HTTP routes: refunds and returns (RMAs). Thin: parse, call ``AfterSalesService``
(``raymall.returns.service``), answer.

Customers (``orders:create`` to act, ``orders:read_own`` to read):
``POST /orders/{id}/returns`` (optional ``Idempotency-Key``) with
``{"lines": [{"order_item_id", "quantity"}], "reason", "note"?, "photos"?}`` (``reason``
one of ``raymall.returns.states.REASONS``; ``photos``: URLs from ``POST /returns/photos``)
answers 201 (a replay under the same key: 200 with ``Idempotent-Replayed``); 409
``order_not_returnable``, ``return_window_closed`` or ``return_quantity_exceeded``.
``GET /orders/{id}/returns``, ``GET /returns/{id}`` (with its history),
``POST /returns/{id}/tracking`` ``{"tracking_number"}`` (an approved return),
``GET /orders/{id}/refunds`` (the order's refunds and what is left).

Admins (``orders:read_all`` to read, ``orders:refund`` to act): ``GET /admin/returns``
(filters status, order_id, user_id; keyset pages), ``GET /admin/returns/{id}``,
``POST /admin/returns/{id}/approve`` | ``/reject`` | ``/receive`` (restocks the units and
refunds exactly what they paid) | ``/refund`` (ask again after a failed refund),
``POST /admin/orders/{id}/refunds`` (``Idempotency-Key``) with ``{"amount_cents",
"reason", "lines"?: [{"order_item_id", "amount_cents"}]}``: a partial refund through the
provider, 201 (200 replayed), 409 ``refund_exceeds_remaining`` past what is left;
``GET /admin/orders/{id}/refunds``, ``POST /admin/refunds/{id}/retry``.

``outcome: "fail"`` on refund bodies asks the simulated provider to decline the refund
(as ``POST /orders/{id}/pay`` does for payments). Ids are strings in bodies (64-bit).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from deployments.catalog_admin_routes import read_upload
from deployments.security import Principal, require
from deployments.services import services
from raymall.returns import states as rs
from raymall.returns.repo import ReturnFilters
from raymall.returns.service import AfterSalesService

router = APIRouter(tags=["returns"])
MAX_ID = 2**63 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
RefundId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")]
Cursor = Annotated[int | None, Query(alias="cursor", ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=100)]
IdemKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$"),
]
ItemId = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,18}$")]
Creator = Annotated[Principal, Depends(require("orders", "create"))]
Reader = Annotated[Principal, Depends(require("orders", "read_own"))]
AdminReader = Annotated[Principal, Depends(require("orders", "read_all"))]
Refunder = Annotated[Principal, Depends(require("orders", "refund"))]
Outcome = Literal["succeed", "fail"]
ReturnStatus = Annotated[str | None, Query(pattern="^(" + "|".join(rs.STATUSES) + ")$")]


class ReturnLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    order_item_id: ItemId
    quantity: int = Field(ge=1, le=1_000_000)


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=50)
    reason: Literal[rs.REASONS]  # type: ignore[valid-type]
    note: str = Field("", max_length=1000)
    photos: list[Annotated[str, Field(max_length=300)]] = Field(default_factory=list, max_length=6)


class TrackingIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    tracking_number: str = Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    note: str = Field("", max_length=200)


class RefundLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    order_item_id: ItemId
    amount_cents: int = Field(ge=1, le=MAX_ID)


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    amount_cents: int = Field(ge=1, le=MAX_ID)
    reason: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")
    lines: list[RefundLineIn] | None = Field(None, min_length=1, max_length=50)
    outcome: Outcome = "succeed"


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    outcome: Outcome = "succeed"


def _svc(request: Request) -> AfterSalesService:
    return services(request).aftersales


def _created(response: Response, view: dict[str, Any]) -> dict[str, Any]:
    if not view.pop("created", True):
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return view


# ---- customers ------------------------------------------------------------------------
@router.post("/orders/{order_id}/returns", status_code=201)
async def request_return(
    request: Request,
    response: Response,
    order_id: Id,
    body: ReturnIn,
    me: Creator,
    key: IdemKey = None,
) -> dict[str, Any]:
    view = await _svc(request).request_return(
        me.user_id,
        order_id,
        lines=[(int(line.order_item_id), line.quantity) for line in body.lines],
        reason=body.reason,
        note=body.note,
        photos=body.photos,
        idempotency_key=key,
    )
    return _created(response, view)


@router.get("/orders/{order_id}/returns")
async def order_returns(
    request: Request, order_id: Id, me: Reader, limit: Limit = 20, cursor: Cursor = None
) -> dict[str, Any]:
    filters = ReturnFilters(order_id=order_id, user_id=me.user_id)
    return await _svc(request).returns(filters, limit=limit, before_id=cursor)


@router.get("/orders/{order_id}/refunds")
async def order_refunds(request: Request, order_id: Id, me: Reader) -> dict[str, Any]:
    return await _svc(request).refunds(order_id, me.user_id)


@router.get("/returns/{return_id}")
async def my_return(request: Request, return_id: Id, me: Reader) -> dict[str, Any]:
    return await _svc(request).get_return(return_id, me.user_id)


@router.post("/returns/{return_id}/tracking")
async def ship_back(
    request: Request, return_id: Id, body: TrackingIn, me: Creator
) -> dict[str, Any]:
    return await _svc(request).move_return(
        return_id,
        rs.SHIPPED_BACK,
        role="user",
        actor_id=me.user_id,
        user_id=me.user_id,
        tracking=body.tracking_number,
    )


@router.post("/returns/photos", status_code=201)
async def upload_photo(request: Request, _: Creator) -> dict[str, Any]:
    """One photo for a return, as the raw body (image/png, image/jpeg, image/webp or
    image/gif); answers its URL for ``photos``."""
    media = services(request).catalog.media
    media.check_declared(request.headers.get("content-type"))
    data = await read_upload(request, media.max_bytes)
    stored: dict[str, Any] = await asyncio.to_thread(
        media.save, data, request.headers.get("content-type")
    )
    return stored


# ---- administration -------------------------------------------------------------------
@router.get("/admin/returns", tags=["admin"])
async def all_returns(
    request: Request,
    _: AdminReader,
    status: ReturnStatus = None,
    order_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    user_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    filters = ReturnFilters(status=status, order_id=order_id, user_id=user_id)
    return await _svc(request).returns(filters, limit=limit, before_id=cursor)


@router.get("/admin/returns/{return_id}", tags=["admin"])
async def any_return(request: Request, return_id: Id, _: AdminReader) -> dict[str, Any]:
    return await _svc(request).get_return(return_id, None)


async def _admin_move(
    request: Request, return_id: int, to: str, admin: Principal, body: NoteIn | None
) -> dict[str, Any]:
    return await _svc(request).move_return(
        return_id,
        to,
        role="admin",
        actor_id=admin.user_id,
        note=body.note if body is not None else "",
    )


@router.post("/admin/returns/{return_id}/approve", tags=["admin"])
async def approve(
    request: Request, return_id: Id, admin: Refunder, body: NoteIn | None = None
) -> dict[str, Any]:
    return await _admin_move(request, return_id, rs.APPROVED, admin, body)


@router.post("/admin/returns/{return_id}/reject", tags=["admin"])
async def reject(
    request: Request, return_id: Id, admin: Refunder, body: NoteIn | None = None
) -> dict[str, Any]:
    return await _admin_move(request, return_id, rs.REJECTED, admin, body)


@router.post("/admin/returns/{return_id}/receive", tags=["admin"])
async def receive(
    request: Request, return_id: Id, admin: Refunder, body: NoteIn | None = None
) -> dict[str, Any]:
    return await _admin_move(request, return_id, rs.RECEIVED, admin, body)


@router.post("/admin/returns/{return_id}/refund", tags=["admin"])
async def refund_return(
    request: Request, response: Response, return_id: Id, _: Refunder
) -> dict[str, Any]:
    return _created(response, await _svc(request).refund_return(return_id))


@router.post("/admin/orders/{order_id}/refunds", status_code=201, tags=["admin"])
async def partial_refund(
    request: Request,
    response: Response,
    order_id: Id,
    body: RefundIn,
    _: Refunder,
    key: IdemKey = None,
) -> dict[str, Any]:
    lines: dict[int, int] | None = None
    if body.lines is not None:
        lines = {}
        for line in body.lines:
            lines[int(line.order_item_id)] = (
                lines.get(int(line.order_item_id), 0) + line.amount_cents
            )
    view = await _svc(request).refund(
        order_id,
        amount_cents=body.amount_cents,
        lines=lines,
        reason=body.reason,
        idempotency_key=key,
        outcome=body.outcome,
    )
    return _created(response, view)


@router.get("/admin/orders/{order_id}/refunds", tags=["admin"])
async def any_order_refunds(request: Request, order_id: Id, _: AdminReader) -> dict[str, Any]:
    return await _svc(request).refunds(order_id, None)


@router.post("/admin/refunds/{refund_id}/retry", tags=["admin"])
async def retry_refund(
    request: Request,
    response: Response,
    refund_id: RefundId,
    _: Refunder,
    body: RetryIn | None = None,
) -> dict[str, Any]:
    outcome = body.outcome if body is not None else "succeed"
    return _created(response, await _svc(request).retry_refund(refund_id, outcome=outcome))
