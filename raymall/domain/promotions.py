"""Promotions and coupons, priced in integer cents: plain Python, no I/O.

An *offer* is an automatic promotion (no code, applies by itself) or one of a customer's
coupons. It has a ``Rule`` (what it takes off), a ``Scope`` (which lines it covers) and a
validity window. ``evaluate`` prices a cart with a given set of offers; ``best`` picks the
customer's best valid combination and says why each offer is or is not in it.

Rules of the arithmetic (tests/unit/test_promotions.py and test_promotion_properties.py
check them against a brute-force reference on random carts):

- **order**: offers apply one after another, automatic promotions first (by id), then
  coupons (by id). Each offer sees what *remains* on the lines it covers after the offers
  before it, so a threshold ("spend 100") is met by what the customer would pay for those
  lines at that point: a coupon's threshold counts the price after promotions;
- **one offer's discount** on a base ``B`` (the remaining amount of its lines):
  ``amount_off`` takes ``min(amount, B)``; ``percent_off`` takes ``floor(B * percent / 100)``,
  at most ``cap_cents``; ``tiers`` (spend X get Y off) takes the amount of the highest tier
  whose threshold ``B`` reaches, at most ``B``; ``free_shipping`` takes nothing and sets the
  flag. Below ``min_spend_cents`` (tiers: below the lowest tier) the offer does not apply.
  Percentages round down to the cent: never more off than the rule says;
- **allocation**: each offer's discount is split over its lines in proportion to their
  remaining amounts by the largest-remainder method: every line gets
  ``floor(D * b_i / B)``, and the cents left over go one each to the lines with the largest
  remainders (ties: the lower SKU id first). The shares sum to ``D`` exactly and no line
  gets more than it has left, so no line, and no total, ever goes below zero;
- **scope**: a line is covered when the scope is the whole shop or names its SKU, product,
  brand or one of its categories (a category covers its subcategories: a line carries its
  category and every ancestor), and no exclusion names any of those. Flash-sale lines are
  covered only by offers that allow the flash channel (``flash_ok``; off by default);
- **stacking**: every valid automatic promotion applies. On top, at most one coupon, or
  several when every one of them stacks (``stacks``), at most one per campaign. A coupon
  that does not combine with promotions (``with_promotions=False``) replaces them: the
  order then has that coupon (and other stacking coupons) without the promotions.
  ``best`` maximises the discount, then prefers free shipping, then fewer coupons (keep
  the rest for later), then the lowest coupon ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from raymall.errors import (
    CouponBelowThreshold,
    CouponExpired,
    CouponNotCombinable,
    CouponNotYetValid,
    CouponOutOfScope,
    CouponRefused,
)

AMOUNT_OFF, PERCENT_OFF, TIERS, FREE_SHIPPING = (
    "amount_off",
    "percent_off",
    "tiers",
    "free_shipping",
)
RULE_KINDS = (AMOUNT_OFF, PERCENT_OFF, TIERS, FREE_SHIPPING)
PROMOTION, COUPON = "promotion", "coupon"

# why an offer is not in a priced order (``Priced.skipped``)
NOT_YET_VALID = "not_yet_valid"
EXPIRED = "expired"
OUT_OF_SCOPE = "out_of_scope"
BELOW_THRESHOLD = "below_threshold"
NO_SAVING = "no_saving"  # it applies, but nothing is left on its lines to take off
NOT_COMBINABLE = "not_combinable"  # the chosen coupon(s) do not combine with it
NOT_BEST = "not_best"  # valid, but another combination saves more
REPLACED = "replaced_by_coupon"  # a promotion left out for a coupon that excludes it

MAX_STACK_SEARCH = 10  # stacking coupons searched exhaustively (the best ones beyond)
MAX_CENTS = 2**53


@dataclass(frozen=True, slots=True)
class PriceLine:
    """One cart or order line as pricing sees it (prices from the catalog, never the
    client). ``category_ids``: the product's category and all its ancestors."""

    sku_id: int
    product_id: int
    unit_price_cents: int
    quantity: int
    category_ids: frozenset[int] = frozenset()
    brand_id: int | None = None
    flash: bool = False

    @property
    def total_cents(self) -> int:
        return self.unit_price_cents * self.quantity


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str
    amount_cents: int = 0  # amount_off
    percent: int = 0  # percent_off, 1..100
    cap_cents: int | None = None  # percent_off: at most this much
    min_spend_cents: int = 0  # amount_off, percent_off, free_shipping
    tiers: tuple[tuple[int, int], ...] = ()  # (spend, off), spend ascending

    def problems(self) -> list[str]:
        """What is wrong with the rule (empty: it is valid)."""
        out: list[str] = []
        if self.kind not in RULE_KINDS:
            out.append(f"kind must be one of {', '.join(RULE_KINDS)}")
        if not 0 <= self.min_spend_cents <= MAX_CENTS:
            out.append("min_spend_cents is out of range")
        if self.kind == AMOUNT_OFF and not 0 < self.amount_cents <= MAX_CENTS:
            out.append("amount_cents must be positive")
        if self.kind == PERCENT_OFF:
            if not 1 <= self.percent <= 100:
                out.append("percent must be 1..100")
            if self.cap_cents is not None and not 0 < self.cap_cents <= MAX_CENTS:
                out.append("cap_cents must be positive")
        if self.kind == TIERS:
            spends = [s for s, _ in self.tiers]
            if not self.tiers or spends != sorted(set(spends)):
                out.append("tiers need strictly ascending spend thresholds")
            if any(not (0 <= s <= MAX_CENTS and 0 < off <= MAX_CENTS) for s, off in self.tiers):
                out.append("each tier needs a spend >= 0 and an amount off > 0")
        return out

    def discount(self, base: int) -> int | None:
        """What the rule takes off ``base`` cents (None: the threshold is not met)."""
        if self.kind == TIERS:
            reached = [off for spend, off in self.tiers if base >= spend]
            return min(reached[-1], base) if reached else None
        if base < self.min_spend_cents:
            return None
        if self.kind == AMOUNT_OFF:
            return min(self.amount_cents, base)
        if self.kind == PERCENT_OFF:
            off = base * self.percent // 100
            return off if self.cap_cents is None else min(off, self.cap_cents)
        return 0  # free shipping

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "amount_cents": self.amount_cents,
            "percent": self.percent,
            "cap_cents": self.cap_cents,
            "min_spend_cents": self.min_spend_cents,
            "tiers": [list(t) for t in self.tiers],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rule:
        return cls(
            kind=str(d["kind"]),
            amount_cents=int(d.get("amount_cents") or 0),
            percent=int(d.get("percent") or 0),
            cap_cents=None if d.get("cap_cents") is None else int(d["cap_cents"]),
            min_spend_cents=int(d.get("min_spend_cents") or 0),
            tiers=tuple((int(s), int(o)) for s, o in d.get("tiers") or ()),
        )


