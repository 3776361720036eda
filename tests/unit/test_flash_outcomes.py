"""The one table from a shard's result code to its domain error: every caller (the
inventory client, FlashService, flash returns, sale administration) gets the class, the
message and the details that each code stood for where it was mapped before."""

from __future__ import annotations

from typing import Any

import pytest

from raymall.domain import outcomes
from raymall.domain.outcomes import BUY, END, UNREAD, error_for, raise_for
from raymall.errors import (
    Conflict,
    DomainError,
    IdempotencyMismatch,
    InvalidTransition,
    LimitExceeded,
    NotFound,
    OutOfStock,
    SaleEnded,
    SaleNotStarted,
    SoldOut,
    Unavailable,
    ValidationFailed,
)

KEY = "order:1"


def raised(code: str, **kw: Any) -> DomainError:
    with pytest.raises(DomainError) as err:
        raise_for(code, key=KEY, **kw)
    return err.value


@pytest.mark.parametrize("code", ["ok", "skipped"])
def test_ok_and_skipped_are_no_error(code: str) -> None:
    raise_for(code, key=KEY, skus=[3])


@pytest.mark.parametrize(
    ("code", "cls", "message"),
    [
        ("out_of_stock", OutOfStock, "not enough stock"),
        ("unknown_sku", NotFound, "unknown SKU"),
        ("not_found", NotFound, "no reservation under this key"),
        ("key_reused", IdempotencyMismatch, "this key was used for a different operation"),
        ("invalid", ValidationFailed, "invalid inventory operation"),
        ("something_new", Conflict, "inventory refused the operation (something_new)"),
    ],
)
def test_a_stock_refusal_names_its_key_and_sorted_skus(
    code: str, cls: type[DomainError], message: str
) -> None:
    err = raised(code, skus={5: 1, 2: 1})
    assert type(err) is cls and err.message == message
    assert err.details == {"key": KEY, "sku_ids": [2, 5]}
    assert raised(code).details == {"key": KEY}  # no SKUs named: none listed


@pytest.mark.parametrize("state", ["released", "confirmed", "rejected"])
def test_a_reservation_in_another_state_is_an_invalid_transition_naming_it(state: str) -> None:
    err = raised(state, skus=[7])
    assert type(err) is InvalidTransition and err.message == f"the reservation is {state}"
    assert err.details == {"key": KEY, "sku_ids": [7], "state": state}


PURCHASE = {"sale_id": 9, "per_user_limit": 2, "order_id": "123"}


@pytest.mark.parametrize(
    ("code", "cls", "message", "details"),
    [
        ("sold_out", SoldOut, "sold out", {}),
        ("limit_reached", LimitExceeded, "at most 2 per customer", {"per_user_limit": 2}),
        ("not_started", SaleNotStarted, "the sale has not started", {}),
        ("ended", SaleEnded, "the sale has ended", {}),
        (
            "key_reused",
            IdempotencyMismatch,
            "this Idempotency-Key was used for a different purchase",
            {"order_id": "123"},
        ),
        ("unknown_sale", NotFound, "flash sale 9 not found", {}),
        ("odd", Unavailable, "the purchase could not be decided (odd)", {}),
    ],
)
def test_a_purchase_refusal_keeps_only_the_details_of_its_code(
    code: str, cls: type[DomainError], message: str, details: dict[str, Any]
) -> None:
    err = error_for(code, BUY, **PURCHASE)
    assert type(err) is cls and err.message == message and err.details == details


def test_the_replicas_own_refusals_carry_the_sale_times() -> None:
    started = error_for("not_started", BUY, starts_at_ms=5)
    ended = error_for("ended", BUY, ends_at_ms=6)
    assert type(started) is SaleNotStarted and started.details == {"starts_at_ms": 5}
    assert type(ended) is SaleEnded and ended.details == {"ends_at_ms": 6}


def test_a_purchase_answered_by_a_bare_code_and_a_failed_end_have_their_own_messages() -> None:
    unread = error_for("invalid", UNREAD)
    assert type(unread) is ValidationFailed
    assert unread.message == "the purchase was refused (invalid)" and unread.details == {}
    end = error_for("unknown_sale", END)
    assert type(end) is Unavailable
    assert end.message == "the sale could not be ended (unknown_sale)"


def test_every_area_has_a_row_for_codes_it_does_not_name() -> None:
    areas = {area for area, _ in outcomes.OUTCOMES}
    assert all((area, outcomes.ANY) in outcomes.OUTCOMES for area in areas)
