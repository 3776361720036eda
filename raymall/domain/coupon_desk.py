"""The coupon desk of one inventory shard: plain Python, no I/O.

It decides the claims of the coupon campaigns its shard owns (``shard_for(campaign id)``),
in arrival order inside the shard's group commit, beside the stock ledger and the flash
desk: the same shard core for every limited quantity (DESIGN). Guarantees
(tests/unit/test_coupon_desk.py):

- **never more than the total**: a campaign's claims never exceed ``total``;
- **the per-user limit is exact**: a claim is refused when the user already holds
  ``per_user_limit`` claims of the campaign (used and expired coupons count: a claim is
  never given back);
- **idempotent by (campaign, user, key)**: a replay answers the first claim (same coupon)
  with no second effect, even once the campaign has sold out or ended;
- refusals in this order: ``unknown_campaign``, a replay, ``inactive``, ``not_started``,
  ``ended``, ``limit_reached``, ``sold_out``;
- batches are atomic in memory: ``begin``/``commit``/``rollback`` stack as the ledger's
  do, and ``changes`` lists what persistence writes in the batch's one transaction (the
  coupon rows, their ``coupon.claimed`` events and the campaign's counters), so a claim is
  durable before it is answered;
- **sold-out leases**, as the flash desk's (``raymall.domain.flash_desk``): an answer that
  leaves an open campaign with nothing left carries a lease of ``lease_ms`` and the
  campaign's number of claims. A replica may answer ``sold_out`` on its own until the lease
  ends; the desk hands out nothing of the campaign before every lease it granted has
  lapsed (coupons only come back when an administrator raises the total, and then only
  after the leases end). A desk that loads a campaign treats leases it cannot know as
  running for one more ``lease_ms``.

``apply`` takes ``CouponClaim`` (answers a ``ClaimResult``), ``CouponUpdate`` and
``CouponWarm`` (codes) of ``raymall.domain.shard_ops``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raymall.domain.coupons import Campaign
from raymall.domain.shard_ops import ClaimResult, CouponClaim, CouponUpdate, CouponWarm
from raymall.domain.stock import R_INVALID, R_OK

UNKNOWN_CAMPAIGN = "unknown_campaign"
INACTIVE = "inactive"
NOT_STARTED = "not_started"
ENDED = "ended"
LIMIT = "limit_reached"
SOLD_OUT = "sold_out"


@dataclass(slots=True)
class Claim:
    coupon_id: int
    user_id: int
    key: str
    valid_from_ms: int
    valid_until_ms: int
    created_ms: int


@dataclass
class CampaignBook:
    info: Campaign
    by_key: dict[tuple[int, str], Claim] = field(default_factory=dict)
    per_user: dict[int, int] = field(default_factory=dict)
    lease_until: float = 0.0  # (desk clock) the last sold-out lease granted ends here
    resume_at: float = 0.0  # (desk clock) coupons added during a lease go out from here

    def add(self, c: Claim) -> None:
        self.by_key[(c.user_id, c.key)] = c
        self.per_user[c.user_id] = self.per_user.get(c.user_id, 0) + 1

    def remove(self, c: Claim) -> None:
        del self.by_key[(c.user_id, c.key)]
        self.per_user[c.user_id] -= 1


@dataclass
class CouponChanges:
    """What one batch changed, for persistence."""

    claims: list[tuple[Campaign, Claim]] = field(default_factory=list)
    campaigns: dict[int, Campaign] = field(default_factory=dict)  # counters or limits changed

    def __bool__(self) -> bool:
        return bool(self.claims or self.campaigns)


class CouponDesk:
    """Coupon campaigns of one shard (see the module docstring)."""

    def __init__(
        self,
        *,
        next_id: Callable[[], int],
        lease_ms: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.next_id = next_id
        self.lease_ms = max(0, int(lease_ms))
        self.clock = clock
        self.books: dict[int, CampaignBook] = {}
        self.now = 0
        self._undo: list[Callable[[], None]] | None = None
        self._changes = CouponChanges()
        self._segments: list[tuple[list[Callable[[], None]], CouponChanges]] = []
        self._handlers: dict[type[Any], Callable[..., Any]] = {
            CouponClaim: self.claim,
            CouponUpdate: self.update,
            CouponWarm: self.warm,
        }

    # ---- loading -----------------------------------------------------------------------
    def load(self, info: Campaign, claims: list[Claim]) -> None:
        """Hold a campaign read from the database (never replaces one held: memory may be
        newer than any read)."""
        if info.id in self.books:
            return
        book = CampaignBook(info)
        for c in claims:
            book.add(c)
        # leases granted before this desk existed (a restart) may still run: coupons added
        # from now on wait for them (``update``)
        book.lease_until = self.clock() + self.lease_ms / 1000
        self.books[info.id] = book

    # ---- batches (as FlashDesk) -----------------------------------------------------------
    def begin(self, now_ms: int) -> None:
        self.now = now_ms
        self._undo, self._changes = [], CouponChanges()
        self._segments.append((self._undo, self._changes))

    def changes(self) -> CouponChanges:
        return self._changes

    def _top(self) -> None:
        if self._segments:
            self._undo, self._changes = self._segments[-1]
        else:
            self._undo, self._changes = None, CouponChanges()

    def commit(self) -> None:
        if self._segments:
            self._segments.pop(0)
        self._top()

    def rollback(self) -> None:
        undo_log = self._segments.pop()[0] if self._segments else []
        for undo in reversed(undo_log):
            undo()
        self._top()

    def _log(self, undo: Callable[[], None]) -> None:
        if self._undo is not None:
            self._undo.append(undo)

    def apply(self, op: Any) -> ClaimResult | str:
        """Apply one coupon operation (dispatched on its type); anything else, or fields
        of the wrong kind, answers ``invalid``."""
        handler = self._handlers.get(type(op))
        if handler is None:
            return R_INVALID
        try:
            return handler(*op)  # type: ignore[no-any-return]
        except (TypeError, ValueError, IndexError):
            return R_INVALID

    # ---- operations --------------------------------------------------------------------
    def claim(self, campaign_id: int, user_id: int, key: str) -> ClaimResult | str:
        book = self.books.get(campaign_id)
        if book is None:
            return ClaimResult(UNKNOWN_CAMPAIGN, None, False, 0, 0, 0, None, None)
        if type(user_id) is not int or not isinstance(key, str) or not key:
            return R_INVALID
        code, claim, replayed = self._claim(book, user_id, key)
        left = book.info.remaining()
        lease_ms = 0
        if left == 0 and code not in (ENDED, INACTIVE) and self.lease_ms:
            book.lease_until = max(book.lease_until, self.clock() + self.lease_ms / 1000)
            lease_ms = self.lease_ms
        return ClaimResult(
            code,
            claim.coupon_id if claim else None,
            replayed,
            left,
            lease_ms,
            len(book.by_key),
            claim.valid_from_ms if claim else None,
            claim.valid_until_ms if claim else None,
        )

    def _claim(self, book: CampaignBook, user_id: int, key: str) -> tuple[str, Claim | None, bool]:
        info = book.info
        first = book.by_key.get((user_id, key))
        if first is not None:
            return R_OK, first, True
        if not info.active:
            return INACTIVE, None, False
        if self.now < info.claim_starts_ms:
            return NOT_STARTED, None, False
        if self.now >= info.claim_ends_ms:
            return ENDED, None, False
        if book.per_user.get(user_id, 0) >= info.per_user_limit:
            return LIMIT, None, False
        if info.remaining() <= 0 or self.clock() < book.resume_at:
            return SOLD_OUT, None, False
        valid_from, valid_until = info.validity(self.now)
        claim = Claim(self.next_id(), user_id, key, valid_from, valid_until, self.now)
        book.add(claim)
        info.claimed += 1
        self._log(lambda: _unclaim(book, claim))
        self._changes.claims.append((info, claim))
        self._changes.campaigns[info.id] = info
        return R_OK, claim, False

    def update(
        self,
        campaign_id: int,
        total: int,
        per_user_limit: int,
        claim_starts_ms: int,
        claim_ends_ms: int,
        active: bool,
    ) -> str:
        """Set the owner-decided fields; a total below the claims so far is ``invalid``."""
        book = self.books.get(campaign_id)
        if book is None:
            return UNKNOWN_CAMPAIGN
        info = book.info
        ints = (total, per_user_limit, claim_starts_ms, claim_ends_ms)
        if any(type(v) is not int for v in ints) or type(active) is not bool:
            return R_INVALID
        if total < info.claimed or per_user_limit < 1 or claim_ends_ms <= claim_starts_ms:
            return R_INVALID
        before = (info.total, info.per_user_limit, info.claim_starts_ms, info.claim_ends_ms)
        was_active = info.active
        if total > info.total:  # new coupons wait for every sold-out lease to lapse
            book.resume_at = max(book.resume_at, book.lease_until)
        info.total, info.per_user_limit = total, per_user_limit
        info.claim_starts_ms, info.claim_ends_ms, info.active = (
            claim_starts_ms,
            claim_ends_ms,
            active,
        )
        self._log(lambda: _unupdate(info, before, was_active))
        self._changes.campaigns[info.id] = info
        return R_OK

    def warm(self, campaign_id: int) -> str:
        """Nothing to do: the shard loaded the campaign before this batch."""
        return R_OK if campaign_id in self.books else UNKNOWN_CAMPAIGN


def _unclaim(book: CampaignBook, claim: Claim) -> None:
    book.remove(claim)
    book.info.claimed -= 1


def _unupdate(info: Campaign, before: tuple[int, int, int, int], active: bool) -> None:
    info.total, info.per_user_limit, info.claim_starts_ms, info.claim_ends_ms = before
    info.active = active
