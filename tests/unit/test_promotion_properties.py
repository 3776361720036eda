"""Property tests of promotion pricing against a brute-force reference on random carts.

The reference below is written apart from ``raymall.domain.promotions``: its own rule
arithmetic, its own allocation (exact fractions, then the largest remainders), its own
stacking rules, and it tries every subset of the customer's coupons. For every random cart
and wallet, ``best``:

- is optimal: no valid combination saves more (and ties go to free shipping, then fewer
  coupons, then the lowest ids, as the reference ranks them);
- allocates exactly: each offer's shares sum to its discount, the lines' discounts sum to
  the order's, and they are the reference's shares to the cent;
- never goes negative: no share, line or total below zero, no line discounted past its
  price;
- keeps the stacking rules: at most one coupon unless all stack, one per campaign, and no
  promotion next to a coupon that excludes them.
"""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations
from math import floor

from hypothesis import given, settings
from hypothesis import strategies as st

from raymall.domain.promotions import (
    AMOUNT_OFF,
    COUPON,
    FREE_SHIPPING,
    PERCENT_OFF,
    PROMOTION,
    TIERS,
    Offer,
    PriceLine,
    Rule,
    Scope,
    allocate,
    best,
    evaluate,
)

NOW = 10_000
CATEGORIES = [1, 2, 3]
PARENT = {2: 1, 3: 1}  # 2 and 3 are subcategories of 1


def path(cat: int) -> frozenset[int]:
    out = {cat}
    while cat in PARENT:
        cat = PARENT[cat]
        out.add(cat)
    return frozenset(out)


@st.composite
def carts(draw: st.DrawFn) -> list[PriceLine]:
    skus = draw(st.lists(st.integers(1, 9), min_size=1, max_size=5, unique=True))
    return [
        PriceLine(
            sku_id=s,
            product_id=s // 2,
            unit_price_cents=draw(st.integers(0, 20_000)),
            quantity=draw(st.integers(1, 4)),
            category_ids=path(draw(st.sampled_from(CATEGORIES))),
            brand_id=draw(st.sampled_from([None, 1, 2])),
            flash=draw(st.booleans()) and draw(st.booleans()),
        )
        for s in skus
    ]


rules = st.one_of(
    st.builds(
        Rule,
        kind=st.just(AMOUNT_OFF),
        amount_cents=st.integers(1, 30_000),
        min_spend_cents=st.sampled_from([0, 0, 5_000, 20_000]),
    ),
    st.builds(
        Rule,
        kind=st.just(PERCENT_OFF),
        percent=st.integers(1, 100),
        cap_cents=st.one_of(st.none(), st.integers(1, 10_000)),
        min_spend_cents=st.sampled_from([0, 10_000]),
    ),
    st.lists(st.integers(0, 60_000), min_size=1, max_size=3, unique=True).flatmap(
        lambda spends: st.lists(
            st.integers(1, 15_000), min_size=len(spends), max_size=len(spends)
        ).map(lambda offs: Rule(TIERS, tiers=tuple(zip(sorted(spends), offs, strict=True))))
    ),
    st.builds(Rule, kind=st.just(FREE_SHIPPING), min_spend_cents=st.sampled_from([0, 30_000])),
)
ids = st.frozensets(st.integers(1, 9), max_size=2)
scopes = st.one_of(
    st.just(Scope()),
    st.builds(
        Scope,
        shop=st.just(False),
        category_ids=st.frozensets(st.sampled_from(CATEGORIES), max_size=2),
        brand_ids=st.frozensets(st.sampled_from([1, 2]), max_size=1),
        product_ids=st.frozensets(st.integers(0, 4), max_size=2),
        sku_ids=ids,
    ),
    st.builds(Scope, exclude_sku_ids=ids, exclude_category_ids=st.frozensets(st.just(3))),
)
windows = st.sampled_from([(0, 2**62), (0, 2**62), (0, 2**62), (NOW + 1, 2**62), (0, NOW)])


