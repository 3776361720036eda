"""The order state machine: which moves exist and who may make them. Plain Python, no I/O.

    pending_payment ──▶ paid ──▶ partially_shipped ──▶ shipped ──▶ delivered ──▶ completed
          │             │ │ └──────────────────────────────▲  └──────────────────────▲
          ▼             │ ▼
      cancelled ◀───────┘ refunded

(paid -> cancelled: the customer's cancel before anything shipped, refunded in full.)

An order whose lines all left in shipments is ``shipped``; some of them, ``partially_shipped``.
The carrier's "delivered" event (all shipments delivered) makes it ``delivered``; the
customer's confirmation, an admin, or the system N days after delivery completes it. A
``shipped`` order may also be completed directly (receipt confirmed before the carrier's
last event). Returns and partial refunds happen after delivery without moving the order.

Guarantees (tests/unit/test_order_state.py):

- ``check_move`` accepts exactly the moves drawn above; anything else raises
  ``InvalidTransition`` (409) whose details carry the current status, so a caller always
  learns where the order is;
- each move names who may make it: a user cancels an unpaid or a paid, unshipped order
  (the paid one is refunded in full, its stock and coupons come back) and confirms receipt,
  an admin ships, completes, refunds or cancels, the system pays (a verified payment
  callback), cancels (the payment deadline), marks delivery (a verified
  carrier callback) and completes (N days after delivery). Anyone else gets ``Forbidden``;
- the terminal states (completed, cancelled, refunded) have no way out.

Persistence applies a move as a compare-and-set (``UPDATE ... WHERE status = :from``), so
of two racing moves from the same state exactly one succeeds (DESIGN invariant 6).
"""

from __future__ import annotations

from typing import Literal

from raymall.errors import Forbidden, InvalidTransition

PENDING_PAYMENT = "pending_payment"
PAID = "paid"
PARTIALLY_SHIPPED = "partially_shipped"
SHIPPED = "shipped"
DELIVERED = "delivered"
COMPLETED = "completed"
CANCELLED = "cancelled"
REFUNDED = "refunded"
STATUSES = (
    PENDING_PAYMENT, PAID, PARTIALLY_SHIPPED, SHIPPED, DELIVERED, COMPLETED, CANCELLED, REFUNDED
)  # fmt: skip
# a customer received (part of) these orders: returns and reviews start from them
RECEIVED = frozenset({DELIVERED, COMPLETED})

Actor = Literal["user", "admin", "system"]

MOVES: dict[str, frozenset[str]] = {
    PENDING_PAYMENT: frozenset({PAID, CANCELLED}),
    PAID: frozenset({PARTIALLY_SHIPPED, SHIPPED, REFUNDED, CANCELLED}),
    PARTIALLY_SHIPPED: frozenset({SHIPPED}),
    SHIPPED: frozenset({DELIVERED, COMPLETED}),
    DELIVERED: frozenset({COMPLETED}),
    COMPLETED: frozenset(),
    CANCELLED: frozenset(),
    REFUNDED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in MOVES.items() if not nxt)

# who may make each move
MOVERS: dict[tuple[str, str], frozenset[str]] = {
    (PENDING_PAYMENT, PAID): frozenset({"system"}),
    (PENDING_PAYMENT, CANCELLED): frozenset({"user", "admin", "system"}),
    (PAID, PARTIALLY_SHIPPED): frozenset({"admin"}),
    (PAID, SHIPPED): frozenset({"admin"}),
    (PAID, REFUNDED): frozenset({"admin"}),
    (PAID, CANCELLED): frozenset({"user", "admin"}),
    (PARTIALLY_SHIPPED, SHIPPED): frozenset({"admin"}),
    (SHIPPED, DELIVERED): frozenset({"system"}),
    (SHIPPED, COMPLETED): frozenset({"user", "admin"}),
    (DELIVERED, COMPLETED): frozenset({"user", "admin", "system"}),
}

# the outbox topic announcing arrival in each state
TOPICS: dict[str, str] = {
    PENDING_PAYMENT: "order.placed",
    PAID: "order.paid",
    PARTIALLY_SHIPPED: "order.partially_shipped",
    SHIPPED: "order.shipped",
    DELIVERED: "order.delivered",
    COMPLETED: "order.completed",
    CANCELLED: "order.cancelled",
    REFUNDED: "order.refunded",
}


def can_move(current: str, to: str) -> bool:
    return to in MOVES.get(current, frozenset())


def check_move(current: str, to: str, actor: Actor | str = "system") -> None:
    """Raise unless ``actor`` may move an order from ``current`` to ``to``."""
    if current not in MOVES:
        raise InvalidTransition(
            f"unknown order status {current!r}", details={"status": current, "to": to}
        )
    if not can_move(current, to):
        raise InvalidTransition(
            f"an order that is {current} cannot become {to}",
            details={"status": current, "to": to, "allowed": sorted(MOVES[current])},
        )
    if actor not in MOVERS[(current, to)]:
        raise Forbidden(f"{actor} may not move an order from {current} to {to}")


def topic_for(status: str) -> str:
    return TOPICS[status]


def is_terminal(status: str) -> bool:
    return status in TERMINAL
