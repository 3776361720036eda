"""Promotion and coupon pricing by example: each rule, scope, window, stacking and the
refusals of a named coupon (raymall.domain.promotions)."""

from __future__ import annotations

import pytest

from raymall.domain.promotions import (
    AMOUNT_OFF,
    BELOW_THRESHOLD,
    COUPON,
    FREE_SHIPPING,
    NOT_BEST,
    NOT_COMBINABLE,
    OUT_OF_SCOPE,
    PERCENT_OFF,
    PROMOTION,
    REPLACED,
    TIERS,
    Offer,
    PriceLine,
    Rule,
    Scope,
    allocate,
    best,
    check_named,
    evaluate,
)
from raymall.errors import (
    CouponBelowThreshold,
    CouponExpired,
    CouponNotCombinable,
    CouponNotYetValid,
    CouponOutOfScope,
)

NOW = 1_000_000
PHONE = PriceLine(1, 10, 30_000, 1, frozenset({100, 1}), brand_id=7)  # electronics > phones
CASE = PriceLine(2, 20, 1_999, 2, frozenset({101, 1}), brand_id=8)  # electronics > cases
SOCKS = PriceLine(3, 30, 500, 3, frozenset({200, 2}), brand_id=9)  # clothing
CART = [PHONE, CASE, SOCKS]  # 30,000 + 3,998 + 1,500 = 35,498


def promo(ref: int, rule: Rule, scope: Scope = Scope(), **kw: object) -> Offer:
    return Offer(PROMOTION, ref, rule, scope, **kw)  # type: ignore[arg-type]


def coupon(ref: int, rule: Rule, scope: Scope = Scope(), **kw: object) -> Offer:
    return Offer(COUPON, ref, rule, scope, **kw)  # type: ignore[arg-type]


def test_amount_off_is_allocated_by_largest_remainder_and_sums_exactly() -> None:
    priced = evaluate(CART, [promo(1, Rule(AMOUNT_OFF, amount_cents=1_000))], NOW)
    assert priced.discount_cents == 1_000
    # 1000 * (30000, 3998, 1500) / 35498 = 845.1.., 112.6.., 42.2..: one cent left, to CASE
    assert priced.line_discounts == {1: 845, 2: 113, 3: 42}
    assert priced.total_cents == 35_498 - 1_000


def test_percent_off_rounds_down_and_respects_its_cap() -> None:
    rule = Rule(PERCENT_OFF, percent=15)
    assert evaluate([CASE], [promo(1, rule)], NOW).discount_cents == 3_998 * 15 // 100  # 599
    capped = Rule(PERCENT_OFF, percent=50, cap_cents=2_000)
    assert evaluate(CART, [promo(1, capped)], NOW).discount_cents == 2_000


def test_tiers_take_the_highest_tier_reached() -> None:
    tiers = Rule(TIERS, tiers=((10_000, 1_000), (30_000, 5_000), (50_000, 9_000)))
    assert evaluate(CART, [promo(1, tiers)], NOW).discount_cents == 5_000
    below = evaluate([SOCKS], [promo(1, tiers)], NOW)
    assert below.discount_cents == 0 and below.skipped == (("promotion:1", BELOW_THRESHOLD),)


def test_scope_by_category_covers_subcategories_and_exclusions_win() -> None:
    electronics = Scope(shop=False, category_ids=frozenset({1}), exclude_sku_ids=frozenset({2}))
    priced = evaluate(CART, [promo(1, Rule(AMOUNT_OFF, amount_cents=500), electronics)], NOW)
    assert priced.line_discounts == {1: 500, 2: 0, 3: 0}
    by_brand = Scope(shop=False, brand_ids=frozenset({9}))
    only_socks = evaluate(CART, [promo(2, Rule(AMOUNT_OFF, amount_cents=9_999), by_brand)], NOW)
    assert only_socks.line_discounts == {1: 0, 2: 0, 3: 1_500}  # never below zero
    nothing = evaluate(
        [PHONE], [promo(3, Rule(AMOUNT_OFF, amount_cents=1), Scope(shop=False))], NOW
    )
    assert nothing.skipped == (("promotion:3", OUT_OF_SCOPE),)


def test_flash_lines_are_outside_offers_unless_the_channel_is_allowed() -> None:
    flash = PriceLine(4, 40, 1_000, 1, frozenset({1}), flash=True)
    rule = Rule(AMOUNT_OFF, amount_cents=300)
    assert evaluate([flash], [promo(1, rule)], NOW).discount_cents == 0
    assert evaluate([flash], [promo(1, rule, flash_ok=True)], NOW).discount_cents == 300


def test_windows_are_half_open() -> None:
    rule = Rule(AMOUNT_OFF, amount_cents=100)
    assert evaluate(CART, [promo(1, rule, starts_ms=NOW, ends_ms=NOW + 1)], NOW).discount_cents
    early = evaluate(CART, [promo(1, rule, starts_ms=NOW + 1)], NOW)
    late = evaluate(CART, [promo(1, rule, ends_ms=NOW)], NOW)
    assert early.skipped[0][1] == "not_yet_valid" and late.skipped[0][1] == "expired"


def test_coupon_threshold_counts_the_price_after_promotions() -> None:
    promos = [promo(1, Rule(AMOUNT_OFF, amount_cents=600))]
    c = coupon(5, Rule(AMOUNT_OFF, amount_cents=1_000, min_spend_cents=35_000))
    priced = best(CART, promos, [c], NOW)  # 35,498 - 600 = 34,898 < 35,000
    assert priced.coupons == () and ("coupon:5", BELOW_THRESHOLD) in priced.skipped
    with pytest.raises(CouponBelowThreshold) as err:
        check_named(CART, promos, [c], NOW)
    assert err.value.details["min_spend_cents"] == 35_000


