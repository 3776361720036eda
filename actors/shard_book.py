"""ShardBook: what one inventory shard knows and decides, with no Ray and no I/O of its own.

It owns the shard's stock ``Ledger``, its ``FlashDesk`` and its ``CouponDesk`` (the coupon
campaigns the shard owns) and keeps them in step: a batch begins, commits and rolls back in
all of them together (batches stack two deep, as the ``GroupCommitter`` stages them). For a
batch of ``raymall.domain.shard_ops`` operations:

- ``prepare(ops)`` loads what they touch and memory lacks: SKUs created after the shard
  started, records of keys it does not hold (a release, a confirm, a hold), flash sales
  with their purchases and SKU, and coupon campaigns with their claims. Memory is newer
  than any read: nothing held is replaced;
- ``stage(ops)`` (after ``prepare``) applies them in arrival order as a new open batch and
  answers ``(results, statements)``: one result per operation, and the SQL of the batch's
  one transaction (ledger rows by ``actors.inventory_store``, flash rows by
  ``actors.flash_store``, coupon rows by ``actors.coupon_store``), bound now so that its
  values are fixed while memory moves on;
- ``commit()`` (the oldest open batch is durable) and ``rollback()`` (undo the newest).

Everything read from the database goes through ``run(fn, *args)``, injected: the shard
passes ``asyncio.to_thread``, so loads run in a thread while the book stays on the event
loop. The book is also the ``GroupCommitter``'s ``CommitBook``: its failure policy after a
failed write is here (``failed``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple

from actors import coupon_store, flash_store
from actors.inventory_store import (
    DuplicateKey,
    InjectedFault,
    InventoryStore,
    StaleStock,
    Statement,
)
from raymall.domain.coupon_desk import Claim, CouponDesk
from raymall.domain.coupons import Campaign
from raymall.domain.flash_desk import FlashDesk, Purchase
from raymall.domain.ledger import Ledger
from raymall.domain.sale import Sale
from raymall.domain.shard_ops import (
    COUPON_OPS,
    FLASH_OPS,
    Adjust,
    Confirm,
    FlashBuy,
    FlashEnd,
    FlashReturn,
    FlashWarm,
    Op,
    Release,
    Reserve,
    Result,
)
from raymall.domain.stock import Record, Stock
from raymall.errors import DomainError, Unavailable
from raymall.flash.live_model import live_value
from raymall.hashing import shard_for
from raymall.ids import MAX_WORKER, Snowflake, now_ms
from raymall.logs import get_logger
from raymall.settings import Settings

log = get_logger("inventory")

INVENTORY_WORKER_BASE = 2048  # snowflake worker ids 2048..3071 belong to inventory shards
_FLASH = frozenset(FLASH_OPS)
_COUPON = frozenset(COUPON_OPS)
Run = Callable[..., Awaitable[Any]]  # run(fn, *args): the result of fn(*args), awaited


def worker_id(index: int) -> int:
    return INVENTORY_WORKER_BASE + index % 1024


_IDS: dict[int, Snowflake] = {}  # one generator per shard per process, kept across reloads


def _ids(index: int) -> Snowflake:
    ids = _IDS.get(index)
    if ids is None:
        ids = _IDS[index] = Snowflake(min(MAX_WORKER, worker_id(index)))
    return ids


def new_coupon_desk(
    settings: Settings, index: int, clock: Callable[[], float] = time.monotonic
) -> CouponDesk:
    """The shard's coupon desk: coupon ids from the shard's id generator, sold-out leases
    as long as flash sales'."""
    return CouponDesk(
        next_id=_ids(index).next_id,
        lease_ms=int(settings.flash_sold_out_ttl_s * 1000),
        clock=clock,
    )