@st.composite
def offers(draw: st.DrawFn, kind: str, ref: int) -> Offer:
    starts, ends = draw(windows)
    return Offer(
        kind=kind,
        ref=ref,
        rule=draw(rules),
        scope=draw(scopes),
        starts_ms=starts,
        ends_ms=ends,
        campaign_id=draw(st.integers(1, 3)) if kind == COUPON else None,
        stacks=draw(st.booleans()),
        with_promotions=draw(st.booleans()) or draw(st.booleans()),
        flash_ok=draw(st.booleans()),
    )


@st.composite
def wallets(draw: st.DrawFn) -> tuple[list[Offer], list[Offer]]:
    n_promos = draw(st.integers(0, 3))
    n_coupons = draw(st.integers(0, 6))
    promos = [draw(offers(PROMOTION, i + 1)) for i in range(n_promos)]
    coupons = [draw(offers(COUPON, 100 + i)) for i in range(n_coupons)]
    return promos, coupons


# ---- the reference --------------------------------------------------------------------
def ref_off(rule: Rule, base: int) -> int | None:
    if rule.kind == TIERS:
        best_off = None
        for spend, off in rule.tiers:
            if base >= spend:
                best_off = off  # ascending: the last reached is the highest
        return None if best_off is None else min(best_off, base)
    if base < rule.min_spend_cents:
        return None
    if rule.kind == AMOUNT_OFF:
        return min(rule.amount_cents, base)
    if rule.kind == PERCENT_OFF:
        off = floor(Fraction(base * rule.percent, 100))
        return off if rule.cap_cents is None else min(off, rule.cap_cents)
    return 0


def ref_covers(o: Offer, ln: PriceLine) -> bool:
    s = o.scope
    if ln.flash and not o.flash_ok:
        return False
    excluded = (
        ln.sku_id in s.exclude_sku_ids
        or ln.product_id in s.exclude_product_ids
        or ln.brand_id in s.exclude_brand_ids
        or any(c in s.exclude_category_ids for c in ln.category_ids)
    )
    included = (
        s.shop
        or ln.sku_id in s.sku_ids
        or ln.product_id in s.product_ids
        or ln.brand_id in s.brand_ids
        or any(c in s.category_ids for c in ln.category_ids)
    )
    return included and not excluded


