"""A Serve replica's copy of the Recommender's in-memory ``VectorTable``, and the
similar-product reads it answers without calling the actor.

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
- **Actor down**: the replica keeps answering from the copy it has; the actor is the only
  writer, so the index cannot have moved on without it.
- Concurrent requests are ranked in batches (one matrix product per batch) in a worker
  thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import Counter

from raymall.logs import get_logger
from recommend.vectors import Neighbours, VectorTable

log = get_logger("recommend.replica")

SIMILAR_READS = Counter(
    "raymall_recommender_similar_reads_total",
    "Similar-product lists ranked by a replica from its copy of the index, or by the "
    "Recommender actor",
    ["source"],
)

Call = Callable[..., Awaitable[Any]]


@dataclass
class _Ask:
    table: VectorTable
    row: int
    limit: int
    future: asyncio.Future[Neighbours] = field(repr=False)


def _rank(batch: list[_Ask]) -> list[Neighbours]:
    """Each ask's neighbours (never the product itself): one matrix product per table."""
    out: dict[int, Neighbours] = {}
    groups: dict[int, list[_Ask]] = {}
    for ask in batch:
        groups.setdefault(id(ask.table), []).append(ask)
    for asks in groups.values():
        table = asks[0].table
        rows = np.asarray([a.row for a in asks])
        exclude = [[int(table.ids[a.row])] for a in asks]
        found = table.nearest(table.vectors[rows], max(a.limit for a in asks), exclude)
        for ask, pairs in zip(asks, found, strict=True):
            out[id(ask)] = pairs[: ask.limit]
    return [out[id(a)] for a in batch]


class ReplicaTable:
    def __init__(self, call: Call, refresh_s: float) -> None:
        self._call = call
        self.refresh_s = refresh_s
        self.table: VectorTable | None = None
        self.checked_at = 0.0  # monotonic time of the last successful version check
        self._task: asyncio.Task[None] | None = None
        self._asks: list[_Ask] = []
        self._ranking = False
        self._failing = False

    # ---- following the actor --------------------------------------------------------
    def start(self) -> None:
        """Follow the actor's table from now on (call on the replica's event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def refresh(self) -> bool:
        """One check: fetch the actor's table if it is not the one held. True when the
        copy changed (including to None: the actor has no table)."""
        version = await self._call("table_version")
        held = self.table.version if self.table is not None else None
        self.checked_at = time.monotonic()
        if version is None:
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
        or None when the copy cannot answer (no copy, or the product is not in it)."""
        table = self.table
        row = table.row(product_id) if table is not None else None
        if table is None or row is None:
            return None
        future: asyncio.Future[Neighbours] = asyncio.get_running_loop().create_future()
        self._asks.append(_Ask(table, row, limit, future))
        if not self._ranking:
            self._ranking = True
            asyncio.get_running_loop().create_task(self._rank_pending())
        return await future

    async def _rank_pending(self) -> None:
        """Rank whatever has queued, in batches, until nothing waits."""
        try:
            while self._asks:
                batch, self._asks = self._asks, []
                try:
                    results = await asyncio.to_thread(_rank, batch)
                except Exception as exc:  # hand the failure to every waiting caller
                    for ask in batch:
                        if not ask.future.done():
                            ask.future.set_exception(exc)
                    continue
                for ask, pairs in zip(batch, results, strict=True):
                    if not ask.future.done():
                        ask.future.set_result(pairs)
        finally:
            self._ranking = False
