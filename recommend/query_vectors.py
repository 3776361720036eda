"""Search query embeddings, per Serve replica: cached, single-flight and batched.

Embedding a query costs about 2 ms of a CPU (all-MiniLM-L6-v2), which made it the largest
cost of a semantic or hybrid search; shoppers repeat queries. ``QueryVectors`` keeps:

- an LRU of at most ``capacity`` vectors (1.5 KB each) under the query's normal form
  (``normal_form``: lower case, single spaces; the model is uncased, so the vector is
  the same);
- **single-flight**: concurrent misses of one query share one embedding;
- **batching**: misses of different queries that arrive together go to the model in one
  call (``raymall.batching.Batcher``: one call in flight, the next batch forms meanwhile).

A vector depends on the model only, never on the catalog, so cached vectors never go
stale. A failed embedding is not cached; each caller of that batch gets the error.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from raymall import metrics
from raymall.batching import Batcher
from raymall.singleflight import SingleFlight
from recommend.embedder import DIM

CACHE_NAME = "query_vectors"
CAPACITY = 8_192
MAX_BATCH = 64

Embed = Callable[[list[str]], Awaitable[Any]]  # texts -> one vector (row) per text


def normal_form(query: str) -> str:
    """The text embedded for ``query``: what the uncased model would see anyway."""
    return " ".join(query.lower().split())


class QueryVectors:
    def __init__(self, embed: Embed, *, capacity: int = CAPACITY) -> None:
        self._embed = embed
        self.capacity = capacity
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._flight = SingleFlight()
        self._batcher: Batcher[str, np.ndarray] = Batcher(self._embed_batch, max_batch=MAX_BATCH)
        self._hit = metrics.CACHE_EVENTS.labels(CACHE_NAME, "hit")
        self._miss = metrics.CACHE_EVENTS.labels(CACHE_NAME, "miss")

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def model_calls(self) -> int:
        return self._batcher.batches

    async def get(self, query: str) -> np.ndarray:
        """The unit vector of ``query`` (float32, read-only: do not change it)."""
        text = normal_form(query)
        vector = self._lru.get(text)
        if vector is not None:
            self._lru.move_to_end(text)
            self._hit.inc()
            return vector
        self._miss.inc()
        return await self._flight.do(text, lambda: self._load(text))

    async def _load(self, text: str) -> np.ndarray:
        vector = await self._batcher.submit(text)
        if self.capacity > 0:
            self._lru[text] = vector
            while len(self._lru) > self.capacity:
                self._lru.popitem(last=False)
        return vector

    async def _embed_batch(self, texts: list[str]) -> Sequence[np.ndarray]:
        rows = np.asarray(await self._embed(texts), dtype=np.float32).reshape(-1, DIM)
        if len(rows) != len(texts):
            raise RuntimeError(f"{len(rows)} vectors for {len(texts)} queries")
        out = []
        for row in rows:
            vector = np.array(row, dtype=np.float32)  # its own copy: one row kept, not all
            vector.setflags(write=False)
            out.append(vector)
        return out
