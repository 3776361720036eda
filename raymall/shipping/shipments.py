"""Shipment persistence: plain functions over a SQLAlchemy ``Session`` (run them in a
thread, inside the owning OrderShard's per-order lock).

Guarantees:

- ``add_shipment`` raises each line's ``shipped_quantity`` by a guarded ``UPDATE ...
  WHERE shipped_quantity + :q <= quantity``, so no line ever ships more than was bought
  (``ShipQuantityExceeded`` otherwise; the caller's transaction then rolls back whole);
- ``(carrier, tracking_number)`` is unique: it is a shipment's idempotency key;
- ``add_event`` stores a tracking event once per ``event_id`` and moves the shipment only
  forwards, by a compare-and-set over the earlier statuses (``raymall.shipping.tracking``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from models import OrderItem, Shipment, ShipmentEvent, ShipmentItem
from raymall.errors import ShipQuantityExceeded
from raymall.orders import repository as repo
from raymall.orders import rows
from raymall.shipping import tracking as tr


def find_by_tracking(session: Session, carrier: str, tracking_number: str) -> Shipment | None:
    return session.scalar(
        select(Shipment).where(
            Shipment.carrier == carrier, Shipment.tracking_number == tracking_number
        )
    )


def get_shipment(session: Session, shipment_id: int) -> Shipment | None:
    return session.get(Shipment, shipment_id, populate_existing=True)


def add_shipment(
    session: Session,
    *,
    shipment_id: int,
    order_id: int,
    carrier: str,
    tracking_number: str,
    units: Mapping[int, int],
    now: int,
) -> None:
    """The shipment, its items and the lines' shipped quantities (the caller's transaction)."""
    for item_id, qty in sorted(units.items()):
        result = session.execute(
            update(OrderItem)
            .where(
                OrderItem.id == item_id,
                OrderItem.order_id == order_id,
                OrderItem.shipped_quantity + qty <= OrderItem.quantity,
            )
            .values(shipped_quantity=OrderItem.shipped_quantity + qty)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise ShipQuantityExceeded(
                f"order item {item_id} has fewer than {qty} units left to ship",
                details={"order_item_id": str(item_id), "asked": qty},
            )
    session.add(
        Shipment(
            id=shipment_id,
            order_id=order_id,
            carrier=carrier,
            tracking_number=tracking_number,
            status=tr.LABEL_CREATED,
            created_ms=now,
            updated_ms=now,
        )
    )
    session.flush()
    session.add_all(
        ShipmentItem(shipment_id=shipment_id, order_item_id=item_id, quantity=qty)
        for item_id, qty in sorted(units.items())
    )
    session.flush()


def has_event(session: Session, event_id: str) -> bool:
    found = session.scalar(select(ShipmentEvent.id).where(ShipmentEvent.event_id == event_id))
    return found is not None


def add_event(
    session: Session,
    shipment: Shipment,
    *,
    event_id: str,
    status: str,
    location: str,
    occurred_ms: int,
    now: int,
) -> bool:
    """Store the event; answer whether it moved the shipment (forwards only)."""
    session.add(
        ShipmentEvent(
            shipment_id=int(shipment.id),
            event_id=event_id,
            status=status,
            location=location[:64],
            occurred_ms=occurred_ms,
            created_ms=now,
        )
    )
    session.flush()
    values: dict[str, Any] = {"status": status, "updated_ms": now}
    if status == tr.DELIVERED:
        values["delivered_ms"] = occurred_ms
    result = session.execute(
        update(Shipment)
        .where(Shipment.id == shipment.id, Shipment.status.in_(tr.earlier(status)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def all_delivered(session: Session, order_id: int) -> bool:
    statuses = list(session.scalars(select(Shipment.status).where(Shipment.order_id == order_id)))
    return bool(statuses) and all(s == tr.DELIVERED for s in statuses)


def outbox(session: Session, topic: str, payload: dict[str, Any], aggregate: int, now: int) -> None:
    repo._insert(  # noqa: SLF001 - the orders' one driver-level INSERT
        session, rows.OUTBOX, rows.OUTBOX_COLUMNS, [rows.outbox_row(topic, aggregate, payload, now)]
    )


def shipments_of(session: Session, order_id: int) -> list[dict[str, Any]]:
    """An order's shipments, oldest first, each with its lines and tracking events."""
    found = list(
        session.scalars(
            select(Shipment).where(Shipment.order_id == order_id).order_by(Shipment.created_ms)
        )
    )
    if not found:
        return []
    ids = [int(s.id) for s in found]
    items: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for it in session.scalars(
        select(ShipmentItem).where(ShipmentItem.shipment_id.in_(ids)).order_by(ShipmentItem.id)
    ):
        items[int(it.shipment_id)].append(
            {"order_item_id": int(it.order_item_id), "quantity": int(it.quantity)}
        )
    events: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for ev in session.scalars(
        select(ShipmentEvent)
        .where(ShipmentEvent.shipment_id.in_(ids))
        .order_by(ShipmentEvent.occurred_ms, ShipmentEvent.id)
    ):
        events[int(ev.shipment_id)].append(
            {
                "event_id": ev.event_id,
                "status": ev.status,
                "location": ev.location,
                "occurred_ms": int(ev.occurred_ms),
                "received_ms": int(ev.created_ms),
            }
        )
    return [shipment_view(s, items[int(s.id)], events[int(s.id)]) for s in found]


def shipment_view(
    s: Shipment,
    items: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": str(s.id),
        "order_id": str(s.order_id),
        "carrier": s.carrier,
        "tracking_number": s.tracking_number,
        "status": s.status,
        "delivered_ms": None if s.delivered_ms is None else int(s.delivered_ms),
        "created_ms": int(s.created_ms),
        "updated_ms": int(s.updated_ms),
    }
    if items is not None:
        view["items"] = items
    if events is not None:
        view["events"] = events
    return view
