"""Shipping fee arithmetic (raymall.shipping.fees): region fee, else flat fee; free over
the threshold of the goods after discounts; free with a free-shipping promotion."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as stx

from raymall.shipping.fees import MethodTerms, base_fee, region_keys, shipping_fee

STANDARD = MethodTerms(
    id=1,
    code="standard",
    name="Standard",
    fee_cents=499,
    free_over_cents=5000,
    region_fees={"us-ca": 899, "GB": 299},
)
LONDON = {"country": "GB", "region": "", "city": "London"}
CALIFORNIA = {"country": "us", "region": "ca"}
TEXAS = {"country": "US", "region": "TX"}


def test_an_address_matches_country_and_region_before_country() -> None:
    assert region_keys(CALIFORNIA) == ("US-CA", "US")
    assert region_keys(LONDON) == ("GB",)
    assert region_keys({}) == ()


def test_the_region_fee_wins_over_the_flat_fee() -> None:
    assert base_fee(STANDARD, CALIFORNIA) == 899  # keys match case-insensitively
    assert base_fee(STANDARD, LONDON) == 299
    assert base_fee(STANDARD, TEXAS) == 499  # no key for US-TX nor US: the flat fee
    assert base_fee(STANDARD, {}) == 499


def test_goods_at_the_threshold_ship_free_and_a_cent_below_pay() -> None:
    assert shipping_fee(STANDARD, TEXAS, goods_cents=5000) == 0
    assert shipping_fee(STANDARD, TEXAS, goods_cents=4999) == 499
    assert shipping_fee(STANDARD, CALIFORNIA, goods_cents=4999) == 899


def test_no_threshold_never_ships_free_but_a_free_shipping_promotion_does() -> None:
    express = MethodTerms(id=2, code="express", name="Express", fee_cents=1500)
    assert shipping_fee(express, TEXAS, goods_cents=10**9) == 1500
    assert shipping_fee(express, TEXAS, goods_cents=1, free_shipping=True) == 0


@given(
    fee=stx.integers(0, 10**6),
    region_fee=stx.integers(0, 10**6),
    threshold=stx.none() | stx.integers(0, 10**7),
    goods=stx.integers(0, 10**7),
    free=stx.booleans(),
)
def test_the_fee_is_one_of_the_method_fees_or_zero_and_the_total_adds_up(
    fee: int, region_fee: int, threshold: int | None, goods: int, free: bool
) -> None:
    method = MethodTerms(3, "m", "M", fee, threshold, {"US-CA": region_fee})
    got = shipping_fee(method, CALIFORNIA, goods_cents=goods, free_shipping=free)
    waived = free or (threshold is not None and goods >= threshold)
    assert got == (0 if waived else region_fee)
    assert shipping_fee(method, TEXAS, goods_cents=goods, free_shipping=free) == (
        0 if waived else fee
    )
    assert goods + got >= goods >= 0