def new_desk(
    settings: Settings,
    index: int,
    ledger: Ledger,
    clock: Callable[[], float] = time.monotonic,
) -> FlashDesk:
    ids = _ids(index)
    shards = settings.order_shards
    return FlashDesk(
        ledger,
        index,
        next_id=ids.next_id,
        order_shard_of=lambda user_id: shard_for(user_id, shards),
        order_timeout_ms=int(settings.flash_order_timeout_s * 1000),
        lease_ms=int(settings.flash_sold_out_ttl_s * 1000),
        clock=clock,
    )


class Needs(NamedTuple):
    """What a batch touches that memory does not hold."""

    skus: list[int]
    keys: list[str]
    sales: list[int]
    campaigns: Sequence[int] = ()


class Found(NamedTuple):
    stock: dict[int, Stock]
    records: dict[str, Record]
    sales: list[tuple[Sale, list[Purchase]]]
    campaigns: Sequence[tuple[Campaign, list[Claim]]] = ()


class Stage(NamedTuple):
    """One staged batch: its results, its statements (empty: nothing to write) and the keys
    it inserts (looked up after a duplicate-key refusal)."""

    results: list[Result]
    statements: list[Statement]
    created: list[str]
    attempt: int = 0
    # (sku id, available) of every SKU the batch touched: the read model's part of it
    available: tuple[tuple[int, int], ...] = ()
    # (sale id, live value) of every flash sale the batch sold, gave back or ended: the
    # sales' read model (``raymall.flash.live``)
    sales: tuple[tuple[int, int], ...] = ()

    @property
    def work(self) -> list[Statement]:
        """What the ``GroupCommitter``'s writer writes."""
        return self.statements


# ---- the loads (blocking: run in a thread through ``run``) ------------------------------
def load_ledger(store: InventoryStore) -> Ledger:
    """The shard's ledger as the database holds it: its rows and open reservations."""
    ledger = Ledger()
    for sku_id, stock in store.load_stock().items():
        ledger.load_stock(sku_id, stock)
    for key, rec in store.load_open().items():
        ledger.load_record(key, rec)
    problems = ledger.violations(full_history=False)
    if problems:
        log.warning("shard %s loaded inconsistent stock: %s", store.shard, problems[:5])
    log.info(
        "shard %s loaded %s SKUs and %s open reservations",
        store.shard,
        len(ledger.stock),
        sum(1 for _ in ledger.open_reservations()),
    )
    return ledger


def fetch(store: InventoryStore, needs: Needs) -> Found:
    stock = store.load_stock(needs.skus) if needs.skus else {}
    records = store.lookup(needs.keys) if needs.keys else {}
    sales = []
    for sale_id in needs.sales:
        found = flash_store.load_sale(store.engine, store.ph, sale_id)
        if found is not None:
            sales.append(found)
    campaigns = []
    for campaign_id in needs.campaigns:
        held = coupon_store.load_campaign(store.engine, store.ph, campaign_id)
        if held is not None:
            campaigns.append(held)
    return Found(stock, records, sales, campaigns)


