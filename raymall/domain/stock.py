"""The stock ledger's state: result codes, record states, one SKU's counters (``Stock``),
one key's record (``Record``), what a batch changed (``Changes``, the form persistence
needs) and ``LedgerState``: the stock and records of one shard with the undo log of its
open batches, loading, expiry deadlines, eviction and the conservation check. Plain
Python, no I/O; the rules that move this state are ``raymall.domain.ledger.Ledger``'s."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# result codes
R_OK = "ok"
R_OUT_OF_STOCK = "out_of_stock"
R_UNKNOWN_SKU = "unknown_sku"
R_RELEASED = "released"
R_CONFIRMED = "confirmed"
R_REJECTED = "rejected"
R_NOT_FOUND = "not_found"
R_KEY_REUSED = "key_reused"
R_INVALID = "invalid"
R_SKIPPED = "skipped"

# record kinds and states
RESERVE = "reserve"
ADJUST = "adjust"
RESERVED = "reserved"
CONFIRMED = "confirmed"
RELEASED = "released"
REJECTED = "rejected"
APPLIED = "applied"
OPEN_STATES = frozenset({RESERVED})


class Stock:
    """One SKU's counters; ``version`` grows by one per committed batch that touched it."""

    __slots__ = ("total", "available", "reserved", "sold", "version", "threshold")

    def __init__(
        self,
        total: int = 0,
        available: int = 0,
        reserved: int = 0,
        sold: int = 0,
        version: int = 0,
        threshold: int = 0,
    ) -> None:
        self.total = total
        self.available = available
        self.reserved = reserved
        self.sold = sold
        self.version = version
        self.threshold = threshold

    def copy(self) -> Stock:
        return Stock(
            self.total, self.available, self.reserved, self.sold, self.version, self.threshold
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "available": self.available,
            "reserved": self.reserved,
            "sold": self.sold,
            "version": self.version,
            "low_stock_threshold": self.threshold,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stock) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"Stock({self.as_dict()})"


class Record:
    """What a key did. ``items`` is {sku_id: qty} for a reservation, {sku_id: delta} for an
    adjustment. ``stored`` says whether the database already holds this record."""

    __slots__ = ("kind", "items", "state", "result", "expires_ms", "stored")

    def __init__(
        self,
        kind: str,
        items: dict[int, int],
        state: str,
        result: str = R_OK,
        expires_ms: int | None = None,
        stored: bool = False,
    ) -> None:
        self.kind = kind
        self.items = items
        self.state = state
        self.result = result
        self.expires_ms = expires_ms
        self.stored = stored

    def copy(self) -> Record:
        return Record(
            self.kind, dict(self.items), self.state, self.result, self.expires_ms, self.stored
        )

    def __repr__(self) -> str:
        return f"Record({self.kind}, {self.items}, {self.state}, {self.result})"


@dataclass(frozen=True)
class Adjustment:
    key: str
    sku_id: int
    delta: int
    reason: str
    actor_id: int | None


@dataclass(frozen=True)
class LowStock:
    """Availability crossed the threshold downwards during a batch."""

    sku_id: int
    available: int
    threshold: int


@dataclass
class Changes:
    """Everything one batch changed, in the form persistence needs."""

    stock: list[tuple[int, Stock]] = field(default_factory=list)
    created: list[tuple[str, Record]] = field(default_factory=list)
    updated: list[tuple[str, Record, bool]] = field(default_factory=list)  # (.., items changed)
    adjustments: list[Adjustment] = field(default_factory=list)
    low_stock: list[LowStock] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.stock or self.created or self.updated or self.adjustments)


def valid_items(items: Any) -> bool:
    """{sku_id: qty} with positive int SKU ids and quantities, at least one."""
    if not isinstance(items, dict) or not items:
        return False
    for sku, qty in items.items():
        if type(sku) is not int or type(qty) is not int or qty <= 0 or sku <= 0:
            return False
    return True


