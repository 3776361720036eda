"""Fulfilment in the OrderShard that owns the order: shipments, carrier tracking,
delivery and automatic completion.

``Fulfilment`` is the shipping half of ``raymall.orders.workflow.OrderWorkflow`` and runs
under its per-order lock, so one operation at a time touches an order. Guarantees:

- **a shipment is one transaction**: the lines' ``shipped_quantity`` (guarded, never above
  what was bought), the shipment and its items, and the order's move ``paid ->
  partially_shipped | shipped`` or ``partially_shipped -> shipped`` as a compare-and-set
  with its history and outbox event. If the move loses (a cancel got there first), nothing
  of the shipment is written. Of a cancel and a shipment of a paid order exactly one wins;
- **idempotent by (carrier, tracking number)**: sending a shipment again answers the first
  one and changes nothing; the same pair on another order is ``TrackingNumberTaken``;
- **tracking events** are stored once per ``event_id`` and move a shipment only forwards;
  when every shipment of a fully shipped order is delivered the order moves ``shipped ->
  delivered`` (system) with ``delivered_ms`` and its automatic-completion deadline
  ``expires_ms = delivered_ms + auto_complete_days``;
- **automatic completion is durable**: the deadline lives in the database and the shard's
  sweeper completes overdue delivered orders (``complete_overdue``), also after a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from raymall import metrics
from raymall.domain import order_state as st
from raymall.errors import (
    InvalidTransition,
    NotFound,
    ShipmentNotFound,
    TrackingNumberTaken,
)
from raymall.ids import Snowflake, now_ms
from raymall.logs import get_logger
from raymall.orders import repository as repo
from raymall.orders.ports import OrderSerial
from raymall.orders.sweeps import for_each_overdue
from raymall.shipping import shipments as sh
from raymall.shipping import tracking as tr

log = get_logger("shipping")
DAY_MS = 86_400_000


class Fulfilment:
    def __init__(self, wf: OrderSerial, ids: Snowflake, *, auto_complete_days: float) -> None:
        self.wf = wf
        self.ids = ids
        self.auto_complete_ms = int(auto_complete_days * DAY_MS)

    # ---- shipments ------------------------------------------------------------------
    async def ship(
        self,
        order_id: int,
        *,
        carrier: str,
        tracking_number: str,
        lines: Sequence[tuple[int, int]] | None,
        actor: str,
        role: str = "admin",
    ) -> dict[str, Any]:
        """Ship ``lines`` ((order item id, quantity); None: all that remains). Answers
        ``{"shipment", "order", "created"}``."""
        async with self.wf._locked(order_id):
            shipment_id = self.ids.next_id()
            now = now_ms()

            def write(session: Session) -> dict[str, Any]:
                found = sh.find_by_tracking(session, carrier, tracking_number)
                if found is not None:
                    if int(found.order_id) != order_id:
                        raise TrackingNumberTaken(
                            f"{carrier} {tracking_number} is another order's shipment"
                        )
                    return self._answer(session, order_id, found, created=False)
                order = repo.get_order(session, order_id)
                if order is None:
                    raise NotFound(f"order {order_id} not found")
                if order.status not in (st.PAID, st.PARTIALLY_SHIPPED):
                    st.check_move(order.status, st.SHIPPED, role)  # raises: names the status
                items = repo.items_of(session, [order_id])[order_id]
                have = {int(i.id): (int(i.quantity), int(i.shipped_quantity or 0)) for i in items}
                units = tr.plan(have, lines)
                to = tr.order_status_after(have, units)
                sh.add_shipment(
                    session,
                    shipment_id=shipment_id,
                    order_id=order_id,
                    carrier=carrier,
                    tracking_number=tracking_number,
                    units=units,
                    now=now,
                )
                moved = to != order.status
                if moved:
                    st.check_move(order.status, to, role)
                    if not repo.transition(
                        session, order, to, reason="shipment", actor=actor, now=now
                    ):
                        current = repo.get_order(session, order_id)
                        status = current.status if current is not None else "unknown"
                        raise InvalidTransition(
                            f"the order is {status}", details={"status": status, "to": to}
                        )
                payload = {
                    "order_id": str(order_id),
                    "user_id": int(order.user_id),
                    "shipment_id": str(shipment_id),
                    "carrier": carrier,
                    "tracking_number": tracking_number,
                    "items": [
                        {"order_item_id": i, "quantity": q} for i, q in sorted(units.items())
                    ],
                    # the order's own move (if any) notifies the customer already
                    "silent": moved,
                }
                sh.outbox(session, tr.SHIPMENT_TOPIC, payload, order_id, now)
                shipment = sh.get_shipment(session, shipment_id)
                assert shipment is not None
                answer = self._answer(session, order_id, shipment, created=True)
                answer["moved"] = (order.status, to) if moved else None
                return answer

            try:
                answer = await self.wf._tx(write)
            except IntegrityError:  # the same tracking number, stored meanwhile
                answer = await self.wf._tx(
                    lambda s: self._replay(s, order_id, carrier, tracking_number)
                )
        moved = answer.pop("moved", None)
        if moved:
            metrics.ORDER_TRANSITIONS.labels(moved[0], moved[1], "shipment").inc()
        return answer

    def _replay(self, session: Session, order_id: int, carrier: str, number: str) -> dict:
        found = sh.find_by_tracking(session, carrier, number)
        if found is None or int(found.order_id) != order_id:
            raise TrackingNumberTaken(f"{carrier} {number} is another order's shipment")
        return self._answer(session, order_id, found, created=False)

    def _answer(self, session: Session, order_id: int, shipment: Any, *, created: bool) -> dict:
        order = repo.get_order(session, order_id)
        assert order is not None
        items = repo.items_of(session, [order_id])[order_id]
        return {
            "shipment": sh.shipment_view(shipment),
            "order": repo.order_view(order, items),
            "created": created,
        }

    # ---- tracking -------------------------------------------------------------------
    async def track(
        self,
        order_id: int,
        shipment_id: int,
        *,
        event_id: str,
        status: str,
        location: str,
        occurred_ms: int,
        carrier: str,
    ) -> dict[str, Any]:
        """Apply a verified carrier event (the replica checked its signature and that
        the shipment is this order's). A duplicate ``event_id`` changes nothing."""
        async with self.wf._locked(order_id):
            now = now_ms()

            def write(session: Session) -> dict[str, Any]:
                shipment = sh.get_shipment(session, shipment_id)
                if shipment is None or int(shipment.order_id) != order_id:
                    raise ShipmentNotFound(f"shipment {shipment_id} not found")
                if sh.has_event(session, event_id):
                    return self._tracked(session, shipment_id, duplicate=True)
                advanced = sh.add_event(
                    session,
                    shipment,
                    event_id=event_id,
                    status=status,
                    location=location,
                    occurred_ms=occurred_ms,
                    now=now,
                )
                order = repo.get_order(session, order_id)
                assert order is not None
                if advanced:
                    payload = {
                        "order_id": str(order_id),
                        "user_id": int(order.user_id),
                        "shipment_id": str(shipment_id),
                        "status": status,
                        "silent": status != tr.OUT_FOR_DELIVERY,
                    }
                    sh.outbox(session, tr.TRACKING_TOPIC, payload, order_id, now)
                if (
                    advanced
                    and status == tr.DELIVERED
                    and order.status == st.SHIPPED
                    and sh.all_delivered(session, order_id)
                ):
                    repo.transition(
                        session,
                        order,
                        st.DELIVERED,
                        reason="delivered",
                        actor=f"carrier:{carrier}"[:64],
                        now=now,
                        also_set={
                            "delivered_ms": now,
                            "expires_ms": now + self.auto_complete_ms,
                        },
                    )
                return self._tracked(session, shipment_id, duplicate=False, advanced=advanced)

            try:
                return await self.wf._tx(write)
            except IntegrityError:  # the same event id, stored meanwhile
                return await self.wf._tx(lambda s: self._tracked(s, shipment_id, duplicate=True))

    def _tracked(
        self, session: Session, shipment_id: int, *, duplicate: bool, advanced: bool = False
    ) -> dict[str, Any]:
        shipment = sh.get_shipment(session, shipment_id)
        assert shipment is not None
        order = repo.get_order(session, int(shipment.order_id))
        assert order is not None
        return {
            "shipment_id": str(shipment_id),
            "shipment": shipment.status,
            "order": order.status,
            "duplicate": duplicate,
            "advanced": advanced,
        }

    # ---- automatic completion -------------------------------------------------------
    async def complete_overdue(self, limit: int = 500, concurrency: int = 16) -> int:
        """Complete this shard's delivered orders past their deadline; answer how many."""
        shard = self.wf.shard
        ids = await self.wf._tx(
            lambda s: repo.overdue(s, shard, now_ms(), limit, status=st.DELIVERED)
        )
        return await for_each_overdue(ids, self._complete, concurrency, "auto-completion")

    async def _complete(self, order_id: int) -> bool:
        async with self.wf._locked(order_id):
            order, items = await self.wf._tx(self.wf._load(order_id))
            if order.status != st.DELIVERED or (order.expires_ms or 0) > now_ms():
                return False
            await self.wf._commit_move(
                order, items, st.COMPLETED, reason="auto_complete", actor="system"
            )
            return True
