"""ShippingService: the per-replica side of shipping.

Routes call it. It administers shipping methods, hands shipments to the OrderShard that
owns the order (``raymall.shipping.fulfilment`` runs there), gives a new shipment of the
simulated carrier to the carrier deployment, and receives the carrier's signed callbacks
(``raymall.shipping.callbacks``). Guarantees:

- every change of an order or shipment is made by the order's owner shard;
- a shipment is handed to the carrier after it is stored; sending the same shipment again
  (same carrier and tracking number) hands it again, and the carrier's events are
  idempotent by event id, so nothing happens twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from raymall.db import transaction
from raymall.errors import NotFound
from raymall.logs import get_logger
from raymall.orders import repository as repo
from raymall.ratelimit import RateLimiter
from raymall.settings import Settings
from raymall.shipping.callbacks import CarrierCallbacks
from raymall.shipping.methods import ShippingMethods
from raymall.shipping.ports import CarrierGateway, FulfilmentShards

log = get_logger("shipping.service")
T = TypeVar("T")


class ShippingService:
    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        shards: FulfilmentShards,
        carrier: CarrierGateway | None = None,
        redis: Any = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.shards = shards
        self.carrier = carrier
        self.methods = ShippingMethods(sessions)
        self.callbacks = CarrierCallbacks(
            settings,
            shards,
            read=self._read,
            tx=self._tx,
            limiter=RateLimiter(redis) if redis is not None else None,
        )

    async def _read(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.sessions() as session:
                return fn(session)

        return await asyncio.to_thread(run)

    async def _tx(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with transaction(self.sessions) as session:
                return fn(session)

        return await asyncio.to_thread(run)

    async def ship(
        self,
        order_id: int,
        *,
        carrier: str,
        tracking_number: str,
        lines: Sequence[tuple[int, int]] | None,
        admin_id: int,
    ) -> dict[str, Any]:
        """Ship some lines (None: all that remains) of a paid order; answers
        ``{"shipment", "order", "created"}``."""

        def owner(session: Session) -> tuple[int, int]:
            order = repo.get_order(session, order_id)
            if order is None:
                raise NotFound(f"order {order_id} not found")
            return int(order.shard), int(order.user_id)

        shard, user_id = await self._read(owner)
        answer: dict[str, Any] = await self.shards.call(
            self.shards.owner(shard, user_id),
            "ship",
            order_id,
            carrier=carrier,
            tracking_number=tracking_number,
            lines=None if lines is None else list(lines),
            actor=f"admin:{admin_id}",
        )
        if carrier == self.settings.carrier_name and self.carrier is not None:
            shipment = answer["shipment"]
            try:
                await self.carrier.track(
                    {
                        "shipment_id": shipment["id"],
                        "order_id": shipment["order_id"],
                        "tracking_number": shipment["tracking_number"],
                    }
                )
            except Exception:  # the shipment stands; sending it again hands it again
                log.warning("could not hand shipment %s to the carrier", shipment["id"])
        return answer

    async def callback(
        self, raw: bytes, timestamp: str | None, signature: str | None, remote: str
    ) -> dict[str, Any]:
        return await self.callbacks.handle(raw, timestamp, signature, remote)
