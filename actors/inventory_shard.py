"""InventoryShard: the one owner of the stock of the SKUs that hash to it.

A thin async shell over ``raymall.domain.ledger.Ledger`` that adds batching, persistence
and recovery. Guarantees:

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

Wire format: see ``raymall.domain.ledger`` (ops are tuples, results are codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from actors import flash_shard, flash_store
from actors.inventory_store import (
    DuplicateKey,
    InjectedFault,
    InventoryStore,
    StaleStock,
    Statement,
)
from raymall import logs, metrics
from raymall.domain.ledger import Ledger, Op, pack_batch, unpack_batch
from raymall.errors import DomainError, Unavailable
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.settings import Settings

log = get_logger("inventory")
GIL_SWITCH_INTERVAL_S = 0.0005


@dataclass
class _Stage:
    """One batch applied in memory whose transaction has not committed yet."""

    batch: list[tuple[list[Op], asyncio.Future[list[Any]]]]
    ops: list[Op]
    results: list[Any]
    statements: list[Statement]  # empty: nothing to write; bound by store.render
    created: list[str]  # keys it inserts (looked up after a duplicate-key refusal)
    attempt: int
    write: asyncio.Future[None] | None = None
    started: float = 0.0


def _fail(batch: list[tuple[list[Op], asyncio.Future[list[Any]]]], err: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(err)


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
        self._window_s = settings.group_commit_window_ms / 1000
        self._max_ops = settings.group_commit_max_ops
        self.store = InventoryStore(settings.resolved_database_url, index)
        self.ledger = self._load()
        self.flash = flash_shard.new_desk(settings, index, self.ledger)
        self._needs_reload = False
        self._pending: deque[tuple[list[Op], asyncio.Future[list[str]]]] = deque()
        self._pending_ops = 0
        self._staged: list[_Stage] = []
        self._requeued = 0  # batches undone because the batch under them failed
        self._first_at = 0.0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._fail_commits = 0
        self._batches = 0
        self._commit_s = 0.0
        self._started_ms = now_ms()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._commit_loop()),
            loop.create_task(self._sweep_loop()),
        ]

    def _load(self) -> Ledger:
        ledger = Ledger()
        for sku_id, stock in self.store.load_stock().items():
            ledger.load_stock(sku_id, stock)
        for key, rec in self.store.load_open().items():
            ledger.load_record(key, rec)
        problems = ledger.violations(full_history=False)
        if problems:
            log.warning("shard %s loaded inconsistent stock: %s", self.index, problems[:5])
        log.info(
            "shard %s loaded %s SKUs and %s open reservations",
            self.index,
            len(ledger.stock),
            sum(1 for _ in ledger.open_reservations()),
        )
        return ledger

    # ---- the write path ---------------------------------------------------------------
    async def submit(self, ops: list[Op]) -> list[Any]:
        """Apply ``ops`` in order in the next group commit; answer one code per op once
        the transaction holding them has committed. Raises ``Unavailable`` if it failed."""
        if not ops:
            return []
        fut: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append((ops, fut))
        self._pending_ops += len(ops)
        self._idle.clear()
        self._wake.set()
        if self._pending_ops >= self._max_ops:
            self._full.set()
        return await fut

    async def submit_packed(self, blob: bytes) -> bytes:
        """``submit`` for a batch packed by ``pack_batch`` (the clients' wire format);
        the answer is packed the same way."""
        return pack_batch(await self.submit(unpack_batch(blob)))

    async def _commit_loop(self) -> None:
        while True:
            try:
                await self._wake.wait()
                # Wait for company only when callers came one op at a time: a client batch
                # already waited in its client's window.
                alone = self._pending_ops == len(self._pending)
                if alone and self._pending_ops < self._max_ops:
                    delay = self._first_at + self._window_s - time.monotonic()
                    if delay > 0:
                        try:
                            await asyncio.wait_for(self._full.wait(), delay)
                        except TimeoutError:
                            pass
                await self._pipeline()
            except Exception:  # the loop must outlive any single batch
                log.exception("shard %s committer error", self.index)
                await asyncio.sleep(0.05)
            finally:
                if not self._pending:
                    self._idle.set()

    def _take(self) -> list[tuple[list[Op], asyncio.Future[list[Any]]]]:
        batch: list[tuple[list[Op], asyncio.Future[list[Any]]]] = []
        n = 0
        while self._pending and n < self._max_ops:
            ops, fut = self._pending.popleft()
            batch.append((ops, fut))
            n += len(ops)
        self._pending_ops -= n
        if self._pending_ops < self._max_ops:
            self._full.clear()
        if not self._pending:
            self._wake.clear()
        return batch

    def _requeue(self, batch: list[tuple[list[Op], asyncio.Future[list[Any]]]]) -> None:
        """Put a staged-then-undone batch back at the head of the queue (not answered)."""
        self._requeued += 1
        if not self._pending:
            self._first_at = time.monotonic()
        for ops, fut in reversed(batch):
            self._pending.appendleft((ops, fut))
            self._pending_ops += len(ops)
        self._wake.set()
        if self._pending_ops >= self._max_ops:
            self._full.set()

    async def _pipeline(self) -> None:
        """Commit what is pending, two batches deep: while batch N's transaction is in
        flight, batch N+1 is applied in memory on top of it and its statements rendered;
        N+1's transaction starts when N's has committed. Answers go out in order, each
        only after its own commit. When N fails, N+1 is undone first (it was applied on
        top of N) and queued again unanswered, then N is undone and its callers get the
        error (or N is applied again, for replays of stored keys)."""
        staged = self._staged  # open batches, oldest first: [head (writing), next]
        try:
            while True:
                if self._pending and len(staged) < 2:
                    if not staged and self._needs_reload:
                        await self._reload()
                    stage = await self._stage(self._take())
                    if stage is not None:
                        staged.append(stage)
                        if len(staged) == 1:
                            self._start(stage)
                            continue
                if not staged:
                    return
                head = staged[0]
                assert head.write is not None
                if len(staged) == 1 and not head.write.done():
                    # Stage newcomers as soon as they arrive, not after the commit.
                    waiter: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
                    writing: asyncio.Future[Any] = head.write
                    await asyncio.wait({writing, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    if not head.write.done():
                        continue
                try:
                    await head.write
                except Exception as exc:
                    if len(staged) == 2:  # newest first
                        self._undo_newest()
                        self._requeue(staged.pop().batch)
                    self._undo_newest()
                    staged.pop()
                    retry = await self._failed(head, exc)
                    if retry is not None:
                        again = await self._stage(retry, attempt=1)
                        if again is not None:
                            staged.append(self._start(again))
                    continue
                staged.pop(0)
                self._committed(head)
                if staged:
                    self._start(staged[0])
        except BaseException:
            # Unexpected: the outcome of a write in flight is unknown. Let it finish, undo
            # everything staged, answer its callers, and reload before the next batch.
            for stage in staged:
                if stage.write is not None:
                    with contextlib.suppress(BaseException):
                        await asyncio.shield(stage.write)
            while staged:
                self._undo_newest()
                _fail(staged.pop().batch, Unavailable(f"inventory shard {self.index} failed"))
            self._needs_reload = True
            raise

    def _undo_newest(self) -> None:
        self.ledger.rollback()
        self.flash.rollback()

    async def _stage(
        self, batch: list[tuple[list[Op], asyncio.Future[list[Any]]]], attempt: int = 0
    ) -> _Stage | None:
        """Apply ``batch`` in memory (a new open ledger batch) and render its statements.
        Answers the callers with an error and returns None if it cannot be staged."""
        if not batch:
            return None
        ops = [op for ops, _ in batch for op in ops]
        try:
            await self._prepare(ops)
            await flash_shard.prepare(self, ops)
        except Exception as exc:
            _fail(batch, exc if isinstance(exc, DomainError) else Unavailable(str(exc)))
            return None
        now = now_ms()
        ledger, desk = self.ledger, self.flash
        ledger.begin()
        desk.begin(now)
        try:
            is_flash = flash_shard.is_flash
            results = [desk.apply(op) if is_flash(op) else ledger.apply(op) for op in ops]
            changes = ledger.changes()
            flash_changes = desk.changes()
            statements: list[Statement] = []
            if changes or flash_changes:
                statements = self.store.statements(changes, now)
                statements += flash_store.statements(flash_changes, self.store.ph, now)
                statements = self.store.render(statements)
        except Exception as exc:
            ledger.rollback()
            desk.rollback()
            _fail(batch, Unavailable(f"inventory shard {self.index}: {exc!r}"))
            return None
        created = [k for k, _ in changes.created]
        return _Stage(batch, ops, results, statements, created, attempt)

    def _start(self, stage: _Stage) -> _Stage:
        loop = asyncio.get_running_loop()
        if not stage.statements:  # only replays and refusals: nothing to write
            stage.write = loop.create_future()
            stage.write.set_result(None)
            return stage
        fail = self._fail_commits > 0
        if fail:
            self._fail_commits -= 1
        stage.started = time.perf_counter()
        stage.write = asyncio.ensure_future(
            asyncio.to_thread(self.store.write_statements, stage.statements, fail=fail)
        )
        return stage

    def _committed(self, stage: _Stage) -> None:
        self.ledger.commit()
        self.flash.commit()
        if stage.statements:
            elapsed = time.perf_counter() - stage.started
            self._batches += 1
            self._commit_s += elapsed
            metrics.INVENTORY_COMMIT_LATENCY.labels(self._label).observe(elapsed)
            metrics.INVENTORY_BATCH_SIZE.labels(self._label).observe(len(stage.ops))
        i = 0
        for ops, fut in stage.batch:
            if not fut.done():
                fut.set_result(stage.results[i : i + len(ops)])
            i += len(ops)
        self._count(stage.ops, stage.results)
        self.ledger.evict(self.settings.inventory_key_cache)

    async def _failed(
        self, stage: _Stage, exc: BaseException
    ) -> list[tuple[list[Op], asyncio.Future[list[Any]]]] | None:
        """After a failed transaction (memory already undone): the batch to stage again,
        or None once its callers have their error."""
        err: DomainError
        if isinstance(exc, DuplicateKey):
            found = {}
            if stage.attempt == 0:
                with contextlib.suppress(Exception):  # no answer: reload, below
                    found = await asyncio.to_thread(self.store.lookup, stage.created)
            if found:
                for key, rec in found.items():  # replays of keys stored earlier
                    self.ledger.load_record(key, rec)
                return stage.batch
            self._needs_reload = True
            err = Unavailable(f"inventory shard {self.index} write refused")
        elif isinstance(exc, InjectedFault):
            err = Unavailable(f"inventory shard {self.index}: {exc}")
        elif isinstance(exc, StaleStock):
            log.error("shard %s: %s; reloading from the database", self.index, exc)
            self._needs_reload = True
            err = Unavailable(f"inventory shard {self.index} is reloading")
        else:
            # The commit's outcome may be unknown: reload before the next batch.
            self._needs_reload = True
            log.warning("shard %s commit failed: %r", self.index, exc)
            err = Unavailable(f"inventory shard {self.index} commit failed")
        _fail(stage.batch, err)
        return None

    async def _prepare(self, ops: list[Op]) -> None:
        """Load SKUs created after start, and records of release/confirm keys not held."""
        ledger = self.ledger
        skus: set[int] = set()
        keys: list[str] = []
        for op in ops:
            try:
                kind = op[0]
                if kind == "reserve":
                    skus.update(s for s in op[2] if s not in ledger.stock)
                elif kind == "adjust":
                    if op[2] not in ledger.stock:
                        skus.add(op[2])
                elif kind in ("release", "confirm") and op[1] not in ledger.records:
                    keys.append(op[1])
            except (IndexError, TypeError, AttributeError):
                continue  # malformed: the ledger answers "invalid"
        skus = {s for s in skus if type(s) is int}
        keys = [k for k in keys if isinstance(k, str)]
        if skus:
            for sku_id, stock in (
                await asyncio.to_thread(self.store.load_stock, sorted(skus))
            ).items():
                ledger.load_stock(sku_id, stock)
        if keys:
            for key, rec in (await asyncio.to_thread(self.store.lookup, keys)).items():
                ledger.load_record(key, rec)

    async def _reload(self) -> None:
        self.ledger = await asyncio.to_thread(self._load)
        self.flash = flash_shard.new_desk(self.settings, self.index, self.ledger)
        self._needs_reload = False

    def _count(self, ops: list[Op], results: list[str]) -> None:
        codes = (flash_shard.result_code(r) for r in results)
        counts = Counter(zip((op[0] if op else "?" for op in ops), codes, strict=True))
        for (kind, result), n in counts.items():
            metrics.INVENTORY_OPS.labels(str(kind), result).inc(n)

    # ---- expiry -----------------------------------------------------------------------
    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.inventory_sweep_interval_s)
            keys: list[str] = []
            try:
                keys = self.ledger.due(now_ms(), limit=self._max_ops)
                if keys:
                    now = now_ms()
                    await self.submit([("expire", k, now) for k in keys])
            except Exception as exc:
                self.ledger.requeue(keys)
                log.warning("shard %s expiry sweep failed: %r", self.index, exc)

    # ---- reads and operations ---------------------------------------------------------
    async def _ensure_stock(self, sku_ids: list[int]) -> None:
        missing = [s for s in sku_ids if type(s) is int and s not in self.ledger.stock]
        if missing:
            for sku_id, stock in (await asyncio.to_thread(self.store.load_stock, missing)).items():
                self.ledger.load_stock(sku_id, stock)

    async def availability(self, sku_ids: list[int]) -> dict[int, int]:
        """Available units per SKU this shard owns (unknown SKUs are left out). Served from
        memory: it may include the effect of a batch whose commit is in flight."""
        await self._ensure_stock(sku_ids)
        stock = self.ledger.stock
        return {s: stock[s].available for s in sku_ids if s in stock}

    async def snapshot(self, sku_ids: list[int]) -> dict[int, dict[str, int]]:
        """Full in-memory counters per SKU (test and admin view)."""
        await self._ensure_stock(sku_ids)
        stock = self.ledger.stock
        return {s: stock[s].as_dict() for s in sku_ids if s in stock}

    async def reservation(self, key: str) -> dict[str, Any] | None:
        """The in-memory record of a key, if held (test and admin view)."""
        rec = self.ledger.records.get(key)
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
        return {
            "shard": self.index,
            "skus": len(self.ledger.stock),
            "records": len(self.ledger.records),
            "open": sum(1 for _ in self.ledger.open_reservations()),
            "pending_ops": self._pending_ops,
            "batches": self._batches,
            "requeued": self._requeued,
            "commit_s": round(self._commit_s, 3),
            "started_ms": self._started_ms,
        }

    async def check_alive(self) -> dict[str, Any]:
        return {"ok": True, "shard": self.index, "started_ms": self._started_ms}

    async def drain(self) -> None:
        """Wait until every queued operation has been committed and answered."""
        while self._pending or not self._idle.is_set():
            await self._idle.wait()

    async def inject_commit_failures(self, count: int) -> None:
        """Test hook: the next ``count`` group commits fail before COMMIT (then roll back)."""
        self._fail_commits = int(count)
