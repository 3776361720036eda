"""Coupon campaigns and the life of a coupon: plain Python, no I/O.

A *campaign* hands out at most ``total`` coupons, at most ``per_user_limit`` to one
customer, between ``claim_starts_ms`` and ``claim_ends_ms`` while it is active. The
inventory shard that owns the campaign (``shard_for(campaign id)``) decides every claim
(``raymall.domain.coupon_desk``); replicas keep a copy to refuse before the window opens
or after it closes. A claimed coupon is valid in a fixed window
(``valid_from_ms``..``valid_until_ms``) or for ``valid_days`` from its claim.

A coupon's life (every move a compare-and-set on ``user_coupons.state``, DESIGN
invariant 8; the move table below is the only one)::

    available ──lock (order placed, same transaction)──▶ locked ──use (order paid)──▶ used
        ▲  ▲                                               │                          │
        │  └──────────return (order cancelled or timed out)┘                          │
        └──────────────restore (the paid order cancelled by its customer, refunded)───┘
    available ──(its validity ends)──▶ expired   (read as such; no write needed)

A locked coupon names its order (``order_id``); only that order's transitions move it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raymall.domain.promotions import COUPON, Offer, Rule, Scope

AVAILABLE, LOCKED, USED, EXPIRED = "available", "locked", "used", "expired"
STATES = (AVAILABLE, LOCKED, USED, EXPIRED)

# move -> (from, to, outbox topic)
LOCK, USE, RETURN, RESTORE = "lock", "use", "return", "restore"
MOVES: dict[str, tuple[str, str, str | None]] = {
    LOCK: (AVAILABLE, LOCKED, None),
    USE: (LOCKED, USED, "coupon.used"),
    RETURN: (LOCKED, AVAILABLE, "coupon.returned"),
    RESTORE: (USED, AVAILABLE, "coupon.returned"),
}
CLAIMED_TOPIC = "coupon.claimed"
DAY_MS = 86_400_000


def state_at(stored: str, valid_until_ms: int, now_ms: int) -> str:
    """The state a customer sees: an available coupon past its validity is expired."""
    return EXPIRED if stored == AVAILABLE and now_ms >= valid_until_ms else stored


@dataclass(slots=True)
class Campaign:
    id: int
    title: str
    rule: Rule
    scope: Scope
    total: int
    per_user_limit: int
    claim_starts_ms: int
    claim_ends_ms: int
    active: bool = True
    claimed: int = 0
    valid_from_ms: int | None = None  # fixed validity window ...
    valid_until_ms: int | None = None
    valid_days: int | None = None  # ... or this many days from the claim
    code: str | None = None  # a public code redeems a coupon (POST /me/coupons/redeem)
    stacks: bool = False
    with_promotions: bool = True
    flash_ok: bool = False
    used: int = 0  # statistics (replicas' reads; the desk does not keep them)

    def remaining(self) -> int:
        return max(0, self.total - self.claimed)

    def validity(self, claimed_ms: int) -> tuple[int, int]:
        """(valid from, valid until) of a coupon claimed at ``claimed_ms``."""
        if self.valid_days is not None:
            return claimed_ms, claimed_ms + self.valid_days * DAY_MS
        start = self.valid_from_ms if self.valid_from_ms is not None else claimed_ms
        return start, self.valid_until_ms if self.valid_until_ms is not None else 2**62

    def status(self, now_ms: int) -> str:
        if not self.active:
            return "inactive"
        if now_ms >= self.claim_ends_ms:
            return "ended"
        if now_ms < self.claim_starts_ms:
            return "scheduled"
        return "sold_out" if self.remaining() == 0 else "claiming"

    def offer(self, coupon_id: int, valid_from_ms: int, valid_until_ms: int) -> Offer:
        """One of the campaign's coupons as pricing sees it."""
        return Offer(
            kind=COUPON,
            ref=coupon_id,
            rule=self.rule,
            scope=self.scope,
            starts_ms=valid_from_ms,
            ends_ms=valid_until_ms,
            title=self.title,
            campaign_id=self.id,
            stacks=self.stacks,
            with_promotions=self.with_promotions,
            flash_ok=self.flash_ok,
        )

    def view(self, now_ms: int, *, admin: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "rule": self.rule.as_dict(),
            "scope": self.scope.as_dict(),
            "total": self.total,
            "claimed": self.claimed,
            "remaining": self.remaining(),
            "per_user_limit": self.per_user_limit,
            "claim_starts_at_ms": self.claim_starts_ms,
            "claim_ends_at_ms": self.claim_ends_ms,
            "valid_from_ms": self.valid_from_ms,
            "valid_until_ms": self.valid_until_ms,
            "valid_days": self.valid_days,
            "stacks": self.stacks,
            "with_promotions": self.with_promotions,
            "flash_ok": self.flash_ok,
            "status": self.status(now_ms),
        }
        if admin:
            out["active"] = self.active
            out["code"] = self.code
            out["used"] = self.used
        return out
