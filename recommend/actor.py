"""The ``Recommender`` actor: the only writer to the product index, and its query server.

A thin async shell over ``RecommendEngine``:

- **writes** (outbox events, rebuilds) run one at a time under ``_write_lock``, because
  Milvus Lite silently loses rows under concurrent inserts;
- **catalog events**: a background task tails the ``outbox`` table (``product.*`` rows)
  from the cursor stored with the index, applies the products it names, then persists the
  new cursor; after a restart it resumes from that cursor, so nothing is lost (replays
  are harmless: ``apply`` is idempotent);
- **reads** are coalesced: requests that arrive while a search runs are answered by the
  next single batched Milvus call, so many concurrent readers cost one search each round
  (Milvus Lite pays a per-call cost that grows with the collection, whatever the batch);
  similar-product lists are also cached until the next write (``SimilarCache``); while
  the index has at most ``recommender_table_max_rows`` products, similar and text search
  are answered from the engine's in-memory ``VectorTable`` instead of a Milvus search;
- **replica reads**: ``table_version`` and ``table`` hand that table to the Serve
  replicas, which answer similar-product requests from their own copy (see
  ``recommend.replica``); the table changes only after Milvus has taken a write;
- at start it loads the collection (it comes back released after a restart), or builds
  it from the database when it has never been built.

Runs with ``max_restarts=-1`` (see ``actors.registry``): a crash restarts it, it reopens
the index and catches up from the cursor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from raymall import logs, metrics
from raymall.batching import Batcher
from raymall.db import make_engine, session_factory
from raymall.errors import Unavailable
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.settings import Settings
from recommend import source
from recommend.embedder import Embedder
from recommend.engine import RecommendEngine
from recommend.index import Hit, IndexLocked, ProductIndex
from recommend.tail import OutboxTail
from recommend.vectors import VectorTable, single_threaded_blas

log = get_logger("recommender")

OUTBOX_BATCH = 1_000
GAP_RANGES_PER_POLL = 64
MAX_READ_BATCH = 64
CURSOR_SAVE_INTERVAL_S = 1.0
READ_TIMEOUT_S = 10.0
LOCK_WAIT_S = 30.0

Result = list[tuple[int, float]]


def _pairs(hits: list[Hit]) -> Result:
    return [(h.id, round(h.score, 6)) for h in hits]


class _Read(NamedTuple):
    kind: str  # "similar" | "search"
    key: Any  # product id | query text
    k: int


def _open_index(settings: Settings) -> ProductIndex:
    """Open the index, waiting a little while Milvus Lite's data is still held: after a
    crash, the previous incarnation's process may not have exited yet."""
    token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
    uri, alias = settings.resolved_milvus_uri, settings.recommender_collection
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return ProductIndex(uri, alias, token)
        except IndexLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Recommender:
    """Named ``recommender-0``; one per app."""

    def __init__(self, settings: Settings, index: int) -> None:
        logs.configure(settings.log_level)
        single_threaded_blas()  # table searches; torch keeps its own threads
        self.settings = settings
        self.index_no = index
        self.db = make_engine(settings.resolved_database_url, pool_size=4)
        sessions = session_factory(self.db)
        milvus = _open_index(settings)
        milvus.ensure()  # also loads the collection
        milvus.drop_orphans()
        self.engine = RecommendEngine(
            milvus,
            Embedder(
                settings.recommender_torch_threads,
                precision=settings.recommender_embed_precision,
            ),
            sessions,
            similar_cache=settings.recommender_similar_cache,
            table_max_rows=settings.recommender_table_max_rows,
        )
        self._write_lock = asyncio.Lock()
        # concurrent reads share one worker-thread call (one embedding and search batch)
        self._reads: Batcher[_Read, Any] = Batcher.in_thread(
            self._run_reads, max_batch=MAX_READ_BATCH
        )
        self._stopping = False
        self._synced = asyncio.Event()
        self._table_loaded = False  # the start-up sync has built or loaded the table
        self._physical = milvus.physical()
        self._tail = OutboxTail(0, self._grace_ms())
        self._saved_cursor = -1
        self._last_save = 0.0
        self._last_poll_ms = 0
        self._rows = 0
        loop = asyncio.get_event_loop()
        self._tasks = [loop.create_task(self._follow())]

    def _grace_ms(self) -> int:
        return int(self.settings.recommender_outbox_grace_s * 1000)

    # ---- lifecycle ------------------------------------------------------------------
    async def check_alive(self) -> dict[str, Any]:
        return {"ok": True, "synced": self._synced.is_set()}

    async def ping(self) -> dict[str, Any]:
        """Readiness: Milvus answers, and the index has caught up with the outbox once."""
        physical = await asyncio.to_thread(self.engine.index.physical)
        return {
            **self.engine.index.ping(),
            "ok": physical is not None and self._synced.is_set(),
            "collection": physical,
            "rows": self._rows,
            "cursor": self._tail.cursor,
        }

    async def stats(self) -> dict[str, Any]:
        return {
            "rows": await asyncio.to_thread(self.engine.index.count),
            "cursor": self._tail.cursor,
            "high": self._tail.high,
            "open_gaps": len(self._tail.gaps),
            "synced": self._synced.is_set(),
            "last_poll_ms": self._last_poll_ms,
            "similar_cache": self.engine.cache.stats(),
            "table": None if (t := self.engine.table) is None else [t.epoch, t.generation, len(t)],
        }

    async def drain(self) -> dict[str, Any]:
        """Stop following the outbox; wait for the write in progress; keep the cursor."""
        self._stopping = True
        async with self._write_lock:
            await asyncio.to_thread(self._save_cursor, True)
        return {"ok": True, "cursor": self._tail.cursor}

    # ---- writes ---------------------------------------------------------------------
    async def _follow(self) -> None:
        """Build or catch up, then apply new outbox rows every poll interval."""
        delay = self.settings.recommender_poll_interval_s
        while not self._stopping:
            try:
                async with self._write_lock:
                    await asyncio.to_thread(self._start_sync)
                break
            except Exception:  # the database or Milvus may not be up yet: keep trying
                log.warning("recommender start-up sync failed; retrying", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
        while not self._stopping:
            try:
                async with self._write_lock:
                    full = await asyncio.to_thread(self._poll_once)
                self._synced.set()
            except Exception:  # the database or Milvus may be briefly away: retry
                log.warning("outbox poll failed", exc_info=True)
                full = False
                await asyncio.sleep(min(5.0, 4 * self.settings.recommender_poll_interval_s))
            if not full:
                await asyncio.sleep(self.settings.recommender_poll_interval_s)

    def _start_sync(self) -> None:
        cursor = self.engine.index.cursor()
        if cursor is None:  # never built: fill it from the database
            with self.engine.sessions() as s:
                cursor = source.outbox_settled_cursor(s, now_ms() - self._grace_ms())
            summary = self.engine.rebuild(cursor)
            self._physical = self.engine.index.physical()
            self._saved_cursor = cursor
            log.info("built the product index", extra=summary)
        else:
            self.engine.load_table()
        self._tail = OutboxTail(cursor, self._grace_ms())
        self._refresh_size()
        self._table_loaded = True

    def _poll_once(self) -> bool:
        """One round: read new rows and open gaps, apply, advance. True if the page was
        full (more rows are probably waiting)."""
        physical = self.engine.index.physical()
        if physical != self._physical:  # rebuilt elsewhere: follow the new cursor
            self._physical = physical
            self._tail = OutboxTail(self.engine.index.cursor() or 0, self._grace_ms())
        now = now_ms()
        with self.engine.sessions() as s:
            rows = source.outbox_after(s, self._tail.high, OUTBOX_BATCH)
            gaps = self._tail.gaps_to_check(GAP_RANGES_PER_POLL)
            rows += source.outbox_in_ranges(s, gaps, OUTBOX_BATCH)
        fresh = set(self._tail.observe([r.id for r in rows], now))
        products = {pid for r in rows if r.id in fresh and (pid := r.product_id()) is not None}
        if products:
            started = time.perf_counter()
            result = self.engine.apply(sorted(products))
            metrics.RECOMMENDER_LATENCY.labels("apply").observe(time.perf_counter() - started)
            if result.wrote:
                self._refresh_size()
        self._tail.advance(now)
        self._save_cursor(False)
        self._last_poll_ms = now
        return len(rows) >= OUTBOX_BATCH

    def _save_cursor(self, force: bool) -> None:
        cursor = self._tail.cursor
        due = time.monotonic() - self._last_save >= CURSOR_SAVE_INTERVAL_S
        if cursor != self._saved_cursor and (force or due):
            self.engine.index.set_cursor(cursor)
            self._saved_cursor = cursor
            self._last_save = time.monotonic()

    def _refresh_size(self) -> None:
        self._rows = self.engine.index.count()
        metrics.RECOMMENDER_INDEX_SIZE.set(self._rows)
        limit = self.engine.table_max_rows
        if self.engine.table is None and 0 < limit and self._rows <= limit:  # back under it
            self.engine.load_table()

    async def sync_now(self) -> dict[str, Any]:
        """Apply whatever the outbox holds right now (tests and tools; the loop does this
        on its own every poll interval)."""
        async with self._write_lock:
            while await asyncio.to_thread(self._poll_once):
                pass
        return {"cursor": self._tail.cursor, "rows": self._rows}

    async def reindex(self, batch_size: int = 256) -> dict[str, Any]:
        """Rebuild the index from the database and swap it in; the outbox keeps being
        followed from where it was (events wait for the lock, then apply to the new one)."""
        async with self._write_lock:
            summary = await asyncio.to_thread(self._rebuild, batch_size)
        return summary

    def _rebuild(self, batch_size: int) -> dict[str, Any]:
        started = time.perf_counter()
        summary = self.engine.rebuild(self._tail.cursor, batch_size)
        self._physical = self.engine.index.physical()
        self._saved_cursor = self._tail.cursor
        self._refresh_size()
        metrics.RECOMMENDER_LATENCY.labels("rebuild").observe(time.perf_counter() - started)
        return summary

    # ---- the in-memory table, for replicas ---------------------------------------------
    async def table_version(self) -> dict[str, Any]:
        """``version``: (epoch, generation) of the in-memory table, or None when there is
        none; ``loading``: True until the start-up sync has loaded it (a replica keeps the
        copy it has meanwhile), False when None means off or over the size limit."""
        table = self.engine.table
        return {
            "version": None if table is None else list(table.version),
            "loading": table is None and not self._table_loaded,
        }

    async def table(self) -> VectorTable | None:
        """The current in-memory table (Ray maps its arrays read-only in the caller)."""
        return self.engine.table

    # ---- reads ----------------------------------------------------------------------
    async def _enqueue(self, kind: str, key: Any, k: int) -> Any:
        try:
            return await asyncio.wait_for(self._reads.put(_Read(kind, key, k)), READ_TIMEOUT_S)
        except TimeoutError as exc:
            raise Unavailable("the recommender is busy; retry the request") from exc

    async def similar(self, product_id: int, k: int) -> Result | None:
        """The k nearest published products to ``product_id`` (never itself), best first,
        as (id, cosine) pairs; None when the product is not published."""
        started = time.perf_counter()
        hits = await self._enqueue("similar", int(product_id), int(k))
        metrics.RECOMMENDER_LATENCY.labels("similar").observe(time.perf_counter() - started)
        return None if hits is None else _pairs(hits)

    async def search(self, query: str, k: int) -> Result:
        """The k published products closest in meaning to ``query``."""
        started = time.perf_counter()
        hits = await self._enqueue("search", query, int(k))
        metrics.RECOMMENDER_LATENCY.labels("search").observe(time.perf_counter() - started)
        return _pairs(hits)

    async def recommend(
        self, weights: dict[int, float], exclude: list[int], k: int
    ) -> Result | None:
        """Nearest products to the weighted mean of ``weights``' products, without
        ``exclude``; None when none of them is indexed (the caller falls back)."""
        started = time.perf_counter()
        hits = await asyncio.to_thread(self.engine.for_profile, weights, exclude, int(k))
        metrics.RECOMMENDER_LATENCY.labels("recommend").observe(time.perf_counter() - started)
        return None if hits is None else _pairs(hits)

    def _run_reads(self, batch: list[_Read]) -> list[Any]:
        """One batch of reads (in a worker thread): the similar ones, then the searches."""
        answers: list[Any] = [None] * len(batch)
        run: list[tuple[str, Callable[[list[tuple[Any, int]]], list[Any]]]] = [
            ("similar", self.engine.similar),
            ("search", self.engine.search_text),
        ]
        for kind, fn in run:
            at = [i for i, r in enumerate(batch) if r.kind == kind]
            if at:
                values = fn([(batch[i].key, batch[i].k) for i in at])
                for i, value in zip(at, values, strict=True):
                    answers[i] = value
        return answers