class ShardBook:
    """Ledger + flash desk of shard ``index`` (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        index: int,
        store: InventoryStore,
        ledger: Ledger,
        *,
        run: Run,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.index = index
        self.store = store
        self._run = run
        self._clock = clock
        self._key_cache = settings.inventory_key_cache
        self.ledger = ledger
        self.desk = new_desk(settings, index, ledger, clock)
        self.coupons = new_coupon_desk(settings, index, clock)
        self._needs_reload = False
        # told of committed values read from the database (the read model's publisher):
        # SKUs loaded into memory, and the whole ledger after a reload
        self.on_loaded: Callable[[Mapping[int, int]], None] | None = None
        self.on_reset: Callable[[Ledger], None] | None = None

    # ---- loading ------------------------------------------------------------------------
    def _needs(self, ops: Sequence[Any]) -> Needs | None:
        stock, records, books = self.ledger.stock, self.ledger.records, self.desk.books
        campaign_books = self.coupons.books
        skus: set[Any] = set()
        keys: set[Any] = set()
        sales: set[Any] = set()
        campaigns: set[Any] = set()
        for op in ops:
            kind = type(op)
            try:
                if kind in _COUPON:
                    if op.campaign_id not in campaign_books:
                        campaigns.add(op.campaign_id)
                elif kind is FlashBuy:
                    if op.sale_id not in books:
                        sales.add(op.sale_id)
                    if op.hold_key not in records:
                        keys.add(op.hold_key)
                elif kind is Reserve:
                    skus.update(s for s in op.items if s not in stock)
                elif kind is Release or kind is Confirm:
                    if op.key not in records:
                        keys.add(op.key)
                elif kind is Adjust:
                    if op.sku_id not in stock:
                        skus.add(op.sku_id)
                elif kind is FlashReturn or kind is FlashEnd or kind is FlashWarm:
                    if op.sale_id not in books:
                        sales.add(op.sale_id)
                    if op.hold_key not in records:
                        keys.add(op.hold_key)
                    if kind is FlashReturn and op.reservation_key not in records:
                        keys.add(op.reservation_key)
            except (TypeError, AttributeError):
                continue  # malformed fields: the ledger or desk answers "invalid"
        if not (skus or keys or sales or campaigns):
            return None
        return Needs(
            sorted(s for s in skus if type(s) is int),
            sorted(k for k in keys if isinstance(k, str)),
            sorted(s for s in sales if type(s) is int),
            tuple(sorted(c for c in campaigns if type(c) is int)),
        )

    def _load(self, found: Found) -> Needs | None:
        """Hand memory what was read; the SKUs of newly loaded sales still to read."""
        ledger = self.ledger
        for sku_id, stock in found.stock.items():
            ledger.load_stock(sku_id, stock)
        self._loaded(found.stock)
        for key, rec in found.records.items():
            ledger.load_record(key, rec)
        for info, purchases in found.sales:
            self.desk.load(info, purchases)
        for campaign, claims in found.campaigns:
            self.coupons.load(campaign, claims)
        skus = sorted({info.sku_id for info, _ in found.sales} - ledger.stock.keys())
        return Needs(skus, [], []) if skus else None

    async def prepare(self, ops: Sequence[Op]) -> None:
        """Load what ``ops`` touch and memory does not hold (see the module docstring)."""
        needs = self._needs(ops)
        while needs is not None:
            needs = self._load(await self._run(fetch, self.store, needs))

    async def ensure_stock(self, sku_ids: list[int]) -> None:
        """Load the given SKUs if they are not held (reads of SKUs created after start)."""
        missing = [s for s in sku_ids if type(s) is int and s not in self.ledger.stock]
        if missing:
            loaded = await self._run(self.store.load_stock, missing)
            for sku_id, stock in loaded.items():
                self.ledger.load_stock(sku_id, stock)
            self._loaded(loaded)

    async def ready(self) -> None:
        """Before a batch with none open: rebuild memory from the database if it may be
        behind it (after a failure whose outcome is unknown)."""
        if self._needs_reload:
            self.reset(await self._run(load_ledger, self.store))

    def reset(self, ledger: Ledger) -> None:
        """Take ``ledger`` (freshly loaded) as memory, with a new desk (sales load again)."""
        self.ledger = ledger
        self.desk = new_desk(self.settings, self.index, ledger, self._clock)
        self.coupons = new_coupon_desk(self.settings, self.index, self._clock)
        self._needs_reload = False
        if self.on_reset is not None:
            self.on_reset(ledger)

    def _loaded(self, stock: Mapping[int, Stock]) -> None:
        """Tell ``on_loaded`` of the SKUs just loaded (not of any memory already held: it
        may be newer than the read, and uncommitted)."""
        if self.on_loaded is None:
            return
        held = self.ledger.stock
        fresh = {sku_id: s.available for sku_id, s in stock.items() if held.get(sku_id) is s}
        if fresh:
            self.on_loaded(fresh)

    # ---- batches --------------------------------------------------------------------------
    def apply(self, ops: Sequence[Op], attempt: int = 0) -> Stage:
        """Apply ``ops`` (prepared) as a new open batch: one result per op, and the
        batch's statements, bound. Raises (having undone the batch) if it cannot."""
        now = now_ms()
        ledger, desk, coupons = self.ledger, self.desk, self.coupons
        ledger.begin()
        desk.begin(now)
        coupons.begin(now)
        try:
            flash, to_desk, to_ledger = _FLASH, desk.apply, ledger.apply
            coupon, to_coupons = _COUPON, coupons.apply
            results: list[Result] = [
                to_desk(op)
                if type(op) in flash
                else to_coupons(op)
                if type(op) in coupon
                else to_ledger(op)
                for op in ops
            ]
            changes = ledger.changes()
            flash_changes = desk.changes()
            coupon_changes = coupons.changes()
            statements: list[Statement] = []
            if changes or flash_changes or coupon_changes:
                store = self.store
                statements = store.statements(changes, now)
                statements += flash_store.statements(flash_changes, store.ph, now)
                statements += coupon_store.statements(coupon_changes, store.ph, now)
                statements = store.render(statements)
        except Exception:
            ledger.rollback()
            desk.rollback()
            coupons.rollback()
            raise
        available = tuple((sku_id, stock.available) for sku_id, stock in changes.stock)
        created = [k for k, _ in changes.created]
        sales = tuple((sid, live_value(info, now)) for sid, info in flash_changes.sales.items())
        return Stage(results, statements, created, attempt, available, sales)

    async def stage(self, ops: list[Op], attempt: int = 0) -> Stage:
        """``prepare`` then ``apply``, with the shard's errors: a load that fails is
        ``Unavailable`` (a domain error passes as it is), and so is a batch that cannot be
        applied."""
        try:
            await self.prepare(ops)
        except DomainError:
            raise
        except Exception as exc:
            raise Unavailable(str(exc)) from exc
        try:
            return self.apply(ops, attempt)
        except Exception as exc:
            raise Unavailable(f"inventory shard {self.index}: {exc!r}") from exc

    def commit(self, staged: Any = None) -> None:
        """The oldest open batch is durable (in ledger and desks alike)."""
        self.ledger.commit()
        self.desk.commit()
        self.coupons.commit()
        self.ledger.evict(self._key_cache)

    def rollback(self) -> None:
        """Undo the newest open batch (in ledger and desks alike)."""
        self.ledger.rollback()
        self.desk.rollback()
        self.coupons.rollback()

    async def failed(self, staged: Stage, exc: BaseException) -> BaseException | None:
        """After ``staged``'s transaction failed (memory already undone): the error for its
        callers, or None to stage it again (replays of keys stored earlier, now loaded)."""
        if isinstance(exc, DuplicateKey):
            found: dict[str, Record] = {}
            if staged.attempt == 0:
                try:
                    found = await self._run(self.store.lookup, staged.created)
                except Exception:  # no answer: reload, below
                    found = {}
            if found:
                for key, rec in found.items():
                    self.ledger.load_record(key, rec)
                return None
            self._needs_reload = True
            return Unavailable(f"inventory shard {self.index} write refused")
        if isinstance(exc, InjectedFault):
            return Unavailable(f"inventory shard {self.index}: {exc}")
        if isinstance(exc, StaleStock):
            log.error("shard %s: %s; reloading from the database", self.index, exc)
            self._needs_reload = True
            return Unavailable(f"inventory shard {self.index} is reloading")
        # The commit's outcome may be unknown: reload before the next batch.
        self._needs_reload = True
        log.warning("shard %s commit failed: %r", self.index, exc)
        return Unavailable(f"inventory shard {self.index} commit failed")

    def lost(self) -> BaseException:
        """What was written is unknown: reload before the next batch."""
        self._needs_reload = True
        return Unavailable(f"inventory shard {self.index} failed")
