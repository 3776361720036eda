"""The inventory shard's protocol: one named type per operation, one per structured answer.

A shard decides a batch of operations in arrival order and answers one result per
operation: a result code (``raymall.domain.ledger``'s ``R_*`` and the flash desk's codes),
or, for a flash purchase, a ``BuyResult``. Callers build these types and read results by
name; how they travel between processes (``actors.wire``) is the actors' business.

    operation                                                    answers
    Reserve(key, items {sku: qty}, expires_ms | None)            code
    Release(key)                                                 code
    Confirm(key)                                                 code
    Adjust(key, sku_id, delta, reason, actor_id | None)          code
    Expire(key, now_ms)              the shard's sweeper         code ("skipped" if not due)
    Transfer(src, dst, sku_id, qty, expires_ms | None)           code
    GiveBack(key, into)              key's units back into into  code
    FlashBuy(hold_key, sale_id, user_id, key | None, qty)        BuyResult | code
    FlashReturn(reservation_key, hold_key, sale_id, order_id)    code
    FlashEnd(hold_key, sale_id)                                  code
    FlashWarm(hold_key, sale_id)     load the sale; no effect    code
    CouponClaim(campaign_id, user_id, key)                       ClaimResult | code
    CouponUpdate(campaign_id, total, per_user_limit,             code
                 claim_starts_ms, claim_ends_ms, active)
    CouponWarm(campaign_id)          load the campaign; no effect   code

A result is a code (str), a ``BuyResult`` or a ``ClaimResult``.
``Malformed`` stands for an operation that could not be read; every shard answers it
``invalid``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import Any, NamedTuple


class Reserve(NamedTuple):
    key: str
    items: dict[int, int]
    expires_ms: int | None = None


class Release(NamedTuple):
    key: str


class Confirm(NamedTuple):
    key: str


class Adjust(NamedTuple):
    key: str
    sku_id: int
    delta: int
    reason: str = ""
    actor_id: int | None = None


class Expire(NamedTuple):
    key: str
    now_ms: int


class Transfer(NamedTuple):
    src: str
    dst: str
    sku_id: int
    qty: int
    expires_ms: int | None = None


class GiveBack(NamedTuple):
    key: str
    into: str


class FlashBuy(NamedTuple):
    hold_key: str
    sale_id: int
    user_id: int
    key: str | None
    qty: int


class FlashReturn(NamedTuple):
    reservation_key: str
    hold_key: str
    sale_id: int
    order_id: int


class FlashEnd(NamedTuple):
    hold_key: str
    sale_id: int


class FlashWarm(NamedTuple):
    hold_key: str
    sale_id: int


class CouponClaim(NamedTuple):
    campaign_id: int
    user_id: int
    key: str


class CouponUpdate(NamedTuple):
    """The campaign's owner-decided fields, as an administrator set them."""

    campaign_id: int
    total: int
    per_user_limit: int
    claim_starts_ms: int
    claim_ends_ms: int
    active: bool


class CouponWarm(NamedTuple):
    campaign_id: int


class Malformed(NamedTuple):
    raw: Any


class BuyResult(NamedTuple):
    """The answer to a ``FlashBuy``. ``lease_ms`` > 0 grants a sold-out lease (see
    ``raymall.domain.flash_desk``) that runs from when the request was sent; ``records`` is
    the sale's number of purchase records when it was granted."""

    code: str
    order_id: int | None
    expires_ms: int | None
    replayed: bool
    remaining: int
    lease_ms: int
    records: int


class ClaimResult(NamedTuple):
    """The answer to a ``CouponClaim`` (``raymall.domain.coupon_desk``). ``lease_ms`` > 0
    grants a sold-out lease, as ``BuyResult``'s does; ``records`` is the campaign's number of
    claims then."""

    code: str
    coupon_id: int | None
    replayed: bool
    remaining: int
    lease_ms: int
    records: int
    valid_from_ms: int | None
    valid_until_ms: int | None


Op = (
    Reserve
    | Release
    | Confirm
    | Adjust
    | Expire
    | Transfer
    | GiveBack
    | FlashBuy
    | FlashReturn
    | FlashEnd
    | FlashWarm
    | CouponClaim
    | CouponUpdate
    | CouponWarm
    | Malformed
)
Result = str | BuyResult | ClaimResult

# the operation kinds by name (the wire tag, the metrics label)
KINDS: dict[str, type[Any]] = {
    "reserve": Reserve,
    "release": Release,
    "confirm": Confirm,
    "adjust": Adjust,
    "expire": Expire,
    "transfer": Transfer,
    "give_back": GiveBack,
    "flash_buy": FlashBuy,
    "flash_return": FlashReturn,
    "flash_end": FlashEnd,
    "flash_warm": FlashWarm,
    "coupon_claim": CouponClaim,
    "coupon_update": CouponUpdate,
    "coupon_warm": CouponWarm,
    "malformed": Malformed,
}
KIND_OF: dict[type[Any], str] = {cls: name for name, cls in KINDS.items()}
FLASH_OPS = (FlashBuy, FlashReturn, FlashEnd, FlashWarm)
COUPON_OPS = (CouponClaim, CouponUpdate, CouponWarm)


def kind_of(op: Any) -> str:
    """The kind of an operation (its wire tag and metrics label)."""
    return KIND_OF.get(type(op), "malformed")


def kinds_of(ops: Iterable[Any]) -> Iterator[str]:
    """``kind_of`` of each operation, with no Python call per operation."""
    return map(KIND_OF.get, map(type, ops), repeat("malformed"))


def result_code(result: Result) -> str:
    """The code of any result."""
    if isinstance(result, BuyResult | ClaimResult):
        return result.code
    return str(result)
