"""A return's (RMA's) state machine, its reasons and its window: plain Python, no I/O.

    requested ──▶ approved ──▶ shipped_back ──▶ received ──▶ refunded
        │             └───────────────────────────▲
        ▼
     rejected

The customer asks (``requested``) and adds the return tracking number (``shipped_back``);
an admin approves or rejects, and marks the parcel ``received`` (which restocks the units
and asks the provider for the refund of exactly those units); the provider's succeeded
refund callback makes it ``refunded`` (the system). An admin may mark an approved return
received without a tracking number. Every move is a compare-and-set on
``returns.status`` in the order's shard, so of two racing moves exactly one wins.

Guarantees (tests/unit/test_return_states.py): ``check_move`` accepts exactly the moves
above, by exactly the actors named in ``MOVERS``; anything else is ``InvalidTransition``
(409, ``details.status`` the current one) or ``Forbidden``. Units of a line count as
claimed by every return that is not rejected, so the units asked for never exceed those
bought.
"""

from __future__ import annotations

from raymall.errors import Forbidden, InvalidTransition

REQUESTED = "requested"
APPROVED = "approved"
REJECTED = "rejected"
SHIPPED_BACK = "shipped_back"
RECEIVED = "received"
REFUNDED = "refunded"
STATUSES = (REQUESTED, APPROVED, REJECTED, SHIPPED_BACK, RECEIVED, REFUNDED)

MOVES: dict[str, frozenset[str]] = {
    REQUESTED: frozenset({APPROVED, REJECTED}),
    APPROVED: frozenset({SHIPPED_BACK, RECEIVED}),
    SHIPPED_BACK: frozenset({RECEIVED}),
    RECEIVED: frozenset({REFUNDED}),
    REJECTED: frozenset(),
    REFUNDED: frozenset(),
}
MOVERS: dict[tuple[str, str], frozenset[str]] = {
    (REQUESTED, APPROVED): frozenset({"admin"}),
    (REQUESTED, REJECTED): frozenset({"admin"}),
    (APPROVED, SHIPPED_BACK): frozenset({"user"}),
    (APPROVED, RECEIVED): frozenset({"admin"}),
    (SHIPPED_BACK, RECEIVED): frozenset({"admin"}),
    (RECEIVED, REFUNDED): frozenset({"system"}),
}
TOPICS = {s: f"return.{s}" for s in STATUSES}
# returns whose units count against what may still be returned
CLAIMING = frozenset(STATUSES) - {REJECTED}

# why a customer returns something (the request names one)
REASONS = (
    "damaged",
    "defective",
    "wrong_item",
    "not_as_described",
    "no_longer_needed",
    "other",
)
DAY_MS = 86_400_000


def check_move(current: str, to: str, actor: str) -> None:
    """Raise unless ``actor`` may move a return from ``current`` to ``to``."""
    if to not in MOVES.get(current, frozenset()):
        raise InvalidTransition(
            f"a return that is {current} cannot become {to}",
            details={"status": current, "to": to, "allowed": sorted(MOVES.get(current, ()))},
        )
    if actor not in MOVERS[(current, to)]:
        raise Forbidden(f"{actor} may not move a return from {current} to {to}")


def window_closes_ms(received_ms: int, days: int) -> int:
    """When the return window closes for an order received at ``received_ms``."""
    return received_ms + days * DAY_MS


def returnable(bought: int, claimed: int) -> int:
    """Units of a line that may still be asked back."""
    return max(bought - claimed, 0)
