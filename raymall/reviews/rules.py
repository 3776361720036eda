"""Who may review what, and the rating arithmetic. Plain Python, no I/O.

A review belongs to one order line. Guarantees (tests/unit/test_review_rules.py):

- ``check_reviewable`` lets only the line's buyer review it, and only once the order is
  received (``order_state.RECEIVED``: delivered or completed). Anyone else, for an order
  that is not theirs, does not exist, or does not hold the line, gets the same
  ``NotVerifiedBuyer`` (403), so the answer does not reveal other people's orders; the
  buyer of an order not yet received gets ``OrderNotReceived`` (409, with its status);
- ``Rating`` is what a product stores for its visible reviews: a count, a sum and the
  average x100 rounded half up (``average_x100``), the key of ``sort=rating``.
  ``added``/``removed`` are exact inverses, and the SQL of
  ``raymall.reviews.repository`` computes the same numbers in one guarded UPDATE.
"""

from __future__ import annotations

from dataclasses import dataclass

from raymall.domain import order_state as st
from raymall.errors import NotVerifiedBuyer, OrderNotReceived

MIN_RATING, MAX_RATING = 1, 5
MAX_TEXT = 2_000
MAX_IMAGES = 9


@dataclass(frozen=True)
class LineFacts:
    """What the database says about the order line a review names (None: no such line)."""

    order_user_id: int
    order_status: str
    line_in_order: bool


def check_reviewable(user_id: int, facts: LineFacts | None) -> None:
    """Raise unless ``user_id`` may review the line now."""
    if facts is None or facts.order_user_id != user_id or not facts.line_in_order:
        raise NotVerifiedBuyer("only the buyer of this order line may review it")
    if facts.order_status not in st.RECEIVED:
        raise OrderNotReceived(
            f"the order is {facts.order_status}: it can be reviewed once delivered",
            details={"status": facts.order_status, "allowed": sorted(st.RECEIVED)},
        )


def average_x100(count: int, total: int) -> int:
    """The mean of ``count`` ratings summing to ``total``, x100, rounded half up; 0 when
    there are none."""
    if count <= 0:
        return 0
    return (total * 200 + count) // (2 * count)


@dataclass(frozen=True)
class Rating:
    count: int = 0
    total: int = 0

    @property
    def x100(self) -> int:
        return average_x100(self.count, self.total)

    @property
    def average(self) -> float | None:
        return None if self.count == 0 else self.x100 / 100

    def added(self, rating: int) -> Rating:
        return Rating(self.count + 1, self.total + rating)

    def removed(self, rating: int) -> Rating:
        if self.count < 1 or self.total < rating:
            raise ValueError("cannot remove a rating that was not counted")
        return Rating(self.count - 1, self.total - rating)


def public_rating(count: int, x100: int) -> dict[str, object]:
    """How documents and cards show a product's rating."""
    return {"rating_count": int(count), "rating_average": None if count <= 0 else x100 / 100}
