"""The order state machine: which moves exist and who may make them. Plain Python, no I/O.

    pending_payment ──▶ paid ──▶ shipped ──▶ completed
          │              │
          ▼              ▼
      cancelled       refunded

Guarantees (tests/unit/test_order_state.py):

- ``check_move`` accepts exactly the moves drawn above; anything else raises
  ``InvalidTransition`` (409) whose details carry the current status, so a caller always
  learns where the order is;
- each move names who may make it: a user cancels an unpaid order or confirms receipt, an
  admin ships, completes, refunds or cancels, the system pays (a verified payment
  callback) and cancels (the payment deadline). Anyone else gets ``Forbidden``;
- the terminal states (completed, cancelled, refunded) have no way out.

Persistence applies a move as a compare-and-set (``UPDATE ... WHERE status = :from``), so
of two racing moves from the same state exactly one succeeds (DESIGN invariant 6).
"""

from __future__ import annotations

from typing import Literal

from raymall.errors import Forbidden, InvalidTransition

PENDING_PAYMENT = "pending_payment"
PAID = "paid"
SHIPPED = "shipped"
COMPLETED = "completed"
CANCELLED = "cancelled"
REFUNDED = "refunded"
STATUSES = (PENDING_PAYMENT, PAID, SHIPPED, COMPLETED, CANCELLED, REFUNDED)

Actor = Literal["user", "admin", "system"]

MOVES: dict[str, frozenset[str]] = {
    PENDING_PAYMENT: frozenset({PAID, CANCELLED}),
    PAID: frozenset({SHIPPED, REFUNDED}),
    SHIPPED: frozenset({COMPLETED}),
    COMPLETED: frozenset(),
    CANCELLED: frozenset(),
    REFUNDED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in MOVES.items() if not nxt)

# who may make each move
MOVERS: dict[tuple[str, str], frozenset[str]] = {
    (PENDING_PAYMENT, PAID): frozenset({"system"}),
    (PENDING_PAYMENT, CANCELLED): frozenset({"user", "admin", "system"}),
    (PAID, SHIPPED): frozenset({"admin"}),
    (PAID, REFUNDED): frozenset({"admin"}),
    (SHIPPED, COMPLETED): frozenset({"user", "admin"}),
}

# the outbox topic announcing arrival in each state
TOPICS: dict[str, str] = {
    PENDING_PAYMENT: "order.placed",
    PAID: "order.paid",
    SHIPPED: "order.shipped",
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
