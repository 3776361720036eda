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

**Milvus unavailable**: the actor starts without it (the model loads; the index is opened
by the follow loop, retried with backoff), so query embedding (``embed``) keeps working.
Reads that need Milvus answer ``Unavailable`` (503, with ``retry_after``) at once rather
than failing with a driver error; reads the in-memory table answers go on. A poll whose
apply fails keeps the products it named (``_pending``) and applies them first on the
next round, and the cursor does not move past them until they are applied, so products
changed during an outage are indexed once Milvus is back (the in-memory table is then
reloaded from the index, in case a failed apply had half-landed). ``ping`` (readiness)
answers from that state without calling Milvus, so it stays quick during an outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from raymall import logs, metrics
from raymall.batching import Batcher
from raymall.db import make_engine, session_factory
from raymall.errors import DomainError, Unavailable
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.settings import Settings
from recommend import source
from recommend.embedder import DIM, Embedder
from recommend.engine import RecommendEngine
from recommend.index import Hit, IndexLocked, ProductIndex, is_server_uri
from recommend.tail import OutboxTail
from recommend.vectors import VectorTable, single_threaded_blas

log = get_logger("recommender")

OUTBOX_BATCH = 1_000
GAP_RANGES_PER_POLL = 64
MAX_READ_BATCH = 64
CURSOR_SAVE_INTERVAL_S = 1.0
READ_TIMEOUT_S = 10.0
LOCK_WAIT_S = 30.0
RETRY_AFTER_S = 5  # Retry-After of a read refused while the index is unavailable
POLL_STUCK_S = 30.0  # a poll out this long: Milvus (or the database) is not answering

Result = list[tuple[int, float]]


def _pairs(hits: list[Hit]) -> Result:
    return [(h.id, round(h.score, 6)) for h in hits]


class _Read(NamedTuple):
    kind: str  # "similar" | "search" | "vector" | "embed"
    key: Any  # product id | query text | query vector | query text
    k: int