_SCOPE_SETS = (
    "category_ids",
    "brand_ids",
    "product_ids",
    "sku_ids",
    "exclude_category_ids",
    "exclude_brand_ids",
    "exclude_product_ids",
    "exclude_sku_ids",
)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which lines an offer covers (see the module docstring). ``shop``: every line."""

    shop: bool = True
    category_ids: frozenset[int] = frozenset()
    brand_ids: frozenset[int] = frozenset()
    product_ids: frozenset[int] = frozenset()
    sku_ids: frozenset[int] = frozenset()
    exclude_category_ids: frozenset[int] = frozenset()
    exclude_brand_ids: frozenset[int] = frozenset()
    exclude_product_ids: frozenset[int] = frozenset()
    exclude_sku_ids: frozenset[int] = frozenset()

    def covers(self, line: PriceLine) -> bool:
        if (
            line.sku_id in self.exclude_sku_ids
            or line.product_id in self.exclude_product_ids
            or (line.brand_id is not None and line.brand_id in self.exclude_brand_ids)
            or not self.exclude_category_ids.isdisjoint(line.category_ids)
        ):
            return False
        return (
            self.shop
            or line.sku_id in self.sku_ids
            or line.product_id in self.product_ids
            or (line.brand_id is not None and line.brand_id in self.brand_ids)
            or not self.category_ids.isdisjoint(line.category_ids)
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"shop": self.shop}
        for name in _SCOPE_SETS:
            out[name] = sorted(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scope:
        sets = {name: frozenset(int(v) for v in d.get(name) or ()) for name in _SCOPE_SETS}
        return cls(shop=bool(d.get("shop", True)), **sets)


@dataclass(frozen=True, slots=True)
class Offer:
    """A promotion (``ref`` = its id) or a customer's coupon (``ref`` = the coupon's id)."""

    kind: str  # PROMOTION | COUPON
    ref: int
    rule: Rule
    scope: Scope = Scope()
    starts_ms: int = 0
    ends_ms: int = 2**63 - 1
    title: str = ""
    campaign_id: int | None = None  # coupons: the campaign it was claimed from
    stacks: bool = False  # coupons: combines with other stacking coupons
    with_promotions: bool = True  # coupons: combines with the automatic promotions
    flash_ok: bool = False  # covers flash-sale lines too

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.ref}"

    @property
    def order(self) -> tuple[int, int]:
        return (0 if self.kind == PROMOTION else 1, self.ref)

    def window(self, now_ms: int) -> str | None:
        """Why the offer is not valid at ``now_ms`` (None: it is)."""
        if now_ms < self.starts_ms:
            return NOT_YET_VALID
        if now_ms >= self.ends_ms:
            return EXPIRED
        return None

    def covers(self, line: PriceLine) -> bool:
        return (self.flash_ok or not line.flash) and self.scope.covers(line)


@dataclass(frozen=True, slots=True)
class Applied:
    """One offer in a priced order: its discount and its share on each line (by SKU)."""

    offer: Offer
    discount_cents: int
    free_shipping: bool
    shares: tuple[tuple[int, int], ...]  # (sku id, cents), ascending SKU

    def view(self) -> dict[str, Any]:
        return {
            "id": self.offer.id,
            "kind": self.offer.kind,
            "ref": str(self.offer.ref),
            "title": self.offer.title,
            "discount_cents": self.discount_cents,
            "free_shipping": self.free_shipping,
            "lines": [{"sku_id": s, "discount_cents": c} for s, c in self.shares],
        }


@dataclass(frozen=True, slots=True)
class Priced:
    """A cart or order priced with a set of offers."""

    lines: tuple[PriceLine, ...]
    applied: tuple[Applied, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (offer id, reason)
    line_discounts: dict[int, int] = field(default_factory=dict)  # sku -> allocated cents

    @property
    def subtotal_cents(self) -> int:
        return sum(line.total_cents for line in self.lines)

    @property
    def discount_cents(self) -> int:
        return sum(a.discount_cents for a in self.applied)

    @property
    def total_cents(self) -> int:
        return self.subtotal_cents - self.discount_cents

    @property
    def free_shipping(self) -> bool:
        return any(a.free_shipping for a in self.applied)

    @property
    def coupons(self) -> tuple[Offer, ...]:
        return tuple(a.offer for a in self.applied if a.offer.kind == COUPON)

    def view(self) -> dict[str, Any]:
        return {
            "subtotal_cents": self.subtotal_cents,
            "discount_cents": self.discount_cents,
            "total_cents": self.total_cents,
            "free_shipping": self.free_shipping,
            "applied": [a.view() for a in self.applied],
            "skipped": [{"id": oid, "reason": why} for oid, why in self.skipped],
            "lines": [
                {
                    "sku_id": ln.sku_id,
                    "line_total_cents": ln.total_cents,
                    "discount_cents": self.line_discounts.get(ln.sku_id, 0),
                    "pay_cents": ln.total_cents - self.line_discounts.get(ln.sku_id, 0),
                }
                for ln in self.lines
            ],
        }


def allocate(amount: int, bases: Sequence[int]) -> list[int]:
    """Split ``amount`` (0 <= amount <= sum(bases)) over ``bases`` by largest remainder:
    shares sum to ``amount`` exactly, each is at most its base; leftover cents go to the
    largest remainders, ties to the earlier base."""
    total = sum(bases)
    if amount < 0 or amount > total or any(b < 0 for b in bases):
        raise ValueError("allocate needs 0 <= amount <= sum(bases) and bases >= 0")
    if amount == 0:
        return [0] * len(bases)
    shares = [amount * b // total for b in bases]
    left = amount - sum(shares)
    by_remainder = sorted(range(len(bases)), key=lambda i: (-(amount * bases[i] % total), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return shares


def evaluate(lines: Sequence[PriceLine], offers: Iterable[Offer], now_ms: int) -> Priced:
    """Price ``lines`` with ``offers`` (every one given is tried, in the fixed order; no
    stacking rule is checked here: ``best`` and ``check_named`` choose the sets)."""
    ordered = tuple(sorted(lines, key=lambda ln: ln.sku_id))
    remaining = {ln.sku_id: ln.total_cents for ln in ordered}
    applied: list[Applied] = []
    skipped: list[tuple[str, str]] = []
    for offer in sorted(offers, key=lambda o: o.order):
        why = offer.window(now_ms)
        if why is not None:
            skipped.append((offer.id, why))
            continue
        covered = [ln.sku_id for ln in ordered if offer.covers(ln)]
        if not covered:
            skipped.append((offer.id, OUT_OF_SCOPE))
            continue
        bases = [remaining[s] for s in covered]
        off = offer.rule.discount(sum(bases))
        if off is None:
            skipped.append((offer.id, BELOW_THRESHOLD))
            continue
        free = offer.rule.kind == FREE_SHIPPING
        if off == 0 and not free:
            skipped.append((offer.id, NO_SAVING))
            continue
        shares = allocate(off, bases)
        for sku_id, share in zip(covered, shares, strict=True):
            remaining[sku_id] -= share
        applied.append(
            Applied(offer, off, free, tuple((s, c) for s, c in zip(covered, shares, strict=True)))
        )
    line_discounts = {ln.sku_id: ln.total_cents - remaining[ln.sku_id] for ln in ordered}
    return Priced(ordered, tuple(applied), tuple(skipped), line_discounts)


def combinable(coupons: Sequence[Offer]) -> bool:
    """May these coupons go on one order together (see the module docstring)?"""
    if len(coupons) <= 1:
        return True
    campaigns = [c.campaign_id for c in coupons if c.campaign_id is not None]
    return all(c.stacks for c in coupons) and len(campaigns) == len(set(campaigns))


def with_coupons(
    lines: Sequence[PriceLine], promotions: Sequence[Offer], coupons: Sequence[Offer], now_ms: int
) -> Priced:
    """Price with these coupons and the promotions they combine with."""
    keep = all(c.with_promotions for c in coupons)
    return evaluate(lines, [*(promotions if keep else ()), *coupons], now_ms)


def _rank(priced: Priced, coupons: Sequence[Offer]) -> tuple[Any, ...]:
    used = sorted(c.ref for c in coupons)
    return (-priced.discount_cents, not priced.free_shipping, len(used), used)


def best(
    lines: Sequence[PriceLine], promotions: Sequence[Offer], coupons: Sequence[Offer], now_ms: int
) -> Priced:
    """The customer's best valid combination (see the module docstring), with every offer
    left out explained in ``skipped``."""
    alone = {c.ref: with_coupons(lines, promotions, [c], now_ms) for c in coupons}
    # a coupon can apply in some combination only if it applies on its own without the
    # promotions: any other offer only lowers the amounts it sees
    usable = [c for c in coupons if evaluate(lines, [c], now_ms).coupons]
    candidates: list[tuple[Offer, ...]] = [(), *((c,) for c in usable)]
    stacking = [c for c in usable if c.stacks]
    if len(stacking) > MAX_STACK_SEARCH:
        stacking = sorted(stacking, key=lambda c: (-alone[c.ref].discount_cents, c.ref))
        stacking = stacking[:MAX_STACK_SEARCH]
    for size in range(2, len(stacking) + 1):
        candidates.extend(s for s in combinations(stacking, size) if combinable(s))
    choice, priced = min(
        ((s, with_coupons(lines, promotions, s, now_ms)) for s in candidates),
        key=lambda sp: _rank(sp[1], sp[0]),
    )
    return _explain(priced, promotions, coupons, alone)


def _explain(
    priced: Priced, promotions: Sequence[Offer], coupons: Sequence[Offer], alone: dict[int, Priced]
) -> Priced:
    """``priced`` with a reason for every promotion and coupon not applied."""
    shown = {a.offer.id for a in priced.applied}
    reasons = dict(priced.skipped)
    chosen = priced.coupons
    skipped: list[tuple[str, str]] = []
    for p in sorted(promotions, key=lambda o: o.ref):
        if p.id not in shown:
            skipped.append((p.id, reasons.get(p.id, REPLACED)))
    for c in sorted(coupons, key=lambda o: o.ref):
        if c.id in shown:
            continue
        own = dict(alone[c.ref].skipped).get(c.id) if c.ref in alone else None
        if own is None:
            own = NOT_COMBINABLE if chosen and not combinable([*chosen, c]) else NOT_BEST
        skipped.append((c.id, own))
    return Priced(priced.lines, priced.applied, tuple(skipped), priced.line_discounts)


_REFUSALS: dict[str, type[CouponRefused]] = {
    NOT_YET_VALID: CouponNotYetValid,
    EXPIRED: CouponExpired,
    OUT_OF_SCOPE: CouponOutOfScope,
    BELOW_THRESHOLD: CouponBelowThreshold,
    NO_SAVING: CouponOutOfScope,
}


def check_named(
    lines: Sequence[PriceLine], promotions: Sequence[Offer], coupons: Sequence[Offer], now_ms: int
) -> Priced:
    """Price with the coupons the customer named: every one must apply, or the refusal
    says why (``coupon_not_combinable``, ``coupon_expired``, ``coupon_not_yet_valid``,
    ``coupon_out_of_scope``, ``coupon_below_threshold``)."""
    if not combinable(coupons):
        raise CouponNotCombinable(
            "these coupons cannot be used together",
            details={"coupon_ids": [str(c.ref) for c in coupons]},
        )
    priced = with_coupons(lines, promotions, coupons, now_ms)
    reasons = dict(priced.skipped)
    for c in sorted(coupons, key=lambda o: o.ref):
        why = reasons.get(c.id)
        if why is None:
            continue
        details: dict[str, Any] = {"coupon_id": str(c.ref)}
        if why == NOT_YET_VALID:
            details["valid_from_ms"] = c.starts_ms
        elif why == EXPIRED:
            details["valid_until_ms"] = c.ends_ms
        elif why == BELOW_THRESHOLD:
            rule = c.rule
            details["min_spend_cents"] = (
                rule.tiers[0][0] if rule.kind == TIERS else rule.min_spend_cents
            )
        raise _REFUSALS[why](
            f"coupon {c.ref} cannot be used: {why.replace('_', ' ')}", details=details
        )
    return priced
