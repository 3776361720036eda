"""HTTP routes: paying an order, and the payment provider's signed callback.

- ``POST /orders/{id}/pay`` (``orders:create``), body optional
  ``{"outcome": "succeed" | "fail"}`` (``fail`` simulates a declined card): creates the
  payment for the order's amount (or reuses the pending one), hands it to the provider
  deployment and answers 202; the result arrives by callback.
- ``POST /payments/callback``: public, authenticated by its HMAC signature
  (``X-Signature`` over ``X-Timestamp + "." + body``). A bad or stale signature is 401
  ``bad_signature``, a wrong amount 400 ``amount_mismatch``; both leave a
  ``payment_audit`` row and change nothing. Duplicates answer 200 with
  ``"duplicate": true``.
- ``POST /payments/refund-callback``: the provider's answer to a refund, signed and
  checked the same way (``raymall.orders.callbacks``); it settles the refund
  (``succeeded`` or ``failed``) once, duplicates answer 200 with ``"duplicate": true``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict

from deployments.security import Principal, client_ip, public, require
from deployments.services import services
from raymall.errors import PayloadTooLarge
from raymall.orders.service import OrderService
from raymall.orders.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER

router = APIRouter(tags=["payments"])
public("POST", "/payments/callback")
public("POST", "/payments/refund-callback")
MAX_CALLBACK_BYTES = 16 * 1024
OrderId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class PayIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    outcome: Literal["succeed", "fail"] = "succeed"


def _svc(request: Request) -> OrderService:
    return services(request).orders


@router.post("/orders/{order_id}/pay", status_code=202)
async def pay_order(
    request: Request,
    order_id: OrderId,
    me: Annotated[Principal, Depends(require("orders", "create"))],
    body: PayIn | None = None,
) -> dict[str, Any]:
    outcome = body.outcome if body is not None else "succeed"
    return await _svc(request).pay(me.user_id, order_id, outcome)


async def _body(request: Request) -> bytes:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_CALLBACK_BYTES:
            raise PayloadTooLarge(f"a callback is at most {MAX_CALLBACK_BYTES} bytes")
    return raw


@router.post("/payments/refund-callback")
async def refund_callback(request: Request) -> dict[str, Any]:
    return await _svc(request).callbacks.handle_refund(
        await _body(request),
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        client_ip(request) or "unknown",
    )


@router.post("/payments/callback")
async def payment_callback(request: Request) -> dict[str, Any]:
    raw = await _body(request)
    return await _svc(request).callback(
        raw,
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        client_ip(request) or "unknown",
    )