def violations(
    stock: dict[int, Stock], records: dict[str, Record], *, full_history: bool = True
) -> list[str]:
    """Broken invariants of a ledger's state (empty when all hold); see
    ``Ledger.violations``."""
    problems = []
    for sku_id, s in stock.items():
        if min(s.total, s.available, s.reserved, s.sold) < 0:
            problems.append(f"sku {sku_id}: negative column {s!r}")
        if s.total != s.available + s.reserved + s.sold:
            problems.append(f"sku {sku_id}: total != available + reserved + sold {s!r}")
    open_sum: dict[int, int] = {}
    sold_sum: dict[int, int] = {}
    for rec in records.values():
        target = open_sum if rec.state == RESERVED else sold_sum
        if rec.state in (RESERVED, CONFIRMED):
            for sku_id, qty in rec.items.items():
                target[sku_id] = target.get(sku_id, 0) + qty
    for sku_id, s in stock.items():
        if s.reserved != open_sum.get(sku_id, 0):
            problems.append(f"sku {sku_id}: reserved {s.reserved} != open reservations")
        if full_history and s.sold != sold_sum.get(sku_id, 0):
            problems.append(f"sku {sku_id}: sold {s.sold} != confirmed reservations")
    return problems


class LedgerState:
    """A ledger's stock and key records with the undo log of its open batches; the
    operations that change them are ``raymall.domain.ledger.Ledger``'s."""

    def __init__(self) -> None:
        self.stock: dict[int, Stock] = {}
        self.records: dict[str, Record] = {}
        self._deadlines: list[tuple[int, str]] = []
        self._terminal: deque[str] = deque()
        # Open batches, oldest first: (undo stock, undo records, adjustments) each. A batch
        # may begin while the previous one is still open (its transaction in flight): it
        # applies on top of it; batches commit oldest first and roll back newest first.
        self._segments: list[tuple[dict[int, Stock], dict[str, Record | None], list[Adjustment]]]
        self._segments = []
        self._undo_stock: dict[int, Stock] | None = None  # of the newest open batch
        self._undo_records: dict[str, Record | None] | None = None
        self._adjustments: list[Adjustment] = []

    # ---- loading (from the database; never undone) ----------------------------------
    def load_stock(self, sku_id: int, stock: Stock) -> None:
        """Add a SKU unless it is already held (memory is newer than any read)."""
        self.stock.setdefault(sku_id, stock)

    def load_record(self, key: str, record: Record) -> None:
        if key in self.records:
            return
        record.stored = True
        self.records[key] = record
        if record.state == RESERVED and record.expires_ms is not None:
            heapq.heappush(self._deadlines, (record.expires_ms, key))
        elif record.state not in OPEN_STATES:
            self._terminal.append(key)

    # ---- batches --------------------------------------------------------------------
    @property
    def in_batch(self) -> bool:
        return bool(self._segments)

    @property
    def open_batches(self) -> int:
        return len(self._segments)

    def begin(self) -> None:
        """Open a batch, on top of any batch still open (whose ``changes()`` must have been
        taken already: they are computed from the live counters)."""
        seg: tuple[dict[int, Stock], dict[str, Record | None], list[Adjustment]] = ({}, {}, [])
        self._segments.append(seg)
        self._undo_stock, self._undo_records, self._adjustments = seg

    def _top(self) -> None:
        if self._segments:
            self._undo_stock, self._undo_records, self._adjustments = self._segments[-1]
        else:
            self._undo_stock, self._undo_records, self._adjustments = None, None, []

    def changes(self) -> Changes:
        """What the open batch changed (SKUs with new counters, created and updated keys)."""
        assert self._undo_stock is not None and self._undo_records is not None
        out = Changes(adjustments=list(self._adjustments))
        for sku_id, before in self._undo_stock.items():
            after = self.stock[sku_id]
            out.stock.append((sku_id, after))
            th = after.threshold
            if before.available > th >= after.available:
                out.low_stock.append(LowStock(sku_id, after.available, th))
        for key, prior in self._undo_records.items():
            rec = self.records[key]
            if prior is None:
                out.created.append((key, rec))
            elif prior.state != rec.state or prior.items != rec.items:
                out.updated.append((key, rec, prior.items != rec.items))
        return out

    def commit(self) -> None:
        """The OLDEST open batch is durable: forget its undo log, mark its records stored."""
        assert self._segments, "no open batch"
        _stock, records, _adj = self._segments.pop(0)
        for key in records:
            rec = self.records[key]
            rec.stored = True
            if rec.state not in OPEN_STATES:
                self._terminal.append(key)
            for _s, newer, _a in self._segments:  # what a later rollback would restore
                prior = newer.get(key)
                if prior is not None:
                    prior.stored = True
        self._top()

    def rollback(self) -> None:
        """Restore every SKU and key the NEWEST open batch touched to its state before its
        ``begin()`` (roll batches back newest first)."""
        assert self._segments, "no open batch"
        undo_stock, undo_records, _adj = self._segments.pop()
        for sku_id, before in undo_stock.items():
            self.stock[sku_id] = before
        for key, prior in undo_records.items():
            if prior is None:
                del self.records[key]
            else:
                self.records[key] = prior
                if prior.state == RESERVED and prior.expires_ms is not None:
                    heapq.heappush(self._deadlines, (prior.expires_ms, key))
        self._top()

    def _touch_stock(self, sku_id: int) -> Stock:
        s = self.stock[sku_id]
        undo = self._undo_stock
        if undo is not None and sku_id not in undo:
            undo[sku_id] = s.copy()
            s.version += 1
        return s

    def _touch_record(self, key: str) -> Record | None:
        rec = self.records.get(key)
        undo = self._undo_records
        if undo is not None and key not in undo:
            undo[key] = rec.copy() if rec is not None else None
        return rec

    def _create(self, key: str, rec: Record) -> None:
        self._touch_record(key)
        self.records[key] = rec

    # ---- expiry and memory bounds ---------------------------------------------------
    def due(self, now_ms: int, limit: int = 1000) -> list[str]:
        """Keys of open reservations whose deadline has passed (at most ``limit``)."""
        out: dict[str, None] = {}
        heap = self._deadlines
        while heap and heap[0][0] <= now_ms and len(out) < limit:
            expires_ms, key = heapq.heappop(heap)
            rec = self.records.get(key)
            if rec is not None and rec.state == RESERVED and rec.expires_ms == expires_ms:
                out[key] = None
        return list(out)

    def requeue(self, keys: Iterable[str]) -> None:
        """Watch these keys' deadlines again (after ``due`` handed them to a batch that
        never ran)."""
        for key in keys:
            rec = self.records.get(key)
            if rec is not None and rec.state == RESERVED and rec.expires_ms is not None:
                heapq.heappush(self._deadlines, (rec.expires_ms, key))

    def evict(self, keep: int) -> int:
        """Forget the oldest finished records beyond ``keep`` (the database still holds
        them, and the shard looks keys up there). Keys an open batch touched stay."""
        dropped = 0
        open_records = [records for _s, records, _a in self._segments]
        kept: list[str] = []
        while len(self._terminal) > keep:
            key = self._terminal.popleft()
            if any(key in records for records in open_records):
                kept.append(key)
                continue
            rec = self.records.get(key)
            if rec is not None and rec.state not in OPEN_STATES and rec.stored:
                del self.records[key]
                dropped += 1
        self._terminal.extend(kept)
        return dropped

    # ---- views ----------------------------------------------------------------------
    def open_reservations(self) -> Iterable[tuple[str, Record]]:
        return ((k, r) for k, r in self.records.items() if r.state == RESERVED)

    def violations(self, *, full_history: bool = True) -> list[str]:
        """Broken invariants (empty when all hold). ``full_history`` adds the sum checks,
        valid when every record since the stock was zero is still in memory."""
        return violations(self.stock, self.records, full_history=full_history)
