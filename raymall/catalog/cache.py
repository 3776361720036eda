"""The catalog read caches, in Redis and shared by every replica: the product detail
cache (below) and the listing cache (``ListingCache``).

Read path (one Redis round trip on a hit): a Lua script checks the Bloom filter and
fetches the cached document and the key's generation together.

- Bloom says "certainly absent" (filter complete): answer None, no DB, no cache fill.
- A cached document (or a cached null for a missing id): answer it.
- Otherwise load from the DB through a per-replica **singleflight** keyed by
  (product id, generation): concurrent misses on one replica share one DB load (the
  finished load stays joinable for ``FLIGHT_LINGER_S``, so a miss decided just before
  the fill landed does not load again).

Write path: after a catalog write commits, the writer bumps the product's generation and
deletes its document (``invalidate_sync``). A fill stores its document only if the
generation it read before loading is still current (compare-and-set in Lua), so a load
that raced with a write can never put the old document back; and a read that starts
after the write sees the new generation and never joins an older flight. Together: an
update is visible on the next read, on every replica.

TTL: ``ttl_s`` with +/- ``jitter`` spread, so keys filled together do not expire
together; missing ids are cached as ``null`` for ``null_ttl_s``. When Redis fails the
cache steps aside: reads go to the DB (concurrent ones per id still share a load). With
``enabled=False`` (benchmarks) every read is a plain DB load.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.exceptions import RedisError

from raymall import metrics
from raymall.catalog import bloom
from raymall.catalog.bloom import BloomSpec
from raymall.catalog.local_cache import encode_ids
from raymall.logs import get_logger
from raymall.singleflight import SingleFlight

T = TypeVar("T")
Doc = dict[str, Any]
Loader = Callable[[int], Awaitable[Doc | None]]
CACHE_NAME = "product_detail"
NULL = "null"
FLIGHT_LINGER_S = 1.0
log = get_logger("catalog.cache")

LOOKUP = """
local state = 2
if #ARGV > 0 and redis.call('GETBIT', KEYS[1], 0) == 1 then
  for i = 1, #ARGV do
    if redis.call('GETBIT', KEYS[1], ARGV[i]) == 0 then return {0, false, false} end
  end
  state = 1
end
return {state, redis.call('GET', KEYS[2]), redis.call('GET', KEYS[3])}
"""

FILL = """
local current = redis.call('GET', KEYS[2]) or '0'
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  return 1
end
return 0
"""


class CacheKeys:
    def __init__(self, prefix: str = "catalog") -> None:
        self.prefix = prefix

    def doc(self, product_id: int) -> str:
        return f"{self.prefix}:product:{product_id}"

    def gen(self, product_id: int) -> str:
        return f"{self.prefix}:product:{product_id}:gen"

    def listing_gen(self) -> str:
        return f"{self.prefix}:listing:gen"

    def listing(self, digest: str) -> str:
        return f"{self.prefix}:listing:{digest}"


def invalidate_sync(
    client: Any,
    keys: CacheKeys,
    product_ids: Sequence[int],
    gen_ttl_s: int,
    channel: str | None = None,
) -> None:
    """After a commit: bump each product's generation and drop its cached document, and
    bump the listing generation (every cached listing page is then stale); then tell the
    replicas' in-process copies on ``channel`` (``raymall.catalog.local_cache``)."""
    pipe = client.pipeline(transaction=False)
    pipe.incr(keys.listing_gen())
    for pid in product_ids:
        pipe.incr(keys.gen(pid))
        pipe.expire(keys.gen(pid), gen_ttl_s)
        pipe.delete(keys.doc(pid))
    if channel is not None:
        pipe.publish(channel, encode_ids(product_ids))
    pipe.execute()


class DetailCache:
    """Cache-aside reads of product documents; see the module docstring for guarantees."""

    def __init__(
        self,
        redis: Any,
        loader: Loader,
        *,
        spec: BloomSpec | None,
        ttl_s: int,
        null_ttl_s: int,
        jitter: float = 0.1,
        enabled: bool = True,
        keys: CacheKeys | None = None,
    ) -> None:
        self.redis = redis
        self.loader = loader
        self.spec = spec
        self.ttl_s = ttl_s
        self.null_ttl_s = null_ttl_s
        self.jitter = jitter
        self.enabled = enabled
        self.keys = keys or CacheKeys()
        self.flight = SingleFlight(linger_s=FLIGHT_LINGER_S)  # keys carry the generation
        self.direct = SingleFlight()  # cache bypassed: share concurrent loads only
        self._lookup = redis.register_script(LOOKUP)
        self._fill_script = redis.register_script(FILL)

    def ttl(self, base: int) -> int:
        spread = base * self.jitter
        return max(1, round(base + random.uniform(-spread, spread)))

    def _count(self, event: str) -> None:
        metrics.CACHE_EVENTS.labels(CACHE_NAME, event).inc()

    async def get(self, product_id: int) -> Doc | None:
        """The product document, or None when the id does not exist."""
        if not self.enabled:
            self._count("bypass")
            return await self.loader(product_id)
        offsets = self.spec.offsets(product_id) if self.spec is not None else []
        keys = [
            self.spec.key if self.spec else "-",
            self.keys.doc(product_id),
            self.keys.gen(product_id),
        ]
        try:
            state, cached, gen = await self._lookup(keys=keys, args=offsets)
        except (RedisError, OSError) as exc:
            self._count("error")
            log.warning("detail cache unavailable, reading the database: %s", exc)
            return await self.direct.do(product_id, lambda: self.loader(product_id))
        if int(state) == 0:
            self._count("bloom_reject")
            return None
        if cached is not None:
            doc: Doc | None = json.loads(cached)
            self._count("hit" if doc is not None else "null_hit")
            return doc
        self._count("miss")
        generation = str(gen) if gen is not None else "0"
        return await self.flight.do(
            (product_id, generation), lambda: self._fill(product_id, generation)
        )

    async def _fill(self, product_id: int, generation: str) -> Doc | None:
        doc = await self.loader(product_id)
        value = NULL if doc is None else json.dumps(doc, separators=(",", ":"))
        ttl = self.ttl(self.null_ttl_s if doc is None else self.ttl_s)
        try:
            await self._fill_script(
                keys=[self.keys.doc(product_id), self.keys.gen(product_id)],
                args=[generation, value, ttl],
            )
        except (RedisError, OSError) as exc:
            log.warning("detail cache fill failed: %s", exc)
        return doc

    async def warm_bloom(
        self, load_id_batches: Callable[[], list[list[int]]], lock_ttl_s: int = 120
    ) -> bool:
        """Add every product id to the shared filter and mark it complete. One replica at
        a time (a Redis lock); returns False when another replica holds the lock."""
        if self.spec is None:
            return False
        token = f"{random.getrandbits(64):x}"
        if not await self.redis.set(self.spec.lock_key, token, nx=True, ex=lock_ttl_s):
            return False
        try:
            batches = await asyncio.to_thread(load_id_batches)
            for batch in batches:
                await bloom.add(self.redis, self.spec, batch)
            await bloom.mark_complete(self.redis, self.spec)
            return True
        finally:
            if await self.redis.get(self.spec.lock_key) == token:
                await self.redis.delete(self.spec.lock_key)


