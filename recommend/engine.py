"""The recommender's synchronous core: keep the index equal to the catalog, and query it.

No Ray and no asyncio here: the ``Recommender`` actor calls these methods from worker
threads (holding its write lock for writes), and ``raymall reindex`` calls them directly.

Guarantees:
- ``apply(ids)`` makes the index agree with the database for those products: a published
  product is upserted, anything else (unpublished, draft, deleted) is removed. It is
  idempotent, and a product whose ``doc_hash`` is unchanged costs no embedding and no write.
- ``rebuild`` fills a fresh collection and swaps it in atomically (see ``recommend.index``).
- Reads see only published products, and never the query product itself.
- With ``table_max_rows`` > 0 the engine also holds ``table``, a ``VectorTable`` equal to
  the index (loaded by ``load_table``, replaced after every write the store has taken,
  rebuilt by ``rebuild``), and answers similar and text search from it (exact search);
  past ``table_max_rows`` products it drops the table and reads go to Milvus again (a
  table is loaded back once the index is under the limit: see the actor).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from raymall import metrics
from recommend import source
from recommend.embedder import DIM, Embedder
from recommend.index import Hit, ProductIndex
from recommend.ranking import weighted_mean
from recommend.text import ProductDoc, doc_hash, product_text
from recommend.vectors import VectorTable


def _hits(found: list[list[tuple[int, float]]]) -> list[list[Hit]]:
    return [[Hit(pid, score) for pid, score in pairs] for pairs in found]


class SimilarCache:
    """Similar-product lists by product, valid until the next write to the index.

    Neighbours only change when the index changes, so every write (``invalidate``) drops
    the whole cache, and a list computed from an index state that a write has replaced
    since is not stored (``put`` checks the generation it was computed under). LRU-bounded
    to ``capacity`` products; 0 turns it off.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._data: OrderedDict[int, tuple[int, list[Hit]]] = OrderedDict()

    def get(self, product_id: int, k: int) -> list[Hit] | None:
        with self._lock:
            entry = self._data.get(product_id)
            if entry is None or entry[0] < k:
                self.misses += 1
                metrics.RECOMMENDER_SIMILAR_CACHE.labels("miss").inc()
                return None
            self._data.move_to_end(product_id)
            self.hits += 1
            metrics.RECOMMENDER_SIMILAR_CACHE.labels("hit").inc()
            return entry[1][:k]

    def put(self, product_id: int, k: int, hits: list[Hit], generation: int) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            if generation != self.generation:
                return
            self._data[product_id] = (k, hits)
            self._data.move_to_end(product_id)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def invalidate(self) -> None:
        with self._lock:
            self.generation += 1
            self._data.clear()

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._data), "hits": self.hits, "misses": self.misses}


@dataclass(frozen=True)
class ApplyResult:
    upserted: int
    deleted: int
    unchanged: int

    @property
    def wrote(self) -> bool:
        return bool(self.upserted or self.deleted)


