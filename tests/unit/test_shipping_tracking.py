"""Shipments and tracking as plain rules (raymall.shipping.tracking): what a shipment
takes, where the order goes, and events that never move a shipment backwards; and the
order moves shipping adds to the state machine."""

from __future__ import annotations

import pytest

from raymall.domain import order_state as st
from raymall.errors import Forbidden, InvalidTransition, ShipQuantityExceeded
from raymall.shipping import tracking as tr

LINES = {11: (2, 0), 12: (3, 1)}  # item id -> (quantity, shipped)


def test_no_lines_ships_everything_that_remains() -> None:
    assert tr.plan(LINES, None) == {11: 2, 12: 2}
    assert tr.plan({11: (2, 2), 12: (3, 1)}, None) == {12: 2}


def test_named_lines_are_summed_and_bounded_by_what_remains() -> None:
    assert tr.plan(LINES, [(11, 1), (11, 1)]) == {11: 2}
    with pytest.raises(ShipQuantityExceeded) as err:
        tr.plan(LINES, [(12, 3)])
    assert err.value.details == {"order_item_id": "12", "asked": 3, "remaining": 2}
    with pytest.raises(ShipQuantityExceeded):
        tr.plan(LINES, [(99, 1)])  # another order's line
    with pytest.raises(ShipQuantityExceeded):
        tr.plan(LINES, [(11, 0)])


def test_a_shipment_of_nothing_is_refused() -> None:
    with pytest.raises(ShipQuantityExceeded):
        tr.plan({11: (2, 2)}, None)


def test_the_order_is_shipped_once_every_unit_left_else_partially() -> None:
    assert tr.order_status_after(LINES, {11: 2, 12: 2}) == st.SHIPPED
    assert tr.order_status_after(LINES, {11: 2}) == st.PARTIALLY_SHIPPED
    assert tr.order_status_after(LINES, {11: 1, 12: 2}) == st.PARTIALLY_SHIPPED


def test_events_only_move_a_shipment_forwards() -> None:
    assert tr.advances(tr.LABEL_CREATED, tr.PICKED_UP)
    assert tr.advances(tr.PICKED_UP, tr.DELIVERED)  # steps may be skipped
    assert not tr.advances(tr.IN_TRANSIT, tr.PICKED_UP)  # late event
    assert not tr.advances(tr.DELIVERED, tr.OUT_FOR_DELIVERY)
    assert not tr.advances(tr.IN_TRANSIT, tr.IN_TRANSIT)  # a repeat
    assert not tr.advances(tr.LABEL_CREATED, "lost")  # unknown status
    assert tr.earlier(tr.IN_TRANSIT) == (tr.LABEL_CREATED, tr.PICKED_UP)
    assert tr.CARRIER_STEPS == (tr.PICKED_UP, tr.IN_TRANSIT, tr.OUT_FOR_DELIVERY, tr.DELIVERED)


@pytest.mark.parametrize(
    ("frm", "to", "actor"),
    [
        (st.PAID, st.PARTIALLY_SHIPPED, "admin"),
        (st.PAID, st.SHIPPED, "admin"),
        (st.PARTIALLY_SHIPPED, st.SHIPPED, "admin"),
        (st.SHIPPED, st.DELIVERED, "system"),
        (st.DELIVERED, st.COMPLETED, "user"),
        (st.DELIVERED, st.COMPLETED, "admin"),
        (st.DELIVERED, st.COMPLETED, "system"),
        (st.SHIPPED, st.COMPLETED, "user"),
    ],
)
def test_each_fulfilment_move_is_allowed_to_its_mover(frm: str, to: str, actor: str) -> None:
    st.check_move(frm, to, actor)


@pytest.mark.parametrize(
    ("frm", "to", "actor", "error"),
    [
        (st.SHIPPED, st.DELIVERED, "admin", Forbidden),  # only the carrier's callback
        (st.SHIPPED, st.DELIVERED, "user", Forbidden),
        (st.PAID, st.SHIPPED, "user", Forbidden),
        (st.PARTIALLY_SHIPPED, st.PAID, "admin", InvalidTransition),
        (st.DELIVERED, st.SHIPPED, "system", InvalidTransition),  # never backwards
        (st.PARTIALLY_SHIPPED, st.CANCELLED, "user", InvalidTransition),
        (st.PENDING_PAYMENT, st.SHIPPED, "admin", InvalidTransition),
    ],
)
def test_other_fulfilment_moves_are_refused(
    frm: str, to: str, actor: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        st.check_move(frm, to, actor)