def ref_shares(amount: int, bases: list[int]) -> list[int]:
    total = sum(bases)
    exact = [Fraction(amount * b, total) for b in bases]
    shares = [floor(x) for x in exact]
    order = sorted(range(len(bases)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: amount - sum(shares)]:
        shares[i] += 1
    return shares


def ref_price(
    lines: list[PriceLine], offers_: list[Offer]
) -> tuple[int, bool, dict[int, int], set[str]]:
    """(discount, free shipping, discount per SKU, ids of the offers that applied)."""
    left = {ln.sku_id: ln.total_cents for ln in lines}
    got: set[str] = set()
    free = False
    promos = sorted((o for o in offers_ if o.kind == PROMOTION), key=lambda o: o.ref)
    coupons = sorted((o for o in offers_ if o.kind == COUPON), key=lambda o: o.ref)
    for o in promos + coupons:
        if not (o.starts_ms <= NOW < o.ends_ms):
            continue
        covered = sorted(ln.sku_id for ln in lines if ref_covers(o, ln))
        if not covered:
            continue
        off = ref_off(o.rule, sum(left[s] for s in covered))
        if off is None or (off == 0 and o.rule.kind != FREE_SHIPPING):
            continue
        got.add(o.id)
        free = free or o.rule.kind == FREE_SHIPPING
        if off:
            for s, share in zip(covered, ref_shares(off, [left[s] for s in covered]), strict=True):
                left[s] -= share
    per = {ln.sku_id: ln.total_cents - left[ln.sku_id] for ln in lines}
    return sum(per.values()), free, per, got


def ref_valid(coupons: tuple[Offer, ...]) -> bool:
    if len(coupons) <= 1:
        return True
    if not all(c.stacks for c in coupons):
        return False
    campaigns = [c.campaign_id for c in coupons]
    return len(campaigns) == len(set(campaigns))


def ref_best(
    lines: list[PriceLine], promos: list[Offer], coupons: list[Offer]
) -> tuple[tuple[object, ...], tuple[Offer, ...]]:
    ranked = []
    for size in range(len(coupons) + 1):
        for combo in combinations(coupons, size):
            if not ref_valid(combo):
                continue
            with_promos = all(c.with_promotions for c in combo)
            offers_ = [*(promos if with_promos else []), *combo]
            off, free, _, got = ref_price(lines, offers_)
            used = sorted(c.ref for c in combo)
            ranked.append(((-off, not free, len(used), used), combo))
    return min(ranked, key=lambda r: r[0])


# ---- the properties ---------------------------------------------------------------------
@settings(max_examples=250, deadline=None)
@given(carts(), wallets())
def test_best_is_optimal_exact_non_negative_and_keeps_the_stacking_rules(
    lines: list[PriceLine], wallet: tuple[list[Offer], list[Offer]]
) -> None:
    promos, coupons = wallet
    priced = best(lines, promos, coupons, NOW)
    rank, _ = ref_best(lines, promos, coupons)

    # optimal: the reference's best rank, discount and free shipping included
    ref_discount, ref_no_free = rank[0], rank[1]
    assert isinstance(ref_discount, int)
    assert priced.discount_cents == -ref_discount
    assert priced.free_shipping == (not ref_no_free)

    # stacking rules
    used = priced.coupons
    assert ref_valid(used)
    if any(not c.with_promotions for c in used):
        assert all(a.offer.kind == COUPON for a in priced.applied)

    # exact allocation, the reference's shares to the cent
    offers_applied = [a.offer for a in priced.applied]
    off, free, per, got = ref_price(lines, offers_applied)
    assert got == {o.id for o in offers_applied}
    assert priced.line_discounts == per and priced.discount_cents == off
    for a in priced.applied:
        assert sum(c for _, c in a.shares) == a.discount_cents
        assert all(c >= 0 for _, c in a.shares)
    assert sum(priced.line_discounts.values()) == priced.discount_cents

    # never negative
    for ln in lines:
        assert 0 <= priced.line_discounts[ln.sku_id] <= ln.total_cents
    assert 0 <= priced.total_cents == priced.subtotal_cents - priced.discount_cents

    # every offer not applied is explained
    explained = {oid for oid, _ in priced.skipped}
    for o in [*promos, *coupons]:
        assert (o.id in explained) != (o.id in {a.offer.id for a in priced.applied})


@settings(max_examples=200, deadline=None)
@given(carts(), wallets())
def test_evaluate_of_any_set_matches_the_reference(
    lines: list[PriceLine], wallet: tuple[list[Offer], list[Offer]]
) -> None:
    promos, coupons = wallet
    priced = evaluate(lines, [*promos, *coupons], NOW)
    off, free, per, got = ref_price(lines, [*promos, *coupons])
    assert priced.discount_cents == off and priced.free_shipping == free
    assert priced.line_discounts == per
    assert {a.offer.id for a in priced.applied} == got


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=12), st.data())
def test_largest_remainder_sums_exactly_and_stays_within_each_base(
    bases: list[int], data: st.DataObject
) -> None:
    amount = data.draw(st.integers(0, sum(bases)))
    shares = allocate(amount, bases)
    assert sum(shares) == amount
    assert all(0 <= s <= b for s, b in zip(shares, bases, strict=True))
    if sum(bases):
        assert all(
            abs(Fraction(amount * b, sum(bases)) - s) < 1
            for s, b in zip(shares, bases, strict=True)
        )
    assert shares == (ref_shares(amount, bases) if sum(bases) else [0] * len(bases))