class RecommendEngine:
    def __init__(
        self,
        index: ProductIndex,
        embedder: Embedder,
        sessions: sessionmaker[Session],
        similar_cache: int = 0,
        table_max_rows: int = 0,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.sessions = sessions
        self.cache = SimilarCache(similar_cache)
        self.table_max_rows = table_max_rows
        self.table: VectorTable | None = None

    # ---- the in-memory table ---------------------------------------------------------
    def load_table(self) -> VectorTable | None:
        """Read the whole index into ``table`` (None when it is off or the index is larger
        than ``table_max_rows``)."""
        table = None
        if self.table_max_rows > 0 and self.index.count() <= self.table_max_rows:
            ids, vectors = self.index.all_vectors()
            table = VectorTable.build(ids, vectors) if len(ids) <= self.table_max_rows else None
        self.table = table
        return table

    def _table_changed(self, ids: Sequence[int], vectors: np.ndarray, gone: Sequence[int]) -> None:
        table = self.table
        if table is None:
            return
        table = table.with_changes(ids, vectors, gone)
        self.table = table if len(table) <= self.table_max_rows else None

    # ---- writes (one writer at a time: the caller serialises) -------------------------
    def embed_docs(self, docs: Sequence[ProductDoc]) -> np.ndarray:
        return self.embedder.encode([product_text(d) for d in docs])

    def apply(self, product_ids: Sequence[int]) -> ApplyResult:
        ids = sorted({int(i) for i in product_ids})
        if not ids:
            return ApplyResult(0, 0, 0)
        with self.sessions() as session:
            docs = source.load_docs(session, ids)
        stored = self.index.hashes(ids)
        live = [docs[i] for i in ids if i in docs and docs[i].published]
        gone = [i for i in ids if i in stored and (i not in docs or not docs[i].published)]
        hashes = {d.id: doc_hash(d) for d in live}
        changed = [d for d in live if stored.get(d.id) != hashes[d.id]]
        if changed or gone:
            self.cache.invalidate()
        vectors = self.embed_docs(changed)
        if changed:
            self.index.upsert(changed, vectors, [hashes[d.id] for d in changed])
        if gone:
            self.index.delete(gone)
        if changed or gone:
            self.index.flush()
            self._table_changed([d.id for d in changed], vectors, gone)
            self.cache.invalidate()  # and reads that overlapped the write are not kept
        return ApplyResult(len(changed), len(gone), len(live) - len(changed))

    def rebuild(
        self,
        cursor: int,
        batch_size: int = 256,
        progress: Callable[[int], Any] | None = None,
    ) -> dict[str, Any]:
        """Embed every published product into a new collection, then swap it in."""
        started = time.perf_counter()
        self.index.drop_orphans()
        name = self.index.create_physical()
        total = 0
        kept_ids: list[int] = []
        kept: list[np.ndarray] = []
        with self.sessions() as session:
            for docs in source.iter_published_docs(session, batch_size):
                vectors = self.embed_docs(docs)
                self.index.upsert(docs, vectors, [doc_hash(d) for d in docs], collection=name)
                total += len(docs)
                if total <= self.table_max_rows:
                    kept_ids.extend(d.id for d in docs)
                    kept.append(vectors)
                if progress is not None:
                    progress(len(docs))
        self.index.flush(collection=name)
        self.index.set_cursor(cursor, collection=name)
        self.index.swap(name)
        if 0 < self.table_max_rows and total <= self.table_max_rows:
            vectors = np.concatenate(kept) if kept else np.zeros((0, DIM), dtype=np.float32)
            self.table = VectorTable.build(kept_ids, vectors)
        else:
            self.table = None
        self.cache.invalidate()
        return {
            "collection": name,
            "products": total,
            "cursor": cursor,
            "seconds": round(time.perf_counter() - started, 2),
        }

    # ---- reads -------------------------------------------------------------------------
    def product_vectors(self, product_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Vectors of published products: from the index, or embedded on the spot for a
        product published so recently that its event is not applied yet."""
        ids = sorted({int(i) for i in product_ids})
        table = self.table
        if table is not None:
            found = {i: v for i in ids if (v := table.vector(i)) is not None}
        else:
            found = self.index.vectors(ids)
        missing = [i for i in ids if i not in found]
        if missing:
            with self.sessions() as session:
                docs = source.load_docs(session, missing)
            fresh = [docs[i] for i in missing if i in docs and docs[i].published]
            if fresh:
                found.update(zip([d.id for d in fresh], self.embed_docs(fresh), strict=True))
        return found

    def similar(self, requests: Sequence[tuple[int, int]]) -> list[list[Hit] | None]:
        """For each (product_id, k): its k nearest neighbours, or None if the product is
        not published. Cached lists are reused; one index search serves the rest."""
        generation = self.cache.generation
        out = [self.cache.get(pid, k) for pid, k in requests]
        todo = [n for n, hits in enumerate(out) if hits is None]
        fresh = self._similar([requests[n] for n in todo])
        for n, hits in zip(todo, fresh, strict=True):
            out[n] = hits
            if hits is not None:
                self.cache.put(requests[n][0], requests[n][1], hits, generation)
        return out

    def _similar(self, requests: Sequence[tuple[int, int]]) -> list[list[Hit] | None]:
        if not requests:
            return []
        vectors = self.product_vectors([pid for pid, _ in requests])
        asked = [(pid, k) for pid, k in requests if pid in vectors]
        out: list[list[Hit] | None] = [None] * len(requests)
        if not asked:
            return out
        limit = max(k for _, k in asked) + 1
        queries = np.stack([vectors[pid] for pid, _ in asked])
        table = self.table
        if table is not None:
            hits = _hits(table.nearest(queries, limit, [[pid] for pid, _ in asked]))
        else:
            hits = self.index.search(queries, limit)
        by_request = iter(hits)
        for n, (pid, k) in enumerate(requests):
            if pid in vectors:
                out[n] = [h for h in next(by_request) if h.id != pid][:k]
        return out

    def search_text(self, queries: Sequence[tuple[str, int]]) -> list[list[Hit]]:
        """For each (query, k): the k published products closest in meaning."""
        if not queries:
            return []
        vectors = self.embedder.encode([q for q, _ in queries])
        return self.search_vectors([(vectors[n], k) for n, (_, k) in enumerate(queries)])

    def search_vectors(self, queries: Sequence[tuple[np.ndarray, int]]) -> list[list[Hit]]:
        """For each (query vector, k): the k published products closest to it (one table
        product or one index search for the batch)."""
        if not queries:
            return []
        vectors = np.stack([np.asarray(v, dtype=np.float32).reshape(DIM) for v, _ in queries])
        limit = max(k for _, k in queries)
        table = self.table
        if table is not None:
            hits = _hits(table.nearest(vectors, limit))
        else:
            hits = self.index.search(vectors, limit)
        return [h[:k] for h, (_, k) in zip(hits, queries, strict=True)]

    def for_profile(
        self, weights: dict[int, float], exclude: Sequence[int], k: int
    ) -> list[Hit] | None:
        """Nearest products to the weighted mean of the given products' vectors, leaving
        out ``exclude``; None when no weighted product has a vector (cold start)."""
        vectors = self.index.vectors([pid for pid, w in weights.items() if w > 0])
        profile = weighted_mean(vectors, weights)
        if profile is None:
            return None
        return self.index.search(profile[None, :], k, exclude_ids=sorted(set(exclude)))[0]
