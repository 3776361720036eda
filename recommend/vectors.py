"""An immutable in-memory copy of the product index: every indexed (published) product's
vector, searched exactly with one matrix product.

Why: a Milvus call costs milliseconds of fixed overhead (Milvus Lite's grows with the
collection), and every read through the ``Recommender`` actor queues behind the others.
A ``VectorTable`` of 10,000 products is 15 MB; one product against all of them is a
sub-millisecond matrix-vector product, and a batch of queries is one matrix product.

Guarantees:
- A table is never modified: ``with_changes`` returns a new one whose ``generation`` is
  one higher, so a reader holding a table sees one consistent index state, and a table
  can be shipped between processes as it is (Ray maps the arrays read-only).
- ``epoch`` names the lineage: a table loaded from the store or built by a rebuild gets a
  fresh random epoch; ``(epoch, generation)`` identifies an index state, so a reader can
  tell whether the copy it holds is current.
- ``nearest`` is exact cosine search (rows are unit vectors: cosine is a dot product):
  the same neighbours as the Milvus index, or better where its HNSW search misses one;
  ties are broken by product id.
- Rows are kept sorted by product id (lookups are a binary search).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recommend.embedder import DIM

Neighbours = list[tuple[int, float]]
GEMV_MAX_QUERIES = 3
# Every row's KNN nearest products are kept with the table (built with it, updated by
# ``with_changes``) up to KNN_MAX_ROWS rows: a similar list is then a lookup instead of a
# pass over the whole table (15 MB at 10,000 rows, read from memory on every request).
KNN = 50
KNN_MAX_ROWS = 20_000
KNN_BLOCK = 512


def single_threaded_blas() -> None:
    """Make numpy's BLAS run on the calling thread only, for this whole process.

    A search is a small matrix product (a few queries against the table) run many times a
    second; OpenBLAS would split each one over every core and spin its helper threads
    between calls, which on a busy machine costs two to three times the CPU for no gain
    (the replicas and the actor already run requests in parallel). Processes that search
    a ``VectorTable`` call this once at start-up (``threadpoolctl`` comes with
    sentence-transformers' scikit-learn)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _frozen_pair(
    a: np.ndarray | None, b: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    return (_frozen(a) if a is not None else None, _frozen(b) if b is not None else None)


def _knn_rows(
    ids: np.ndarray, vectors: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour lists of ``rows`` against the whole table: (len(rows), KNN) ids, best
    first (ties by id), -1 / -inf past the last other product; a row never lists itself."""
    out_ids = np.full((len(rows), KNN), -1, dtype=np.int64)
    out_scores = np.full((len(rows), KNN), -np.inf, dtype=np.float32)
    n = len(ids)
    take = min(KNN, n - 1)
    if take <= 0:
        return out_ids, out_scores
    for start in range(0, len(rows), KNN_BLOCK):
        block = rows[start : start + KNN_BLOCK]
        scores = vectors[block] @ vectors.T  # (block, n)
        scores[np.arange(len(block)), block] = -np.inf  # never itself
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((ids[top], -top_scores), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        out_ids[start : start + len(block), :take] = ids[top]
        out_scores[start : start + len(block), :take] = np.take_along_axis(
            top_scores, order, axis=1
        )
    return out_ids, out_scores


@dataclass(frozen=True)
class VectorTable:
    epoch: str
    generation: int
    ids: np.ndarray  # int64, ascending
    vectors: np.ndarray  # float32, (len(ids), DIM), unit rows, row n is product ids[n]
    # row n's KNN nearest other products (ids, best first, -1 past the end) and cosines;
    # None for tables over KNN_MAX_ROWS rows
    knn_ids: np.ndarray | None = None
    knn_scores: np.ndarray | None = None

    @classmethod
    def build(cls, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> VectorTable:
        """A new lineage (fresh epoch, generation 0) holding these rows."""
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        vec = np.asarray(vectors, dtype=np.float32).reshape(len(id_arr), DIM)
        order = np.argsort(id_arr, kind="stable")
        id_arr, vec = id_arr[order], vec[order]
        if len(id_arr) > 1 and not np.all(id_arr[1:] > id_arr[:-1]):
            raise ValueError("duplicate product ids in a vector table")
        vec = np.ascontiguousarray(vec)
        knn_ids = knn_scores = None
        if len(id_arr) <= KNN_MAX_ROWS:
            knn_ids, knn_scores = _knn_rows(id_arr, vec, np.arange(len(id_arr)))
        return cls(
            secrets.token_hex(8),
            0,
            _frozen(id_arr),
            _frozen(vec),
            *_frozen_pair(knn_ids, knn_scores),
        )

    @classmethod
    def empty(cls) -> VectorTable:
        return cls.build(np.zeros(0, dtype=np.int64), np.zeros((0, DIM), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def version(self) -> tuple[str, int]:
        return (self.epoch, self.generation)

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.vectors.nbytes)

    def row(self, product_id: int) -> int | None:
        n = int(np.searchsorted(self.ids, product_id))
        return n if n < len(self.ids) and int(self.ids[n]) == product_id else None

    def vector(self, product_id: int) -> np.ndarray | None:
        n = self.row(product_id)
        return None if n is None else self.vectors[n]

    def with_changes(
        self,
        upsert_ids: Sequence[int],
        upsert_vectors: np.ndarray,
        delete_ids: Sequence[int] = (),
    ) -> VectorTable:
        """The next generation: ``upsert_ids`` set to these vectors (added or replaced),
        ``delete_ids`` gone (absent ones are ignored)."""
        new_ids = np.asarray(upsert_ids, dtype=np.int64).reshape(-1)
        new_vec = np.asarray(upsert_vectors, dtype=np.float32).reshape(len(new_ids), DIM)
        drop = np.concatenate([new_ids, np.asarray(delete_ids, dtype=np.int64).reshape(-1)])
        keep = ~np.isin(self.ids, drop)
        ids = np.concatenate([self.ids[keep], new_ids])
        vectors = np.concatenate([self.vectors[keep], new_vec])
        order = np.argsort(ids, kind="stable")
        ids, vectors = ids[order], np.ascontiguousarray(vectors[order])
        if len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
            raise ValueError("duplicate product ids in an upsert")
        knn_ids = knn_scores = None
        if len(ids) <= KNN_MAX_ROWS:
            knn_ids, knn_scores = self._knn_after(ids, vectors, new_ids, drop)
        return VectorTable(
            self.epoch,
            self.generation + 1,
            _frozen(ids),
            _frozen(vectors),
            *_frozen_pair(knn_ids, knn_scores),
        )

    def _knn_after(
        self, ids: np.ndarray, vectors: np.ndarray, upserted: np.ndarray, changed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The neighbour lists of the next generation (rows ``ids``/``vectors``), reusing
        this one's: a row is ranked again in full when it is new or upserted, or when its
        list holds a changed or deleted product; any other row keeps its list, into which
        an upserted product is merged where it now scores above the list's last entry.
        Many changes at once (a tenth of the rows or more) rank every row again."""
        n = len(ids)
        old_ids, old_scores = self.knn_ids, self.knn_scores
        if old_ids is None or old_scores is None or len(self.ids) == 0 or len(changed) * 10 >= n:
            return _knn_rows(ids, vectors, np.arange(n))
        upserted_row = np.isin(ids, upserted)  # new rows are upserts too
        knn_ids = np.full((n, KNN), -1, dtype=np.int64)
        knn_scores = np.full((n, KNN), -np.inf, dtype=np.float32)
        kept = np.flatnonzero(~upserted_row)  # rows carried over unchanged
        old_row = np.searchsorted(self.ids, ids[kept])
        knn_ids[kept] = old_ids[old_row]
        knn_scores[kept] = old_scores[old_row]
        dirty = upserted_row | np.isin(knn_ids, changed).any(axis=1)
        rows = np.flatnonzero(dirty)
        if len(rows):
            knn_ids[rows], knn_scores[rows] = _knn_rows(ids, vectors, rows)
        clean = np.flatnonzero(~dirty)
        up_rows = np.flatnonzero(upserted_row)
        if len(clean) and len(up_rows):
            scores = vectors[clean] @ vectors[up_rows].T  # (clean rows, upserted)
            last = knn_scores[clean, -1]  # -inf where a list is not full
            for i in np.flatnonzero((scores > last[:, None]).any(axis=1)):
                r = clean[i]
                cand_ids = np.concatenate([knn_ids[r], ids[up_rows]])
                cand_scores = np.concatenate([knn_scores[r], scores[i]])
                top = np.lexsort((cand_ids, -cand_scores))[:KNN]
                knn_ids[r], knn_scores[r] = cand_ids[top], cand_scores[top]
        return knn_ids, knn_scores

    def neighbours(self, product_id: int, limit: int) -> Neighbours | None:
        """The ``limit`` products closest to ``product_id`` (never itself), best first, from
        the precomputed lists: None when the table has none, the product is not in it, or
        ``limit`` is over ``KNN``. The same products as ``nearest`` (scores may differ in
        the last float32 bits: lists come from matrix products)."""
        if self.knn_ids is None or self.knn_scores is None or limit > KNN:
            return None
        row = self.row(product_id)
        if row is None:
            return None
        ids = self.knn_ids[row, :limit]
        scores = self.knn_scores[row, :limit]
        return [(int(i), float(sc)) for i, sc in zip(ids, scores, strict=True) if i >= 0]

    def nearest(
        self, queries: np.ndarray, limit: int, exclude: Sequence[Sequence[int]] | None = None
    ) -> list[Neighbours]:
        """For each query vector (a row of ``queries``): the ``limit`` closest products,
        best first, as (id, cosine), leaving out that query's ``exclude`` ids."""
        q = np.asarray(queries, dtype=np.float32).reshape(-1, DIM)
        if len(q) == 0:
            return []
        skip = [list(e) for e in exclude] if exclude is not None else [[] for _ in range(len(q))]
        if len(skip) != len(q):
            raise ValueError("one exclude list per query")
        n = len(self.ids)
        if n == 0 or limit <= 0:
            return [[] for _ in range(len(q))]
        # OpenBLAS's matrix product packs the whole table first, which for two or three
        # queries costs several times as much as one matrix-vector product per query
        # (measured on 10,000 x 384: 0.3 ms per query as matrix-vector products, 1.4 to
        # 2 ms for a product of 2 or 3 queries); from GEMV_MAX_QUERIES up, one product.
        if len(q) <= GEMV_MAX_QUERIES:
            scores = [self.vectors @ row for row in q]
        else:
            scores = list(q @ self.vectors.T)
        out: list[Neighbours] = []
        for qi, ex in enumerate(skip):
            row_scores = scores[qi]
            want = min(n, limit + len(ex))
            if want < n:
                top = np.argpartition(-row_scores, want - 1)[:want]
            else:
                top = np.arange(n)
            top = top[np.lexsort((self.ids[top], -row_scores[top]))]  # score desc, id asc
            excluded = set(ex)
            picked: Neighbours = []
            for r in top:
                pid = int(self.ids[r])
                if pid in excluded:
                    continue
                picked.append((pid, float(row_scores[r])))
                if len(picked) == limit:
                    break
            out.append(picked)
        return out
