"""A return's state machine: exactly the drawn moves, by exactly the allowed actors."""

from __future__ import annotations

import itertools

import pytest

from raymall.errors import Forbidden, InvalidTransition
from raymall.returns import states as rs

ALLOWED = {
    (rs.REQUESTED, rs.APPROVED, "admin"),
    (rs.REQUESTED, rs.REJECTED, "admin"),
    (rs.APPROVED, rs.SHIPPED_BACK, "user"),
    (rs.APPROVED, rs.RECEIVED, "admin"),
    (rs.SHIPPED_BACK, rs.RECEIVED, "admin"),
    (rs.RECEIVED, rs.REFUNDED, "system"),
}


@pytest.mark.parametrize(
    "frm,to,actor", list(itertools.product(rs.STATUSES, rs.STATUSES, ("user", "admin", "system")))
)
def test_only_the_drawn_moves_by_their_actors_are_allowed(frm: str, to: str, actor: str) -> None:
    if (frm, to, actor) in ALLOWED:
        rs.check_move(frm, to, actor)
    elif any((frm, to) == (a, b) for a, b, _ in ALLOWED):
        with pytest.raises(Forbidden):
            rs.check_move(frm, to, actor)
    else:
        with pytest.raises(InvalidTransition) as err:
            rs.check_move(frm, to, actor)
        assert err.value.details["status"] == frm


def test_rejected_and_refunded_are_final_and_a_rejected_return_claims_no_units() -> None:
    assert not rs.MOVES[rs.REJECTED] and not rs.MOVES[rs.REFUNDED]
    assert rs.REJECTED not in rs.CLAIMING and rs.RECEIVED in rs.CLAIMING


def test_the_window_closes_the_configured_days_after_receipt() -> None:
    assert rs.window_closes_ms(1_000, 14) == 1_000 + 14 * 86_400_000
    assert rs.returnable(3, 1) == 2 and rs.returnable(1, 4) == 0
