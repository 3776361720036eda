"""The flash-sale desk of one inventory shard: plain Python, no I/O.

It decides flash purchases in arrival order inside the shard's group commit, next to the
stock ledger. Each sale's quantity is a ledger reservation (the *hold*, key
``flash:{sale}@{shard}``); a purchase moves units from the hold into a reservation of its
own (``order:{order}@{shard}``, the key the order flow confirms on payment), so stock
counters never change on the hot path and conservation holds as for any reservation.

Guarantees (tests/unit/test_flash_desk.py):

- the per-user limit is exact: a purchase is refused when the user's live units in the sale
  (purchases not given back) plus the request would exceed ``per_user_limit``;
- idempotent by ``(sale, user, key)``: a replay answers the first purchase (same order id)
  with no second effect. Without a client key the key is ``n{k}``, ``k`` = the user's
  purchase records in the sale + 1, so a keyless request is always a new attempt;
- the hold never goes negative: a sale sells out exactly at its quantity;
- ``give_back`` (an unpaid order timed out or was cancelled) returns the units to the hold
  while the sale runs, else to normal stock, and frees the user's slot;
- batches are atomic in memory: ``begin``/``rollback`` restore the state, ``changes`` lists
  what persistence must write in the same transaction as the ledger's changes;
- **sold-out leases**: an answer that leaves a live sale with nothing left carries a lease
  of ``lease_ms`` and the sale's number of purchase records. A replica that sent the
  request at ``t`` may refuse purchases of the sale on its own until ``t + lease_ms`` and
  answer retries of earlier purchases from a snapshot of those records: the desk sells
  nothing of the sale until every lease it granted has lapsed. Units given back while a
  lease runs are held until it ends (buyers meanwhile get ``sold_out`` with no lease); a
  desk that loads a sale (first use, restart, reload) treats leases it cannot know as
  running for one more ``lease_ms``, and if the sale has had units given back, holds its
  units that long too. Durations are measured on each side's monotonic clock from the
  request's sending (replica) and the answer's making (desk), so the replica's lease ends
  first without synchronized clocks.

``apply`` takes the flash operations of ``raymall.domain.shard_ops``, dispatched on their
type: ``FlashBuy`` answers a ``BuyResult`` (or ``invalid``), ``FlashReturn``, ``FlashEnd``
and ``FlashWarm`` (load the sale before it starts; no effect) a code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raymall.domain.ledger import Ledger
from raymall.domain.sale import Sale
from raymall.domain.shard_ops import BuyResult, FlashBuy, FlashEnd, FlashReturn, FlashWarm
from raymall.domain.stock import R_INVALID, R_OK, R_RELEASED, RESERVED

# flash_buy outcomes (besides "ok")
SOLD_OUT = "sold_out"
LIMIT = "limit_reached"
NOT_STARTED = "not_started"
ENDED = "ended"
KEY_REUSED = "key_reused"
UNKNOWN_SALE = "unknown_sale"
NOT_FOUND = "not_found"

LIVE = "reserved"
RETURNED = "returned"


@dataclass
class Purchase:
    order_id: int
    user_id: int
    key: str
    qty: int
    expires_ms: int
    created_ms: int
    state: str = LIVE


@dataclass
class SaleBook:
    info: Sale
    by_key: dict[tuple[int, str], Purchase] = field(default_factory=dict)
    by_order: dict[int, Purchase] = field(default_factory=dict)
    live: dict[int, int] = field(default_factory=dict)  # user -> units not given back
    records: dict[int, int] = field(default_factory=dict)  # user -> purchase records
    lease_until: float = 0.0  # (desk clock) the last sold-out lease granted ends here
    resume_at: float = 0.0  # (desk clock) units given back during a lease sell from here

    def add(self, p: Purchase) -> None:
        self.by_key[(p.user_id, p.key)] = p
        self.by_order[p.order_id] = p
        self.records[p.user_id] = self.records.get(p.user_id, 0) + 1
        if p.state == LIVE:
            self.live[p.user_id] = self.live.get(p.user_id, 0) + p.qty

    def remove(self, p: Purchase) -> None:
        del self.by_key[(p.user_id, p.key)]
        del self.by_order[p.order_id]
        self.records[p.user_id] -= 1
        if p.state == LIVE:
            self.live[p.user_id] -= p.qty


@dataclass
class FlashChanges:
    """What one batch changed, for persistence."""

    purchases: list[tuple[Sale, Purchase, int]] = field(default_factory=list)  # +order shard
    returned: list[Purchase] = field(default_factory=list)
    sales: dict[int, Sale] = field(default_factory=dict)  # sold / end changed

    def __bool__(self) -> bool:
        return bool(self.purchases or self.returned or self.sales)


class FlashDesk:
    """Flash-sale state of one shard; ``ledger`` is the shard's stock ledger."""

    def __init__(
        self,
        ledger: Ledger,
        shard: int,
        *,
        next_id: Callable[[], int],
        order_shard_of: Callable[[int], int],
        order_timeout_ms: int,
        lease_ms: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.shard = shard
        self.next_id = next_id
        self.order_shard_of = order_shard_of
        self.order_timeout_ms = order_timeout_ms
        self.lease_ms = max(0, int(lease_ms))
        self.clock = clock
        self.books: dict[int, SaleBook] = {}
        self.now = 0
        self._undo: list[Callable[[], None]] | None = None
        self._changes = FlashChanges()
        # open batches, oldest first (see Ledger.begin: they stack the same way)
        self._segments: list[tuple[list[Callable[[], None]], FlashChanges]] = []
        self._handlers: dict[type[Any], Callable[..., Any]] = {
            FlashBuy: self.buy,
            FlashReturn: self.give_back,
            FlashEnd: self.end,
            FlashWarm: self.warm,
        }

    # ---- loading -----------------------------------------------------------------------
    def load(self, info: Sale, purchases: list[Purchase]) -> None:
        if info.id in self.books:
            return
        book = SaleBook(info)
        for p in purchases:
            book.add(p)
        # leases granted before this desk existed (a restart) may still run
        book.lease_until = self.clock() + self.lease_ms / 1000
        if any(p.state == RETURNED for p in purchases):  # units may have come back under one
            book.resume_at = book.lease_until
        self.books[info.id] = book

    # ---- batches -----------------------------------------------------------------------
    def begin(self, now_ms: int) -> None:
        """Open a batch, on top of any still open; commit oldest first, roll back newest
        first (as ``Ledger``)."""
        self.now = now_ms
        self._undo, self._changes = [], FlashChanges()
        self._segments.append((self._undo, self._changes))

    def changes(self) -> FlashChanges:
        return self._changes

    def _top(self) -> None:
        if self._segments:
            self._undo, self._changes = self._segments[-1]
        else:
            self._undo, self._changes = None, FlashChanges()

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

    def apply(self, op: Any) -> BuyResult | str:
        """Apply one flash operation of ``raymall.domain.shard_ops`` (dispatched on its
        type); anything else, or fields of the wrong kind, answers ``invalid``."""
        handler = self._handlers.get(type(op))
        if handler is None:
            return R_INVALID
        try:
            return handler(*op)  # type: ignore[no-any-return]
        except (TypeError, ValueError, IndexError):
            return R_INVALID

    # ---- operations --------------------------------------------------------------------
    def remaining(self, hold_key: str, sku_id: int) -> int:
        rec = self.ledger.records.get(hold_key)
        if rec is None or rec.state != RESERVED:
            return 0
        return rec.items.get(sku_id, 0)

    def buy(
        self, hold_key: str, sale_id: int, user_id: int, key: str | None, qty: int
    ) -> BuyResult | str:
        book = self.books.get(sale_id)
        if book is None:
            return BuyResult(UNKNOWN_SALE, None, None, False, 0, 0, 0)
        if type(user_id) is not int or type(qty) is not int or qty <= 0:
            return R_INVALID
        code, order_id, expires_ms, replayed, left = self._buy(book, hold_key, user_id, key, qty)
        lease_ms = 0
        if left == 0 and code not in (ENDED, UNKNOWN_SALE) and self.lease_ms:
            book.lease_until = max(book.lease_until, self.clock() + self.lease_ms / 1000)
            lease_ms = self.lease_ms
        return BuyResult(code, order_id, expires_ms, replayed, left, lease_ms, len(book.by_key))

    def _buy(
        self, book: SaleBook, hold_key: str, user_id: int, key: str | None, qty: int
    ) -> tuple[str, int | None, int | None, bool, int]:
        info = book.info
        if key is None:
            key = f"n{book.records.get(user_id, 0) + 1}"
        first = book.by_key.get((user_id, key))
        left = self.remaining(hold_key, info.sku_id)
        if first is not None:
            if first.qty != qty:
                return (KEY_REUSED, first.order_id, None, True, left)
            return (R_OK, first.order_id, first.expires_ms, True, left)
        if self.now < info.starts_ms:
            return (NOT_STARTED, None, None, False, left)
        if info.ended or self.now >= info.ends_ms:
            return (ENDED, None, None, False, 0)
        if book.live.get(user_id, 0) + qty > info.per_user_limit:
            return (LIMIT, None, None, False, left)
        if left < qty:
            rec = self.ledger.records.get(hold_key)
            if rec is None:  # the event's row is written, its quantity not set aside yet
                return (UNKNOWN_SALE, None, None, False, left)
            code = SOLD_OUT if rec.state == RESERVED else ENDED
            return (code, None, None, False, left)
        if self.clock() < book.resume_at:  # given back under a lease: held until it ends
            return (SOLD_OUT, None, None, False, left)
        order_shard = self.order_shard_of(user_id)  # before any change: it may raise
        order_id = self.next_id()
        code = self.ledger.transfer(hold_key, f"order:{order_id}@{self.shard}", info.sku_id, qty)
        if code != R_OK:  # the checks above make this unreachable; refuse, never oversell
            return (SOLD_OUT, None, None, False, left)
        timeout_ms = info.payment_timeout_ms or self.order_timeout_ms
        p = Purchase(order_id, user_id, key, qty, self.now + timeout_ms, self.now)
        book.add(p)
        info.sold += qty
        self._log(lambda: _unbuy(book, p))
        self._changes.purchases.append((info, p, order_shard))
        self._changes.sales[info.id] = info
        return (R_OK, order_id, p.expires_ms, False, left - qty)

    def warm(self, hold_key: str, sale_id: int) -> str:
        """Nothing to do: the shard loaded the sale before this batch (``unknown_sale`` if
        there is none)."""
        return R_OK if sale_id in self.books else UNKNOWN_SALE

    def give_back(self, res_key: str, hold_key: str, sale_id: int, order_id: int) -> str:
        """An unpaid order is cancelled: its units go back (see the module docstring)."""
        book = self.books.get(sale_id)
        if book is None:
            return UNKNOWN_SALE
        p = book.by_order.get(order_id)
        if p is None:
            return NOT_FOUND
        code = self.ledger.give_back(res_key, hold_key)
        if code == R_OK:  # back in the hold: sellable once every sold-out lease has lapsed
            book.resume_at = max(book.resume_at, book.lease_until)
        if code in (R_OK, R_RELEASED):
            if p.state == LIVE:
                p.state = RETURNED
                book.live[p.user_id] -= p.qty
                book.info.sold -= p.qty
                self._log(lambda: _unreturn(book, p))
                self._changes.returned.append(p)
                self._changes.sales[sale_id] = book.info
            return R_OK
        return code

    def end(self, hold_key: str, sale_id: int) -> str:
        """End a sale now: the rest of the hold goes back to normal stock."""
        book = self.books.get(sale_id)
        if book is None:
            return UNKNOWN_SALE
        info = book.info
        self.ledger.release(hold_key)
        if not info.ended:
            before = info.ends_ms
            info.ended = True
            info.ends_ms = min(info.ends_ms, self.now)
            self._log(lambda: _unend(info, before))
            self._changes.sales[sale_id] = info
        return R_OK


def _unbuy(book: SaleBook, p: Purchase) -> None:
    book.remove(p)
    book.info.sold -= p.qty


def _unreturn(book: SaleBook, p: Purchase) -> None:
    p.state = LIVE
    book.live[p.user_id] += p.qty
    book.info.sold += p.qty


def _unend(info: Sale, ends_ms: int) -> None:
    info.ended = False
    info.ends_ms = ends_ms
