"""The carrier's tracking callback, as a replica receives it.

Guarantees:

- an event is believed only after its signature (HMAC-SHA256 over ``timestamp + "." +
  body`` with ``RAYMALL_CARRIER_SECRET``, ``raymall.orders.signing``) and its timestamp
  window check out, and only when it names a known shipment together with that shipment's
  own order and tracking number. Anything else is refused (4xx in the one error shape:
  ``bad_signature``, ``validation_error``, ``shipment_not_found``,
  ``carrier_event_mismatch``) and written to ``carrier_audit``; it changes nothing else;
- refusals of callbacks that are not signed and fresh are rate-limited before they are
  audited, as for payment callbacks (``raymall.orders.callbacks``, same limits);
- a believed event is applied by the OrderShard that owns the order, once per
  ``event_id`` (a duplicate answers 200 with ``"duplicate": true``), and never moves a
  shipment backwards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from models import CarrierAudit
from raymall import jsonin
from raymall.errors import (
    BadSignature,
    CarrierEventMismatch,
    DomainError,
    RateLimited,
    ShipmentNotFound,
    ValidationFailed,
)
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.orders import repository as repo
from raymall.orders.signing import verify
from raymall.ratelimit import Limit, RateLimiter
from raymall.settings import Settings
from raymall.shipping import shipments as sh
from raymall.shipping import tracking as tr
from raymall.shipping.ports import FulfilmentShards

log = get_logger("shipping.callbacks")
SessionRunner = Callable[[Callable[[Session], Any]], Awaitable[Any]]
MAX_EVENT_ID = 64


def parse(raw: bytes) -> dict[str, Any]:
    """The event's fields, or ValueError/KeyError/TypeError when malformed."""
    body = jsonin.loads(raw)
    if not isinstance(body, dict):
        raise TypeError("not an object")
    event = {
        "event_id": str(body["event_id"]),
        "shipment_id": int(str(body["shipment_id"])),
        "order_id": str(body["order_id"]),
        "tracking_number": str(body["tracking_number"]),
        "status": str(body["status"]),
        "location": str(body.get("location") or "")[:64],
        "occurred_ms": body["occurred_ms"],
    }
    if not 0 < len(event["event_id"]) <= MAX_EVENT_ID or event["status"] not in tr.CARRIER_STEPS:
        raise ValueError("bad event id or status")
    if type(event["occurred_ms"]) is not int or event["occurred_ms"] < 0:
        raise ValueError("bad occurred_ms")
    return event


class CarrierCallbacks:
    def __init__(
        self,
        settings: Settings,
        shards: FulfilmentShards,
        *,
        read: SessionRunner,
        tx: SessionRunner,
        limiter: RateLimiter | None,
    ) -> None:
        self.settings = settings
        self.shards = shards
        self._read = read
        self._tx = tx
        self.limiter = limiter

    async def handle(
        self, raw: bytes, timestamp: str | None, signature: str | None, remote: str
    ) -> dict[str, Any]:
        s = self.settings
        reason = verify(
            s.secret("carrier_secret"),
            timestamp,
            signature,
            raw,
            now_s=now_ms() / 1000,
            window_s=s.carrier_callback_window_s,
        )
        if reason is not None:
            await self._limit_refusals(remote)
            await self._audit(raw, reason, remote)
            raise BadSignature(f"carrier callback refused: {reason.replace('_', ' ')}")
        try:
            event = parse(raw)
        except (ValueError, KeyError, TypeError) as exc:
            await self._audit(raw, "malformed", remote)
            raise ValidationFailed("malformed carrier callback") from exc

        shipment_id = event["shipment_id"]

        def owner(session: Session) -> tuple[int, int, int, str, str]:
            shipment = sh.get_shipment(session, shipment_id)
            if shipment is None:
                raise ShipmentNotFound(f"shipment {shipment_id} not found")
            order = repo.get_order(session, int(shipment.order_id))
            assert order is not None
            return (
                int(order.shard),
                int(order.user_id),
                int(order.id),
                shipment.tracking_number,
                shipment.carrier,
            )

        try:
            shard, user_id, order_id, number, carrier = await self._read(owner)
            if event["order_id"] != str(order_id) or event["tracking_number"] != number:
                raise CarrierEventMismatch(
                    "the callback names another order or tracking number than its shipment"
                )
        except (ShipmentNotFound, CarrierEventMismatch) as exc:
            await self._audit(raw, exc.code, remote, str(shipment_id), event["event_id"])
            raise
        result: dict[str, Any] = await self.shards.call(
            self.shards.owner(shard, user_id),
            "track",
            order_id,
            shipment_id,
            event_id=event["event_id"],
            status=event["status"],
            location=event["location"],
            occurred_ms=event["occurred_ms"],
            carrier=carrier,
        )
        return result

    async def _limit_refusals(self, remote: str) -> None:
        s = self.settings
        if self.limiter is None:
            return
        checks = [(Limit("carrier_refused", s.payment_callback_refusals_per_min, 60), "all")]
        if remote != "unknown":
            per_ip = s.payment_callback_refusals_per_ip_per_min
            checks.append((Limit("carrier_refused_ip", per_ip, 60), remote))
        try:
            decision = await self.limiter.check(*checks)
        except Exception:  # the limits need Redis; the audit does not: audit anyway
            log.warning("carrier callback limits unavailable", exc_info=True)
            return
        if not decision.allowed:
            raise RateLimited(
                "too many refused carrier callbacks; retry later",
                retry_after=decision.retry_after_header,
            )

    async def _audit(
        self,
        raw: bytes,
        reason: str,
        remote: str,
        shipment_id: str | None = None,
        event_id: str | None = None,
    ) -> None:
        if shipment_id is None or event_id is None:
            try:
                body = jsonin.loads(raw)
                shipment_id = shipment_id or str(body.get("shipment_id"))[:64]
                event_id = event_id or str(body.get("event_id"))[:64]
            except (ValueError, AttributeError):
                pass
        row = {
            "shipment_id": shipment_id,
            "event_id": event_id,
            "reason": reason[:64],
            "remote_addr": remote[:64],
            "body_sha256": hashlib.sha256(raw).hexdigest(),
            "created_ms": now_ms(),
        }
        try:
            await self._tx(lambda ses: ses.execute(insert(CarrierAudit), [row]))
        except DomainError:
            raise
        except Exception:  # the refusal stands even when the audit row cannot be written
            log.error("could not write the carrier audit row (%s)", reason, exc_info=True)