LISTING_LOOKUP = """
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[2])}
"""
LISTING_CACHE_NAME = "product_listing"
LISTING_TTL_SPREAD = 0.15  # a page lives 85% to 100% of the listing TTL


class ListingCache:
    """Listing pages (already serialised JSON) cached for ``ttl_s``.

    A page is stored as ``"<generation>|<json>"`` under a digest of its query, and read
    together with the current listing generation in one round trip: it is served only if
    both match. Every catalog write bumps the generation after its commit
    (``invalidate_sync``), so a page filled from a read that raced with a write carries
    the old generation and is never served: a catalog change shows in listings on the
    next read, on every replica. What changes without a catalog write (stock, for the
    ``in_stock`` filter) may be up to ``ttl_s`` old. Each page lives between
    ``1 - LISTING_TTL_SPREAD`` and 1 times ``ttl_s``, drawn at its fill, so pages filled
    together (a replica's first minutes, a catalog write) do not all expire, and go back to
    the database, in the same instant. Concurrent misses for one page on a
    replica share one database read. When Redis fails, pages are read from the database
    (concurrent reads of one page still share one read).
    """

    def __init__(
        self, redis: Any, *, ttl_s: float, keys: CacheKeys | None = None, enabled: bool = True
    ) -> None:
        self.redis = redis
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.enabled = enabled and ttl_s > 0
        self.keys = keys or CacheKeys()
        self.flight = SingleFlight(linger_s=min(FLIGHT_LINGER_S, ttl_s))
        self.direct = SingleFlight()  # Redis unavailable: share concurrent loads only
        self._lookup = redis.register_script(LISTING_LOOKUP)

    @staticmethod
    def digest(query: dict[str, Any]) -> str:
        raw = json.dumps(query, sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()

    def _count(self, event: str) -> None:
        metrics.CACHE_EVENTS.labels(LISTING_CACHE_NAME, event).inc()

    async def get(self, query: dict[str, Any], load: Callable[[], Awaitable[str]]) -> str:
        """The page for ``query`` as JSON text; ``load`` reads it from the database."""
        return (await self.fetch(query, load))[0]

    async def fetch(
        self, query: dict[str, Any], load: Callable[[], Awaitable[str]]
    ) -> tuple[str, float]:
        """``get``, and the seconds the shared copy of the page has left (0: there is
        none, as when the cache is off or Redis failed)."""
        if not self.enabled:
            self._count("bypass")
            return await load(), 0.0
        key = self.keys.listing(self.digest(query))
        try:
            gen, cached, left_ms = await self._lookup(keys=[self.keys.listing_gen(), key])
        except (RedisError, OSError) as exc:
            self._count("error")
            log.warning("listing cache unavailable, reading the database: %s", exc)
            # concurrent reads of one page still share one database read
            return await self.direct.do(key, load), 0.0
        generation = gen or "0"  # the app's client decodes replies to str
        if cached is not None:
            stored_gen, _, body = cached.partition("|")
            if stored_gen == generation:
                self._count("hit")
                return body, max(0, int(left_ms)) / 1000
        self._count("miss")
        body, expires_at = await self.flight.do(
            (key, generation), lambda: self._fill(key, generation, load)
        )
        return body, max(0.0, expires_at - time.monotonic())

    async def _fill(
        self, key: str, generation: str, load: Callable[[], Awaitable[str]]
    ) -> tuple[str, float]:
        """The page, and when its stored copy expires: its life runs from when the read
        began, so the copy is never older than ``ttl_s``."""
        read_at = time.monotonic()
        life_ms = max(1, round(self.ttl_ms * (1 - random.uniform(0, LISTING_TTL_SPREAD))))
        body = await load()
        try:
            await self.redis.set(key, f"{generation}|{body}", px=life_ms)
        except (RedisError, OSError) as exc:
            log.warning("listing cache fill failed: %s", exc)
        return body, read_at + life_ms / 1000
