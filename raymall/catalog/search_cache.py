"""Search answers cached by the catalog generation: keyword result pages
(``GET /products/search``) and the keyword and semantic rankings of ``GET /search``.

A search costs a full-text query (and, for semantic search, a query embedding); popular
queries repeat. ``SearchCache`` keeps an answer (JSON text) under a digest of everything
it depends on (the normalised query, filters, sort, page, size, cursor, and for semantic
rankings the index version), in two tiers:

- **this replica** (an LRU of at most ``local_entries`` answers, kept decoded by the
  cache's ``decode``, so a hit parses nothing): a hit costs no I/O beyond the generation
  read below;
- **Redis** (shared by every replica): ``<prefix>:search:<name>:<generation>:<digest>``,
  for ``ttl_s``.

Guarantees:
- **A catalog change shows on the next request.** Every catalog write bumps the listing
  generation after its commit (``raymall.catalog.cache.invalidate_sync``). Each request
  reads the generation (one Redis GET, shared by the requests that arrived while the
  previous GET was out, always one that started after the request arrived:
  ``FreshRead``), and an answer is only ever served under the generation it was computed
  under, read *before* its load started: the generation is part of the Redis key, and the
  replica drops its whole tier when the generation moves. An answer loaded across a
  write is stored under the old generation, which no later request reads.
- **Bounded staleness of what changes without a catalog write** (stock: the ``in_stock``
  filter, and a keyword page's ``in_stock`` flags where the availability read model cannot
  answer them): an answer is served for at most ``ttl_s`` (plus a tenth of it, the time a
  finished load stays joinable) after its load started, from either tier (the Redis value
  carries that time), as for cached listing pages.
- **One load per answer**: concurrent misses of one (generation, digest) on a replica
  share one load (single-flight); a load that fails is not stored, and each waiting
  caller gets its error (a bad cursor is still a 422).
- **Redis down**: answers come from their loads (concurrent identical ones still share
  one), nothing is stored; the cache comes back with Redis.
- ``enabled=False`` or ``ttl_s`` 0: every request loads.

Metrics: ``raymall_cache_events_total{cache=<name>}`` counts per request ``hit`` (this
replica), ``shared_hit`` (Redis), ``miss`` (waited on a load), ``bypass`` and ``error``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from redis.exceptions import RedisError

from raymall import metrics
from raymall.catalog.cache import CacheKeys
from raymall.logs import get_logger
from raymall.singleflight import FreshRead, SingleFlight

log = get_logger("catalog.search_cache")
LOCAL_ENTRIES = 2_048
FLIGHT_LINGER_S = 1.0

Load = Callable[[], Awaitable[str]]
T = TypeVar("T")


def digest(query: Mapping[str, Any]) -> str:
    """A stable digest of an answer's inputs (any JSON-able mapping)."""
    raw = json.dumps(query, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


class SearchCache(Generic[T]):
    """Two-tier cache of search answers; see the module docstring for the guarantees.
    Answers are stored as text and handed out as ``decode(text)``: a decoded answer is
    shared by every request that hits it, so callers must not change it."""

    def __init__(
        self,
        redis: Any,
        *,
        name: str,
        decode: Callable[[str], T],
        ttl_s: float,
        keys: CacheKeys | None = None,
        enabled: bool = True,
        local_entries: int = LOCAL_ENTRIES,
    ) -> None:
        self.redis = redis
        self.name = name
        self.decode = decode
        self.ttl_s = ttl_s
        self.enabled = enabled and ttl_s > 0 and redis is not None
        self.keys = keys or CacheKeys()
        self.local_entries = local_entries
        self._gen_key = self.keys.listing_gen()
        self._generation: FreshRead[str] = FreshRead(self._read_generation)
        self._held_gen: str | None = None
        self._local: OrderedDict[str, tuple[float, T]] = OrderedDict()  # digest -> (born, answer)
        # keys carry the generation; a finished load stays joinable for a moment, so a
        # miss decided just before it landed does not load again
        self._flight = SingleFlight(linger_s=min(FLIGHT_LINGER_S, ttl_s / 10))
        self._direct = SingleFlight()  # Redis away: share concurrent identical loads only
        self._events: dict[str, Any] = {}

    def _count(self, event: str) -> None:
        counter = self._events.get(event)
        if counter is None:
            counter = self._events[event] = metrics.CACHE_EVENTS.labels(self.name, event)
        counter.inc()

    async def _read_generation(self) -> str:
        gen = await self.redis.get(self._gen_key)
        if isinstance(gen, bytes):
            gen = gen.decode()
        return str(gen) if gen is not None else "0"

    def redis_key(self, generation: str, key: str) -> str:
        return f"{self.keys.prefix}:search:{self.name}:{generation}:{key}"

    def __len__(self) -> int:
        return len(self._local)

    async def get(self, query: Mapping[str, Any], load: Load) -> T:
        """The answer for ``query``; ``load`` computes it (as text) when no tier has it."""
        key = digest(query)
        if not self.enabled:
            self._count("bypass")
            return self.decode(await self._direct.do(key, load))
        try:
            gen = await self._generation.read()
        except (RedisError, OSError) as exc:
            self._count("error")
            log.warning("search cache unavailable, searching the database: %s", exc)
            return self.decode(await self._direct.do(key, load))
        if gen != self._held_gen:
            self._local.clear()
            self._held_gen = gen
        held = self._local.get(key)
        if held is not None and held[0] > time.time() - self.ttl_s:
            self._local.move_to_end(key)
            self._count("hit")
            return held[1]
        body, event = await self._flight.do((gen, key), lambda: self._fill(gen, key, load))
        self._count(event)
        return body

    async def _fill(self, gen: str, key: str, load: Load) -> tuple[T, str]:
        """(answer, event): from Redis when another replica stored it, else from ``load``."""
        rkey = self.redis_key(gen, key)
        try:
            stored = await self.redis.get(rkey)
        except (RedisError, OSError) as exc:
            log.warning("search cache read failed: %s", exc)
            stored = None
        if isinstance(stored, bytes):
            stored = stored.decode()
        if stored is not None:
            born_text, _, body = stored.partition("|")
            born = float(born_text)
            if born > time.time() - self.ttl_s:
                answer = self.decode(body)
                self._keep(gen, key, born, answer)
                return answer, "shared_hit"
        born = time.time()  # before the load: what it reads is at least this fresh
        body = await load()
        try:
            await self.redis.set(rkey, f"{born:.3f}|{body}", px=max(1, int(self.ttl_s * 1000)))
        except (RedisError, OSError) as exc:
            log.warning("search cache fill failed: %s", exc)
        answer = self.decode(body)
        self._keep(gen, key, born, answer)
        return answer, "miss"

    def _keep(self, gen: str, key: str, born: float, answer: T) -> None:
        if self._held_gen != gen or self.local_entries <= 0:
            return  # the generation moved while the load was out
        self._local[key] = (born, answer)
        self._local.move_to_end(key)
        while len(self._local) > self.local_entries:
            self._local.popitem(last=False)