def test_best_picks_the_larger_coupon_and_explains_the_other() -> None:
    small = coupon(1, Rule(AMOUNT_OFF, amount_cents=500))
    large = coupon(2, Rule(PERCENT_OFF, percent=10, cap_cents=3_000))
    priced = best(CART, [], [small, large], NOW)
    assert [c.ref for c in priced.coupons] == [2] and priced.discount_cents == 3_000
    assert dict(priced.skipped)["coupon:1"] == NOT_COMBINABLE


def test_stacking_coupons_combine_one_per_campaign() -> None:
    a = coupon(1, Rule(AMOUNT_OFF, amount_cents=500), stacks=True, campaign_id=1)
    b = coupon(2, Rule(AMOUNT_OFF, amount_cents=700), stacks=True, campaign_id=2)
    twin = coupon(3, Rule(AMOUNT_OFF, amount_cents=700), stacks=True, campaign_id=2)
    priced = best(CART, [], [a, b, twin], NOW)
    assert {c.ref for c in priced.coupons} == {1, 2} and priced.discount_cents == 1_200
    assert dict(priced.skipped)["coupon:3"] in (NOT_COMBINABLE, NOT_BEST)
    with pytest.raises(CouponNotCombinable):
        check_named(CART, [], [b, twin], NOW)


def test_a_coupon_that_excludes_promotions_is_chosen_only_when_it_saves_more() -> None:
    promos = [promo(1, Rule(AMOUNT_OFF, amount_cents=2_000))]
    lone = coupon(9, Rule(AMOUNT_OFF, amount_cents=3_000), with_promotions=False)
    priced = best(CART, promos, [lone], NOW)
    assert priced.discount_cents == 3_000 and dict(priced.skipped)["promotion:1"] == REPLACED
    weak = coupon(9, Rule(AMOUNT_OFF, amount_cents=1_000), with_promotions=False)
    priced = best(CART, promos, [weak], NOW)
    assert priced.discount_cents == 2_000 and dict(priced.skipped)["coupon:9"] == NOT_BEST


def test_free_shipping_breaks_a_tie() -> None:
    ship = coupon(1, Rule(FREE_SHIPPING, min_spend_cents=1_000))
    priced = best(CART, [], [ship], NOW)
    assert priced.free_shipping and priced.discount_cents == 0


def test_named_coupon_refusals_have_their_own_codes() -> None:
    rule = Rule(AMOUNT_OFF, amount_cents=100)
    with pytest.raises(CouponExpired):
        check_named(CART, [], [coupon(1, rule, ends_ms=NOW)], NOW)
    with pytest.raises(CouponNotYetValid) as early:
        check_named(CART, [], [coupon(1, rule, starts_ms=NOW + 5)], NOW)
    assert early.value.details["valid_from_ms"] == NOW + 5
    with pytest.raises(CouponOutOfScope):
        check_named(CART, [], [coupon(1, rule, Scope(shop=False, sku_ids=frozenset({99})))], NOW)
    ok = check_named(CART, [], [coupon(1, rule)], NOW)
    assert ok.discount_cents == 100


def test_allocate_rejects_impossible_amounts() -> None:
    assert allocate(0, [0, 0]) == [0, 0]
    assert allocate(3, [1, 1, 1]) == [1, 1, 1]
    assert allocate(2, [1, 1, 1]) == [1, 1, 0]  # ties go to the earlier line
    with pytest.raises(ValueError):
        allocate(4, [1, 1, 1])


def test_rule_problems_catch_bad_rules() -> None:
    assert Rule(AMOUNT_OFF, amount_cents=1).problems() == []
    assert Rule(AMOUNT_OFF).problems()
    assert Rule(PERCENT_OFF, percent=101).problems()
    assert Rule(TIERS, tiers=((100, 10), (50, 5))).problems()
    assert Rule("bogus").problems()
    assert Rule.from_dict(Rule(TIERS, tiers=((1, 1),)).as_dict()) == Rule(TIERS, tiers=((1, 1),))
    s = Scope(shop=False, brand_ids=frozenset({3}), exclude_sku_ids=frozenset({4}))
    assert Scope.from_dict(s.as_dict()) == s


def test_a_coupon_below_threshold_after_promotions_can_still_stack_without_them() -> None:
    promos = [promo(1, Rule(AMOUNT_OFF, amount_cents=600))]
    x = coupon(5, Rule(AMOUNT_OFF, amount_cents=1_000, min_spend_cents=35_000), stacks=True)
    y = coupon(6, Rule(AMOUNT_OFF, amount_cents=100), stacks=True, with_promotions=False)
    priced = best(CART, promos, [x, y], NOW)
    assert {c.ref for c in priced.coupons} == {5, 6} and priced.discount_cents == 1_100


def test_a_line_carries_its_category_and_every_ancestor() -> None:
    from raymall.coupons.pricing import price_lines
    from raymall.domain.pricing import PricedLine

    line = PricedLine(5, 50, "kettle", {}, 1_000, 2)
    parents = {30: 20, 20: 10, 10: None, 7: 7}  # 7 is its own parent: no endless walk
    (priced,) = price_lines([line], {50: (30, 4)}, parents)
    assert priced.category_ids == frozenset({30, 20, 10}) and priced.brand_id == 4
    (looped,) = price_lines([line], {50: (7, None)}, parents)
    assert looped.category_ids == frozenset({7})
    scope = Scope(shop=False, category_ids=frozenset({10}))
    offer = promo(1, Rule(AMOUNT_OFF, amount_cents=300), scope)
    assert evaluate([priced], [offer], NOW).discount_cents == 300
