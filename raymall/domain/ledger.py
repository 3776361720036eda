"""The stock ledger of one inventory shard: plain Python, no I/O.

Per SKU it holds ``total``, ``available``, ``reserved`` and ``sold`` (``Stock``). Per key it
holds the record of the keyed operation that used it (``Record``): a reservation
(``reserved`` -> ``confirmed`` or ``released``, or ``rejected`` when refused) or an
adjustment (``applied`` or ``rejected``). That state, its undo log for batches, the
result codes and ``Changes`` live in ``raymall.domain.stock`` (``LedgerState``); this
module holds the rules.

Guarantees (tests/unit/test_ledger*.py check them as properties):

- conservation: ``total == available + reserved + sold`` for every SKU after every
  operation, and no column is ever negative;
- ``reserve`` is all or nothing across its SKUs;
- ``reserved`` is the sum of the open reservations and ``sold`` the sum of the confirmed
  ones (for stock whose whole history the ledger saw);
- idempotency: an operation whose key is already known changes nothing and answers the
  first result. One refinement: replaying a ``reserve`` whose reservation has since been
  released answers ``released``, never a stale ``ok``;
- batches are atomic in memory: ``begin()`` ... ``rollback()`` restores exactly the state
  before ``begin()``; ``changes()`` lists what a batch touched, for persistence.

``apply`` takes the operations of ``raymall.domain.shard_ops`` (``Reserve``, ``Release``,
``Confirm``, ``Adjust``, ``Expire``, ``Transfer``, ``GiveBack``), dispatched on their type;
each answers one result code (the ``R_*`` constants). Anything else answers ``invalid``.
A new operation kind is a type in ``shard_ops``, a method here and an entry in
``_handlers``: persistence follows from the undo log, which records every touched SKU and
key.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from raymall.domain.shard_ops import Adjust, Confirm, Expire, GiveBack, Release, Reserve, Transfer
from raymall.domain.stock import (
    ADJUST,
    APPLIED,
    CONFIRMED,
    R_CONFIRMED,
    R_INVALID,
    R_KEY_REUSED,
    R_NOT_FOUND,
    R_OK,
    R_OUT_OF_STOCK,
    R_REJECTED,
    R_RELEASED,
    R_SKIPPED,
    R_UNKNOWN_SKU,
    REJECTED,
    RELEASED,
    RESERVE,
    RESERVED,
    Adjustment,
    LedgerState,
    Record,
    valid_items,
)


class Ledger(LedgerState):
    """One shard's stock and key records, with an undo log for batch rollback."""

    def __init__(self) -> None:
        super().__init__()
        self._handlers: dict[type[Any], Callable[..., str]] = {
            Reserve: self.reserve,
            Release: self.release,
            Confirm: self.confirm,
            Adjust: self.adjust,
            Expire: self.expire,
            Transfer: self.transfer,
            GiveBack: self.give_back,
        }

    # ---- operations -----------------------------------------------------------------
    def apply(self, op: Any) -> str:
        """Apply one operation of ``raymall.domain.shard_ops``; anything else, or fields
        of the wrong kind, answers ``invalid``."""
        handler = self._handlers.get(type(op))
        if handler is None:
            return R_INVALID
        try:
            return handler(*op)
        except (KeyError, TypeError, IndexError):
            return R_INVALID

    def reserve(self, key: str, items: dict[int, int], expires_ms: int | None = None) -> str:
        if not isinstance(key, str) or not key or not valid_items(items):
            return R_INVALID
        rec = self.records.get(key)
        if rec is not None:
            if rec.kind != RESERVE or (rec.items and rec.items != items):
                return R_KEY_REUSED
            if rec.result != R_OK:
                return rec.result
            return R_RELEASED if rec.state == RELEASED else R_OK
        refusal = None
        for sku_id, qty in items.items():
            s = self.stock.get(sku_id)
            if s is None:
                refusal = R_UNKNOWN_SKU
                break
            if s.available < qty:
                refusal = R_OUT_OF_STOCK
        if refusal is not None:
            self._create(key, Record(RESERVE, dict(items), REJECTED, refusal, expires_ms))
            return refusal
        for sku_id, qty in items.items():
            s = self._touch_stock(sku_id)
            s.available -= qty
            s.reserved += qty
        self._create(key, Record(RESERVE, dict(items), RESERVED, R_OK, expires_ms))
        if expires_ms is not None:
            heapq.heappush(self._deadlines, (expires_ms, key))
        return R_OK

    def release(self, key: str) -> str:
        """Return a reservation's stock. Releasing an unknown key leaves a tombstone, so a
        reserve that arrives late under that key cannot take stock any more."""
        if not isinstance(key, str) or not key:
            return R_INVALID
        rec = self.records.get(key)
        if rec is None:
            self._create(key, Record(RESERVE, {}, RELEASED, R_RELEASED))
            return R_OK
        if rec.kind != RESERVE:
            return R_KEY_REUSED
        if rec.state == CONFIRMED:
            return R_CONFIRMED
        if rec.state == RESERVED:
            self._return_stock(key, rec)
        return R_OK

    def expire(self, key: str, now_ms: int) -> str:
        """Release an open reservation whose deadline has passed; anything else: skipped."""
        rec = self.records.get(key)
        if (
            rec is None
            or rec.state != RESERVED
            or rec.expires_ms is None
            or rec.expires_ms > now_ms
        ):
            return R_SKIPPED
        self._return_stock(key, rec)
        return R_OK

    def _return_stock(self, key: str, rec: Record) -> None:
        self._touch_record(key)
        rec = self.records[key]
        for sku_id, qty in rec.items.items():
            s = self._touch_stock(sku_id)
            s.reserved -= qty
            s.available += qty
        rec.state = RELEASED

    def confirm(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            return R_INVALID
        rec = self.records.get(key)
        if rec is None:
            return R_NOT_FOUND
        if rec.kind != RESERVE:
            return R_KEY_REUSED
        if rec.state == CONFIRMED:
            return R_OK
        if rec.state == RELEASED:
            return R_RELEASED
        if rec.state == REJECTED:
            return R_REJECTED
        self._touch_record(key)
        rec = self.records[key]
        for sku_id, qty in rec.items.items():
            s = self._touch_stock(sku_id)
            s.reserved -= qty
            s.sold += qty
        rec.state = CONFIRMED
        return R_OK

    def transfer(
        self, src: str, dst: str, sku_id: int, qty: int, expires_ms: int | None = None
    ) -> str:
        """Move ``qty`` units of ``sku_id`` out of the open reservation ``src`` (a flash-sale
        hold) into a new reservation ``dst``. Stock counters do not change: the units stay
        reserved. ``src`` stays open even when it reaches zero, so units can come back."""
        if (
            not isinstance(dst, str)
            or not dst
            or type(sku_id) is not int
            or type(qty) is not int
            or qty <= 0
        ):
            return R_INVALID
        if dst in self.records:
            return R_KEY_REUSED
        rec = self.records.get(src)
        if rec is None:
            return R_NOT_FOUND
        if rec.kind != RESERVE:
            return R_KEY_REUSED
        if rec.state != RESERVED:
            return rec.state if rec.state != REJECTED else R_REJECTED
        if rec.items.get(sku_id, 0) < qty:
            return R_OUT_OF_STOCK
        self._touch_record(src)
        self.records[src].items[sku_id] -= qty
        self._create(dst, Record(RESERVE, {sku_id: qty}, RESERVED, R_OK, expires_ms))
        if expires_ms is not None:
            heapq.heappush(self._deadlines, (expires_ms, dst))
        return R_OK

    def give_back(self, key: str, into: str) -> str:
        """Close the open reservation ``key``: its units go back into the open reservation
        ``into`` when there is one (the hold of a running flash sale), otherwise to
        ``available``. ``ok`` when units moved, ``released`` when ``key`` was already
        released (nothing to do), ``confirmed`` when it was paid for."""
        rec = self.records.get(key)
        if rec is None:
            return R_NOT_FOUND
        if rec.kind != RESERVE:
            return R_KEY_REUSED
        if rec.state == CONFIRMED:
            return R_CONFIRMED
        if rec.state != RESERVED:
            return R_RELEASED
        target = self.records.get(into) if into != key else None
        if target is None or target.kind != RESERVE or target.state != RESERVED:
            self._return_stock(key, rec)
            return R_OK
        self._touch_record(into)
        self._touch_record(key)
        target = self.records[into]
        rec = self.records[key]
        for sku_id, qty in rec.items.items():
            target.items[sku_id] = target.items.get(sku_id, 0) + qty
        rec.state = RELEASED
        return R_OK

    def adjust(
        self,
        key: str,
        sku_id: int,
        delta: int,
        reason: str = "",
        actor_id: int | None = None,
    ) -> str:
        """Restock (delta > 0) or write off (delta < 0) available units, audited."""
        if (
            not isinstance(key, str)
            or not key
            or type(sku_id) is not int
            or type(delta) is not int
            or delta == 0
        ):
            return R_INVALID
        items = {sku_id: delta}
        rec = self.records.get(key)
        if rec is not None:
            if rec.kind != ADJUST or rec.items != items:
                return R_KEY_REUSED
            return rec.result
        s = self.stock.get(sku_id)
        refusal = None
        if s is None:
            refusal = R_UNKNOWN_SKU
        elif s.available + delta < 0:
            refusal = R_OUT_OF_STOCK
        if refusal is not None:
            self._create(key, Record(ADJUST, items, REJECTED, refusal))
            return refusal
        s = self._touch_stock(sku_id)
        s.total += delta
        s.available += delta
        self._create(key, Record(ADJUST, items, APPLIED, R_OK))
        self._adjustments.append(Adjustment(key, sku_id, delta, str(reason), actor_id))
        return R_OK