def index_unavailable(reason: str) -> Unavailable:
    return Unavailable(
        f"the product index is unavailable ({reason})", details={"retry_after": RETRY_AFTER_S}
    )


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
        self.sessions = session_factory(self.db)
        self.embedder = Embedder(
            settings.recommender_torch_threads, precision=settings.recommender_embed_precision
        )
        # opened by the follow loop (retried while Milvus is unreachable)
        self.engine: RecommendEngine | None = None
        self._index_error: str | None = "the index is not open yet"
        self._pending: set[int] = set()  # products of a failed apply, applied next round
        self._reload_table = False  # a failed apply may have half-landed: reload the table
        self._poll_started: float | None = None  # monotonic start of the poll in progress
        self._write_lock = asyncio.Lock()
        # concurrent reads share one worker-thread call (one embedding and search batch)
        self._reads: Batcher[_Read, Any] = Batcher.in_thread(
            self._run_reads, max_batch=MAX_READ_BATCH
        )
        self._stopping = False
        self._synced = asyncio.Event()
        self._table_loaded = False  # the start-up sync has built or loaded the table
        self._physical: str | None = None
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

    def _ready(self) -> RecommendEngine:
        """The engine, or ``Unavailable`` while the index is not open."""
        if self.engine is None:
            raise index_unavailable(self._index_error or "not open yet")
        return self.engine

    async def ping(self) -> dict[str, Any]:
        """Readiness: the index is open, the last round with Milvus succeeded, and the
        index has caught up with the outbox once. From state kept by the follow loop
        (which talks to Milvus every poll interval), so it is quick while Milvus hangs."""
        started = self._poll_started
        stuck = started is not None and time.monotonic() - started > POLL_STUCK_S
        error = f"a poll has waited over {POLL_STUCK_S:.0f} s" if stuck else self._index_error
        out = {
            "ok": self.engine is not None and error is None and self._synced.is_set(),
            "backend": "server" if is_server_uri(self.settings.resolved_milvus_uri) else "lite",
            "collection": self._physical,
            "rows": self._rows,
            "cursor": self._tail.cursor,
            "pending": len(self._pending),
        }
        if error is not None:
            out["error"] = error
        return out

    async def stats(self) -> dict[str, Any]:
        engine = self._ready()
        return {
            "rows": await asyncio.to_thread(engine.index.count),
            "cursor": self._tail.cursor,
            "high": self._tail.high,
            "open_gaps": len(self._tail.gaps),
            "synced": self._synced.is_set(),
            "last_poll_ms": self._last_poll_ms,
            "pending": len(self._pending),
            "similar_cache": engine.cache.stats(),
            "table": None if (t := engine.table) is None else [t.epoch, t.generation, len(t)],
        }

    async def drain(self) -> dict[str, Any]:
        """Stop following the outbox; wait for the write in progress; keep the cursor."""
        self._stopping = True
        async with self._write_lock:
            if self.engine is not None and not self._pending:
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
                self._index_error = None
                break
            except Exception as exc:  # the database or Milvus may not be up yet: keep trying
                self._index_error = f"start-up: {type(exc).__name__}: {exc}"[:300]
                log.warning("recommender start-up sync failed; retrying", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
        while not self._stopping:
            try:
                async with self._write_lock:
                    self._poll_started = time.monotonic()
                    try:
                        full = await asyncio.to_thread(self._poll_once)
                    finally:
                        self._poll_started = None
                if self._index_error is not None:
                    log.info("the product index is following the outbox again")
                self._index_error = None
                self._synced.set()
            except Exception as exc:  # the database or Milvus may be briefly away: retry
                if self._index_error is None:
                    log.warning("outbox poll failed; retrying", exc_info=True)
                self._index_error = f"{type(exc).__name__}: {exc}"[:300]
                full = False
                await asyncio.sleep(min(5.0, 4 * self.settings.recommender_poll_interval_s))
            if not full:
                await asyncio.sleep(self.settings.recommender_poll_interval_s)

    def _open(self) -> RecommendEngine:
        """Open the index (once): Milvus must answer."""
        if self.engine is None:
            milvus = _open_index(self.settings)
            try:
                milvus.ensure()  # also loads the collection
                milvus.drop_orphans()
            except BaseException:
                milvus.close()
                raise
            self.engine = RecommendEngine(
                milvus,
                self.embedder,
                self.sessions,
                similar_cache=self.settings.recommender_similar_cache,
                table_max_rows=self.settings.recommender_table_max_rows,
            )
            self._physical = milvus.physical()
        return self.engine

    def _start_sync(self) -> None:
        engine = self._open()
        cursor = engine.index.cursor()
        if cursor is None:  # never built: fill it from the database
            with engine.sessions() as s:
                cursor = source.outbox_settled_cursor(s, now_ms() - self._grace_ms())
            summary = engine.rebuild(cursor)
            self._physical = engine.index.physical()
            self._saved_cursor = cursor
            log.info("built the product index", extra=summary)
        else:
            engine.load_table()
        self._tail = OutboxTail(cursor, self._grace_ms())
        self._refresh_size()
        self._table_loaded = True

    def _poll_once(self) -> bool:
        """One round: read new rows and open gaps, apply, advance. True if the page was
        full (more rows are probably waiting)."""
        engine = self._ready()
        physical = engine.index.physical()
        if physical != self._physical:  # rebuilt elsewhere: follow the new cursor
            self._physical = physical
            self._tail = OutboxTail(engine.index.cursor() or 0, self._grace_ms())
        now = now_ms()
        with engine.sessions() as s:
            rows = source.outbox_after(s, self._tail.high, OUTBOX_BATCH)
            gaps = self._tail.gaps_to_check(GAP_RANGES_PER_POLL)
            rows += source.outbox_in_ranges(s, gaps, OUTBOX_BATCH)
        fresh = set(self._tail.observe([r.id for r in rows], now))
        products = {pid for r in rows if r.id in fresh and (pid := r.product_id()) is not None}
        # rows once observed are not read again: their products stay pending until applied
        self._pending |= products
        if self._pending:
            started = time.perf_counter()
            try:
                result = engine.apply(sorted(self._pending))
            except Exception:
                self._reload_table = True
                raise
            self._pending.clear()
            metrics.RECOMMENDER_LATENCY.labels("apply").observe(time.perf_counter() - started)
            if self._reload_table:
                engine.load_table()
                engine.cache.invalidate()
                self._reload_table = False
                log.info("the product index caught up after a failed apply")
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
            self._ready().index.set_cursor(cursor)
            self._saved_cursor = cursor
            self._last_save = time.monotonic()

    def _refresh_size(self) -> None:
        engine = self._ready()
        self._rows = engine.index.count()
        metrics.RECOMMENDER_INDEX_SIZE.set(self._rows)
        limit = engine.table_max_rows
        if engine.table is None and 0 < limit and self._rows <= limit:  # back under it
            engine.load_table()

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
        engine = self._ready()
        summary = engine.rebuild(self._tail.cursor, batch_size)
        self._physical = engine.index.physical()
        self._saved_cursor = self._tail.cursor
        self._refresh_size()
        metrics.RECOMMENDER_LATENCY.labels("rebuild").observe(time.perf_counter() - started)
        return summary

    # ---- the in-memory table, for replicas ---------------------------------------------
    async def table_version(self) -> dict[str, Any]:
        """``version``: (epoch, generation) of the in-memory table, or None when there is
        none; ``loading``: True until the start-up sync has loaded it (a replica keeps the
        copy it has meanwhile), False when None means off or over the size limit."""
        table = self.engine.table if self.engine is not None else None
        return {
            "version": None if table is None else list(table.version),
            "loading": table is None and not self._table_loaded,
        }

    async def table(self) -> VectorTable | None:
        """The current in-memory table (Ray maps its arrays read-only in the caller)."""
        return self.engine.table if self.engine is not None else None

    # ---- reads ----------------------------------------------------------------------
    async def _enqueue(self, kind: str, key: Any, k: int) -> Any:
        try:
            return await asyncio.wait_for(self._reads.put(_Read(kind, key, k)), READ_TIMEOUT_S)
        except TimeoutError as exc:
            raise Unavailable(
                "the recommender is busy; retry the request", details={"retry_after": 1}
            ) from exc

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

    async def search_vector(self, vector: np.ndarray, k: int) -> Result:
        """The k published products closest to a query vector (from ``embed``)."""
        started = time.perf_counter()
        hits = await self._enqueue("vector", np.asarray(vector, dtype=np.float32), int(k))
        metrics.RECOMMENDER_LATENCY.labels("search").observe(time.perf_counter() - started)
        return _pairs(hits)

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Query vectors, one unit-length row per text (float32, 384 wide). Needs the
        model only, so it answers while Milvus is away; concurrent calls share one model
        call."""
        started = time.perf_counter()
        rows = await asyncio.gather(*(self._enqueue("embed", str(t), 0) for t in texts))
        metrics.RECOMMENDER_LATENCY.labels("embed").observe(time.perf_counter() - started)
        return np.stack(rows) if rows else np.zeros((0, DIM), dtype=np.float32)

    async def recommend(
        self, weights: dict[int, float], exclude: list[int], k: int
    ) -> Result | None:
        """Nearest products to the weighted mean of ``weights``' products, without
        ``exclude``; None when none of them is indexed (the caller falls back)."""
        started = time.perf_counter()
        engine = self._ready()
        try:
            hits = await asyncio.to_thread(engine.for_profile, weights, exclude, int(k))
        except Exception as exc:  # Milvus away: the caller falls back to best sellers
            raise index_unavailable(type(exc).__name__) from exc
        metrics.RECOMMENDER_LATENCY.labels("recommend").observe(time.perf_counter() - started)
        return None if hits is None else _pairs(hits)

    def _run_reads(self, batch: list[_Read]) -> list[Any]:
        """One batch of reads (in a worker thread), one call per kind: embeddings, similar
        lists, vector and text searches. A kind that fails answers its own callers with
        the error (``Unavailable`` when the index cannot be read), not the others."""
        answers: list[Any] = [None] * len(batch)
        engine = self.engine

        def embed(reqs: list[tuple[Any, int]]) -> list[Any]:
            return list(self.embedder.encode([text for text, _ in reqs]))

        def needs_index(name: str) -> Callable[[list[tuple[Any, int]]], list[Any]]:
            def run(reqs: list[tuple[Any, int]]) -> list[Any]:
                if engine is None:
                    raise index_unavailable(self._index_error or "not open yet")
                return list(getattr(engine, name)(reqs))

            return run

        run: list[tuple[str, Callable[[list[tuple[Any, int]]], list[Any]]]] = [
            ("embed", embed),
            ("similar", needs_index("similar")),
            ("vector", needs_index("search_vectors")),
            ("search", needs_index("search_text")),
        ]
        for kind, fn in run:
            at = [i for i, r in enumerate(batch) if r.kind == kind]
            if not at:
                continue
            try:
                values = fn([(batch[i].key, batch[i].k) for i in at])
            except DomainError as exc:
                values = [exc] * len(at)
            except Exception as exc:  # the index (Milvus) failed this read
                log.warning("index read failed: %r", exc)
                values = [index_unavailable(type(exc).__name__)] * len(at)
            for i, value in zip(at, values, strict=True):
                answers[i] = value
        return answers
