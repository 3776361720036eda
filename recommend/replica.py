"""A Serve replica's copy of the Recommender's in-memory ``VectorTable``, and the
similar-product reads and query-vector searches it answers without calling the actor.

Every similar request used to be a round trip to the one ``Recommender`` actor, where it
queued behind the others for a Milvus search. A replica now holds the actor's table (15 MB
for 10,000 products) and ranks neighbours itself, so similar reads scale with replicas
and no longer wait on the actor.

Guarantees:
- **One index state at a time**: the copy is a table the actor held, whole; it never
  mixes two generations, and it is replaced, never modified.
- **Freshness**: the replica asks the actor for the table's ``(epoch, generation)``
  every ``refresh_s`` and fetches the table when it changed, so a write the actor has
  applied is seen here within about ``refresh_s`` plus one fetch. With the defaults
  (outbox polled every 0.5 s, refresh every 0.5 s) a new product reaches similar lists in
  about a second, inside the 5 s bound.
- **Nothing unpublished is shown**: an unpublished product may stay in the copy until the
  next refresh, but the service re-checks every returned product against the database.
- **Fallback**: no copy (the actor is starting, the index is larger than
  ``recommender_table_max_rows``, or the feature is off) or a product missing from the
  copy (published since) means ``neighbours`` returns None and the caller asks the actor,
  which can embed a product not yet indexed.
- **Actor down or restarting**: the replica keeps answering from the copy it has until the
  actor serves a table again; the actor is the only writer, so the index cannot have moved
  on without it.
- A table of up to ``KNN_MAX_ROWS`` rows carries every product's ``KNN`` nearest
  neighbours (``recommend.vectors``): a similar list of up to that many is a lookup. The
  lists asked for are kept as Python lists for the table they came from (at most
  ``LISTS_KEPT``; a new table starts afresh), since making one from the arrays cost
  more than the rest of the lookup.
- Otherwise, ranking one product against a table of up to ``INLINE_MAX_ROWS`` rows is one
  matrix-vector product (about 0.3 ms for 10,000 rows) plus a partial sort, done on the
  event loop: a hop to a worker thread and back cost more CPU than that, and more
  latency (the GIL handoff). Larger tables are ranked in a worker thread, concurrent
  requests in batches (one matrix product per batch), never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from prometheus_client import Counter

from raymall.batching import Batcher
from raymall.logs import get_logger
from recommend.vectors import Neighbours, VectorTable, single_threaded_blas

log = get_logger("recommend.replica")

SIMILAR_READS = Counter(
    "raymall_recommender_similar_reads_total",
    "Similar-product lists ranked by a replica from its copy of the index, or by the "
    "Recommender actor",
    ["source"],
)

Call = Callable[..., Awaitable[Any]]
INLINE_MAX_ROWS = 20_000
LISTS_KEPT = 50_000  # (product, limit) neighbour lists kept for the table held


Ask = tuple[VectorTable, int, int]  # (table, row of the product, limit)


def _rank(batch: list[Ask]) -> list[Neighbours]:
    """Each ask's neighbours (never the product itself): one matrix product per table."""
    out: list[Neighbours] = [[] for _ in batch]
    groups: dict[int, list[int]] = {}
    for n, (table, _, _) in enumerate(batch):
        groups.setdefault(id(table), []).append(n)
    for members in groups.values():
        table = batch[members[0]][0]
        rows = np.asarray([batch[n][1] for n in members])
        exclude = [[int(table.ids[batch[n][1]])] for n in members]
        limit = max(batch[n][2] for n in members)
        found = table.nearest(table.vectors[rows], limit, exclude)
        for n, pairs in zip(members, found, strict=True):
            out[n] = pairs[: batch[n][2]]
    return out


Query = tuple[VectorTable, np.ndarray, int]  # (table, query vector, limit)


def _search(batch: list[Query]) -> list[Neighbours]:
    """Each query's nearest products: one matrix product per table."""
    out: list[Neighbours] = [[] for _ in batch]
    groups: dict[int, list[int]] = {}
    for n, (table, _, _) in enumerate(batch):
        groups.setdefault(id(table), []).append(n)
    for members in groups.values():
        table = batch[members[0]][0]
        limit = max(batch[n][2] for n in members)
        found = table.nearest(np.stack([batch[n][1] for n in members]), limit)
        for n, pairs in zip(members, found, strict=True):
            out[n] = pairs[: batch[n][2]]
    return out


class ReplicaTable:
    def __init__(self, call: Call, refresh_s: float) -> None:
        single_threaded_blas()
        self._call = call
        self.refresh_s = refresh_s
        self.table: VectorTable | None = None
        self._task: asyncio.Task[None] | None = None
        self._ranker: Batcher[Ask, Neighbours] = Batcher.in_thread(_rank)
        self._searcher: Batcher[Query, Neighbours] = Batcher.in_thread(_search)
        self._failing = False
        self._lists: dict[tuple[int, int], Neighbours] = {}  # for _lists_of only
        self._lists_of: VectorTable | None = None

    # ---- following the actor --------------------------------------------------------
    def start(self) -> None:
        """Follow the actor's table from now on (call on the replica's event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def refresh(self) -> bool:
        """One check: fetch the actor's table if it is not the one held. True when the
        copy changed (including to None: the actor has no table, and is not about to load
        one after a restart)."""
        state = await self._call("table_version")
        version = state["version"]
        held = self.table.version if self.table is not None else None
        if version is None:
            if state["loading"]:  # a restarted actor still loading: keep the copy
                return False
            changed = self.table is not None
            self.table = None
            return changed
        if held is not None and tuple(version) == held:
            return False
        table = await self._call("table")
        if table is not None and (self.table is None or table.version != self.table.version):
            self.table = table
            return True
        return False

    async def _follow(self) -> None:
        while True:
            try:
                await self.refresh()
                if self._failing:
                    log.info("replica index copy is following the recommender again")
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the actor restarting: keep the copy, try again
                if not self._failing:
                    log.warning("replica index copy could not refresh: %s", exc)
                self._failing = True
            await asyncio.sleep(self.refresh_s)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # ---- reads ----------------------------------------------------------------------
    async def neighbours(self, product_id: int, limit: int) -> Neighbours | None:
        """The ``limit`` products closest to ``product_id`` as (id, cosine), best first,
        or None when the copy cannot answer (no copy, or the product is not in it). The
        list may be one kept for later asks: read it, never change it."""
        table = self.table
        if table is None:
            return None
        if self._lists_of is not table:
            self._lists, self._lists_of = {}, table
        listed = self._lists.get((product_id, limit))
        if listed is not None:
            return listed
        row = table.row(product_id)
        if row is None:
            return None
        listed = table.neighbours(product_id, limit)  # the precomputed lists
        if listed is not None:
            if len(self._lists) >= LISTS_KEPT:
                self._lists.clear()
            self._lists[(product_id, limit)] = listed
            return listed
        if len(table) <= INLINE_MAX_ROWS:  # sub-millisecond: no thread hop
            return _rank([(table, row, limit)])[0]
        return await self._ranker.submit((table, row, limit))

    async def search(self, vector: np.ndarray, limit: int) -> Neighbours | None:
        """The ``limit`` products closest to a query vector as (id, cosine), best first,
        or None when there is no copy (ask the actor). Ranked as similar reads are: on the
        event loop for a small table, in a worker thread in batches for a large one."""
        table = self.table
        if table is None:
            return None
        if len(table) <= INLINE_MAX_ROWS:
            return table.nearest(vector[None, :], limit)[0]
        return await self._searcher.submit((table, vector, limit))
