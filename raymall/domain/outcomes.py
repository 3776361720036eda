"""What an inventory shard's result code means to a caller: the one table from a code to
its domain error (``raymall.errors``).

A code's meaning depends on what it answers, so the table is keyed by (area, code):

    area    answers                                   a code not in the table
    STOCK   Reserve, Release, Confirm, Adjust, ...    Conflict "inventory refused ..."
            (and FlashReturn's ``confirmed``)
    BUY     a FlashBuy (``BuyResult.code``)           Unavailable "could not be decided"
    UNREAD  a FlashBuy answered by a bare code        ValidationFailed "was refused"
            (the shard could not read it)
    END     a FlashEnd                                Unavailable "could not be ended"
    CLAIM   a CouponClaim (``ClaimResult.code``)      Unavailable "could not be decided"

``ok`` and ``skipped`` are no error (``raise_for`` passes them; ``error_for`` is asked only
for a refusal). Callers pass what they know of the operation as
details (``key``, ``sku_ids``, ``per_user_limit``, ``order_id``, ``sale_id``, ...): the
message is formatted with them, and the error carries those its row names (a STOCK row
carries every detail given; ``state`` rows add ``"state": code``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from raymall.errors import (
    CampaignInactive,
    CampaignNotFound,
    ClaimEnded,
    ClaimNotStarted,
    Conflict,
    CouponLimitReached,
    CouponsSoldOut,
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

STOCK, BUY, UNREAD, END, CLAIM = "stock", "buy", "unread", "end", "claim"
ANY = "*"  # a code the area has no row for
PASS = frozenset({"ok", "skipped"})


class Outcome(NamedTuple):
    error: type[DomainError]
    message: str  # formatted with ``code`` and the details given
    carries: tuple[str, ...] | None = None  # the details the error keeps (None: all given)
    state: bool = False  # the details also say ``"state": code``


OUTCOMES: dict[tuple[str, str], Outcome] = {
    (STOCK, "out_of_stock"): Outcome(OutOfStock, "not enough stock"),
    (STOCK, "unknown_sku"): Outcome(NotFound, "unknown SKU"),
    (STOCK, "not_found"): Outcome(NotFound, "no reservation under this key"),
    (STOCK, "key_reused"): Outcome(
        IdempotencyMismatch, "this key was used for a different operation"
    ),
    (STOCK, "released"): Outcome(InvalidTransition, "the reservation is {code}", state=True),
    (STOCK, "confirmed"): Outcome(InvalidTransition, "the reservation is {code}", state=True),
    (STOCK, "rejected"): Outcome(InvalidTransition, "the reservation is {code}", state=True),
    (STOCK, "invalid"): Outcome(ValidationFailed, "invalid inventory operation"),
    (STOCK, ANY): Outcome(Conflict, "inventory refused the operation ({code})"),
    (BUY, "sold_out"): Outcome(SoldOut, "sold out", ()),
    (BUY, "limit_reached"): Outcome(
        LimitExceeded, "at most {per_user_limit} per customer", ("per_user_limit",)
    ),
    (BUY, "not_started"): Outcome(SaleNotStarted, "the sale has not started", ("starts_at_ms",)),
    (BUY, "ended"): Outcome(SaleEnded, "the sale has ended", ("ends_at_ms",)),
    (BUY, "key_reused"): Outcome(
        IdempotencyMismatch,
        "this Idempotency-Key was used for a different purchase",
        ("order_id",),
    ),
    (BUY, "unknown_sale"): Outcome(NotFound, "flash sale {sale_id} not found", ()),
    (BUY, ANY): Outcome(Unavailable, "the purchase could not be decided ({code})", ()),
    (UNREAD, ANY): Outcome(ValidationFailed, "the purchase was refused ({code})", ()),
    (END, ANY): Outcome(Unavailable, "the sale could not be ended ({code})", ()),
    (CLAIM, "unknown_campaign"): Outcome(
        CampaignNotFound, "coupon campaign {campaign_id} not found", ("campaign_id",)
    ),
    (CLAIM, "inactive"): Outcome(CampaignInactive, "the campaign is not active", ()),
    (CLAIM, "not_started"): Outcome(
        ClaimNotStarted, "claims open at {claim_starts_at_ms}", ("claim_starts_at_ms",)
    ),
    (CLAIM, "ended"): Outcome(ClaimEnded, "the claim window has closed", ("claim_ends_at_ms",)),
    (CLAIM, "limit_reached"): Outcome(
        CouponLimitReached, "at most {per_user_limit} per customer", ("per_user_limit",)
    ),
    (CLAIM, "sold_out"): Outcome(CouponsSoldOut, "every coupon has been claimed", ()),
    (CLAIM, ANY): Outcome(Unavailable, "the claim could not be decided ({code})", ()),
}


def error_for(code: str, area: str = STOCK, **details: Any) -> DomainError:
    """The error that the refusal ``code`` stands for in ``area``."""
    row = OUTCOMES.get((area, code)) or OUTCOMES[(area, ANY)]
    message = row.message.format(code=code, **details) if "{" in row.message else row.message
    if row.carries is None:
        kept = dict(details)
    else:
        kept = {name: details[name] for name in row.carries if name in details}
    if row.state:
        kept["state"] = code
    return row.error(message, details=kept)


def raise_for(code: str, *, key: str, skus: Iterable[int] = ()) -> None:
    """Raise what a stock operation's ``code`` stands for (``ok``/``skipped`` pass); the
    error names the operation's ``key`` and, when given, its SKUs."""
    if code in PASS:
        return
    sku_ids = sorted(skus)
    if sku_ids:
        raise error_for(code, key=key, sku_ids=sku_ids)
    raise error_for(code, key=key)
