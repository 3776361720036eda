"""InventoryShard: the one owner of the stock of the SKUs that hash to it.

A thin async shell: ``actors.shard_book.ShardBook`` (ledger + flash desk, loading,
statement building) committed by ``actors.group_commit.GroupCommitter``. Guarantees:

- **one writer**: only this actor changes its SKUs' stock columns, in arrival order, with
  no database row locks on the hot path (rows are written as absolute values, fenced by
  their version);
- **group commit, durable before ack**: ``submit`` queues a client's batch; the committer
  drains everything pending as soon as the previous commit is done (operations arriving
  during a commit form the next group, as in InnoDB's group commit; at most
  ``group_commit_max_ops``), applies it in memory, writes ONE transaction and only then
  answers. Callers that send one op at a time are held up to ``group_commit_window_ms`` to
  gather company; a client batch is not, it already waited in its client's window. If the
  transaction fails, memory rolls back and every caller of the batch gets ``Unavailable``
  (retriable: retry with the same keys);
- **idempotent across restarts**: keys live in ``inventory_ops``. Open reservations are in
  memory; a key that is not is looked up in the database (release/confirm before the
  batch; reserve/adjust optimistically, by the primary key refusing a duplicate insert,
  after which the batch is re-applied with the stored records);
- **crash = restart from the database**: the constructor loads the shard's inventory rows
  and open reservations; reservation deadlines are in ``expires_ms``, so the expiry sweep
  resumes after a restart.

Protocol: the operations and results of ``raymall.domain.shard_ops``; clients send a batch
packed by ``actors.wire`` to ``submit_packed``.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any

from actors.availability_publisher import AvailabilityPublisher
from actors.group_commit import GroupCommitter
from actors.inventory_store import InventoryStore, Statement
from actors.observe import LowStock, count_restart
from actors.shard_book import ShardBook, Stage, load_ledger
from actors.wire import pack_results, unpack_batch
from raymall import logs, metrics
from raymall.domain.ledger import Ledger
from raymall.domain.shard_ops import Expire, Op, Result, kinds_of, result_code
from raymall.feed import scoped_channel
from raymall.flash import live_model
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.settings import Settings

log = get_logger("inventory")
GIL_SWITCH_INTERVAL_S = 0.0005
SALES_HEARTBEAT_S = 30.0  # the sales' readers need no heartbeat: a long one keeps it quiet


class InventoryShard:
    """Owner of the stock of SKUs with ``shard_for(sku_id, inventory_shards) == index``."""

    def __init__(self, settings: Settings, index: int) -> None:
        logs.configure(settings.log_level)
        # The transaction runs on a thread while the loop stages the next batch: a short
        # GIL switch interval keeps the writer from waiting 5 ms for the GIL after each
        # round trip to the database.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.settings = settings
        self.index = index
        self._label = str(index)
        self.store = InventoryStore(settings.resolved_database_url, index)
        self.book = ShardBook(
            settings, index, self.store, load_ledger(self.store), run=asyncio.to_thread
        )
        self.committer: GroupCommitter[Op, Result] = GroupCommitter(
            self.book,
            self._write,
            window_s=settings.group_commit_window_ms / 1000,
            max_ops=settings.group_commit_max_ops,
            name=f"shard {index} committer",
            observe=self._observe,
            queue_depth=metrics.GROUP_COMMIT_QUEUE.labels(str(index)).set,
        )
        self._started_ms = now_ms()
        count_restart(f"inventory-{index}")
        self.low_stock = LowStock(self._label, settings.low_stock_units)
        self.low_stock.reset({s: st.available for s, st in self.book.ledger.stock.items()})
        loop = asyncio.get_running_loop()
        self._tasks = [self.committer.task, loop.create_task(self._sweep_loop())]
        # the availability read model (raymall.catalog.availability): committed values only
        self.publisher: AvailabilityPublisher | None = None
        self.sales_publisher: AvailabilityPublisher | None = None
        if settings.redis_url and settings.availability_read_model:
            self.publisher = AvailabilityPublisher.from_url(
                settings.redis_url, index, heartbeat_s=settings.availability_heartbeat_ms / 1000
            )
            self._publish_all(self.book.ledger)
            self.book.on_reset = self._publish_all
            self.book.on_loaded = self.publisher.changed
            self._tasks.append(self.publisher.task)
            # the flash sales' read model (raymall.flash.live_model): committed values only
            self.sales_publisher = AvailabilityPublisher(
                self.publisher.redis,
                index,
                channel=scoped_channel(settings.redis_url, live_model.CHANNEL),
                heartbeat_s=SALES_HEARTBEAT_S,
                key=live_model.hash_key,
            )
            self._tasks.append(self.sales_publisher.task)

    def _publish_all(self, ledger: Ledger) -> None:
        if self.publisher is not None:
            self.publisher.reset({sku_id: s.available for sku_id, s in ledger.stock.items()})

    # ---- the write path ---------------------------------------------------------------
    async def submit(self, ops: list[Op]) -> list[Result]:
        """Apply ``ops`` in order in the next group commit; answer one result per op once
        the transaction holding them has committed. Raises ``Unavailable`` if it failed."""
        return await self.committer.submit(ops)

    async def submit_packed(self, blob: bytes) -> bytes:
        """``submit`` for a batch packed by ``actors.wire.pack_batch`` (the clients' wire
        format); the answer is packed by ``pack_results``."""
        return pack_results(await self.committer.submit(unpack_batch(blob)))

    def _write(self, statements: list[Statement], fail: bool) -> None:
        """The committer's writer (runs in a thread): one transaction."""
        self.store.write_statements(statements, fail=fail)

    def _observe(self, ops: list[Op], stage: Stage, elapsed: float | None) -> None:
        if self.publisher is not None and stage.available:
            self.publisher.changed(dict(stage.available))
        if self.sales_publisher is not None and stage.sales:
            self.sales_publisher.changed(dict(stage.sales))
        if stage.available:
            self.low_stock.update(dict(stage.available))
        if elapsed is not None:
            metrics.INVENTORY_COMMIT_LATENCY.labels(self._label).observe(elapsed)
            metrics.INVENTORY_BATCH_SIZE.labels(self._label).observe(len(ops))
        codes = map(result_code, stage.results)
        counts = Counter(zip(kinds_of(ops), codes, strict=True))
        for (kind, result), n in counts.items():
            metrics.INVENTORY_OPS.labels(kind, result).inc(n)

    # ---- expiry -----------------------------------------------------------------------
    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.inventory_sweep_interval_s)
            keys: list[str] = []
            try:
                keys = self.book.ledger.due(now_ms(), limit=self.settings.group_commit_max_ops)
                if keys:
                    now = now_ms()
                    await self.submit([Expire(k, now) for k in keys])
            except Exception as exc:
                self.book.ledger.requeue(keys)
                log.warning("shard %s expiry sweep failed: %r", self.index, exc)

    # ---- reads and operations ---------------------------------------------------------
    async def availability(self, sku_ids: list[int]) -> dict[int, int]:
        """Available units per SKU this shard owns (unknown SKUs are left out). Served from
        memory: it may include the effect of a batch whose commit is in flight."""
        await self.book.ensure_stock(sku_ids)
        stock = self.book.ledger.stock
        return {s: stock[s].available for s in sku_ids if s in stock}

    async def snapshot(self, sku_ids: list[int]) -> dict[int, dict[str, int]]:
        """Full in-memory counters per SKU (test and admin view)."""
        await self.book.ensure_stock(sku_ids)
        stock = self.book.ledger.stock
        return {s: stock[s].as_dict() for s in sku_ids if s in stock}

    async def reservation(self, key: str) -> dict[str, Any] | None:
        """The in-memory record of a key, if held (test and admin view)."""
        rec = self.book.ledger.records.get(key)
        if rec is None:
            return None
        return {
            "kind": rec.kind,
            "items": dict(rec.items),
            "state": rec.state,
            "result": rec.result,
            "expires_ms": rec.expires_ms,
        }

    async def stats(self) -> dict[str, Any]:
        ledger, committer = self.book.ledger, self.committer
        return {
            "shard": self.index,
            "skus": len(ledger.stock),
            "records": len(ledger.records),
            "open": sum(1 for _ in ledger.open_reservations()),
            "pending_ops": committer.pending_ops,
            "batches": committer.batches,
            "requeued": committer.requeued,
            "commit_s": round(committer.commit_s, 3),
            "started_ms": self._started_ms,
        }

    async def check_alive(self) -> dict[str, Any]:
        return {"ok": True, "shard": self.index, "started_ms": self._started_ms}

    async def drain(self) -> None:
        """Wait until every queued operation has been committed and answered."""
        await self.committer.drain()

    async def inject_commit_failures(self, count: int) -> None:
        """Test hook: the next ``count`` group commits fail before COMMIT (then roll back)."""
        self.committer.fail_next(count)
