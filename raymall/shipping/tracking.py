"""Shipments and their tracking: plain Python, no I/O.

A shipment moves ``label_created -> picked_up -> in_transit -> out_for_delivery ->
delivered``. Carrier events can arrive late, twice or out of order. Guarantees
(tests/unit/test_shipping_tracking.py):

- **never backwards**: an event moves a shipment only to a later status (``advances``);
  an older or equal one is recorded in its history and changes nothing else;
- **what to ship** (``plan``): the lines and quantities asked for, or every line's
  unshipped remainder when none are named; a line of another order, a quantity of 0, or
  more than remains is ``ShipQuantityExceeded`` (409), and so is a shipment of nothing;
- **where the order goes** (``order_status_after``): ``shipped`` once every unit of every
  line has left, else ``partially_shipped``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from raymall.domain import order_state as st
from raymall.errors import ShipQuantityExceeded

LABEL_CREATED = "label_created"
PICKED_UP = "picked_up"
IN_TRANSIT = "in_transit"
OUT_FOR_DELIVERY = "out_for_delivery"
DELIVERED = "delivered"
STATUSES = (LABEL_CREATED, PICKED_UP, IN_TRANSIT, OUT_FOR_DELIVERY, DELIVERED)
RANK = {status: i for i, status in enumerate(STATUSES)}
# what the carrier reports, in order (the simulated carrier sends exactly these)
CARRIER_STEPS = STATUSES[1:]
MANUAL_CARRIER = "manual"  # a shipment made without a carrier (POST .../ship)

# the outbox topic of a shipment's new tracking status (order moves have their own)
SHIPMENT_TOPIC = "shipment.created"
TRACKING_TOPIC = "shipment.tracking"


def advances(current: str, new: str) -> bool:
    """Whether an event saying ``new`` moves a shipment that is ``current``."""
    return RANK.get(new, -1) > RANK.get(current, len(STATUSES))


def earlier(status: str) -> tuple[str, ...]:
    """The statuses a shipment may be in for an event saying ``status`` to move it."""
    return STATUSES[: RANK[status]]


def plan(
    lines: Mapping[int, tuple[int, int]], asked: Sequence[tuple[int, int]] | None
) -> dict[int, int]:
    """Units to ship per order line. ``lines``: order item id -> (quantity, shipped);
    ``asked``: (order item id, quantity) pairs, or None for everything that remains."""
    if asked is None:
        out = {i: q - s for i, (q, s) in lines.items() if q > s}
    else:
        out = {}
        for item_id, qty in asked:
            out[item_id] = out.get(item_id, 0) + qty
        for item_id, qty in out.items():
            if item_id not in lines:
                raise ShipQuantityExceeded(
                    f"order item {item_id} is not in this order",
                    details={"order_item_id": str(item_id)},
                )
            quantity, shipped = lines[item_id]
            if qty < 1 or qty > quantity - shipped:
                raise ShipQuantityExceeded(
                    f"order item {item_id} has {quantity - shipped} units left to ship",
                    details={
                        "order_item_id": str(item_id),
                        "asked": qty,
                        "remaining": quantity - shipped,
                    },
                )
    if not out:
        raise ShipQuantityExceeded("nothing is left to ship", details={"remaining": 0})
    return out


def order_status_after(lines: Mapping[int, tuple[int, int]], shipping: Mapping[int, int]) -> str:
    """The order's status once ``shipping`` has left (``lines`` as in ``plan``)."""
    done = all(s + shipping.get(i, 0) >= q for i, (q, s) in lines.items())
    return st.SHIPPED if done else st.PARTIALLY_SHIPPED
