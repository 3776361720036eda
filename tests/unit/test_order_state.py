"""The order state machine: exactly the drawn moves, by exactly the allowed actors."""

from __future__ import annotations

import itertools

import pytest

from raymall.domain import order_state as st
from raymall.errors import Forbidden, InvalidTransition

ALLOWED = {
    (st.PENDING_PAYMENT, st.PAID),
    (st.PENDING_PAYMENT, st.CANCELLED),
    (st.PAID, st.PARTIALLY_SHIPPED),
    (st.PAID, st.SHIPPED),
    (st.PAID, st.REFUNDED),
    (st.PAID, st.CANCELLED),
    (st.PARTIALLY_SHIPPED, st.SHIPPED),
    (st.SHIPPED, st.DELIVERED),
    (st.SHIPPED, st.COMPLETED),
    (st.DELIVERED, st.COMPLETED),
}


@pytest.mark.parametrize("frm,to", list(itertools.product(st.STATUSES, st.STATUSES)))
def test_only_the_drawn_moves_are_allowed(frm: str, to: str) -> None:
    assert st.can_move(frm, to) == ((frm, to) in ALLOWED)


@pytest.mark.parametrize(
    "frm,to", sorted(set(itertools.product(st.STATUSES, st.STATUSES)) - ALLOWED)
)
def test_an_invalid_move_raises_409_naming_the_current_state(frm: str, to: str) -> None:
    with pytest.raises(InvalidTransition) as err:
        st.check_move(frm, to, "admin")
    assert err.value.status == 409 and err.value.code == "invalid_transition"
    assert err.value.details["status"] == frm and err.value.details["to"] == to


def test_terminal_states_have_no_way_out() -> None:
    assert st.TERMINAL == {st.COMPLETED, st.CANCELLED, st.REFUNDED}
    for terminal in st.TERMINAL:
        assert all(not st.can_move(terminal, to) for to in st.STATUSES)
        assert st.is_terminal(terminal)
    assert not st.is_terminal(st.PAID)


def test_only_the_system_marks_an_order_paid() -> None:
    st.check_move(st.PENDING_PAYMENT, st.PAID, "system")
    for who in ("user", "admin"):
        with pytest.raises(Forbidden):
            st.check_move(st.PENDING_PAYMENT, st.PAID, who)


def test_users_cancel_unpaid_orders_and_confirm_receipt_but_do_not_ship_or_refund() -> None:
    st.check_move(st.PENDING_PAYMENT, st.CANCELLED, "user")
    st.check_move(st.SHIPPED, st.COMPLETED, "user")
    for frm, to in ((st.PAID, st.SHIPPED), (st.PAID, st.REFUNDED)):
        with pytest.raises(Forbidden):
            st.check_move(frm, to, "user")
        st.check_move(frm, to, "admin")


def test_a_paid_order_is_cancelled_by_its_customer_or_an_admin_never_by_the_timeout() -> None:
    st.check_move(st.PAID, st.CANCELLED, "user")
    st.check_move(st.PAID, st.CANCELLED, "admin")
    with pytest.raises(Forbidden):
        st.check_move(st.PAID, st.CANCELLED, "system")
    for shipped in (st.PARTIALLY_SHIPPED, st.SHIPPED, st.DELIVERED):
        with pytest.raises(InvalidTransition):
            st.check_move(shipped, st.CANCELLED, "user")


def test_the_timeout_may_cancel_but_not_ship() -> None:
    st.check_move(st.PENDING_PAYMENT, st.CANCELLED, "system")
    with pytest.raises(Forbidden):
        st.check_move(st.PAID, st.SHIPPED, "system")


def test_an_invalid_move_is_refused_before_the_actor_is_considered() -> None:
    with pytest.raises(InvalidTransition):
        st.check_move(st.CANCELLED, st.PAID, "user")


def test_an_unknown_status_is_an_invalid_transition() -> None:
    with pytest.raises(InvalidTransition) as err:
        st.check_move("lost", st.PAID)
    assert err.value.details["status"] == "lost"


def test_every_status_announces_itself_on_its_own_topic() -> None:
    topics = [st.topic_for(s) for s in st.STATUSES]
    assert len(set(topics)) == len(st.STATUSES)
    assert st.topic_for(st.PENDING_PAYMENT) == "order.placed"
    assert st.topic_for(st.CANCELLED) == "order.cancelled"
