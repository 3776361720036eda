"""Listing cards of recommended products, kept per Serve replica for one catalog generation.

Every similar list, search page and personal pick shows its products as listing cards,
and only published products may be shown. Reading the cards from the database on every
request cost about 1 ms of replica CPU per request (for 10 cards), as much as the ranking.
``CardCache`` keeps the cards it read, valid while the catalog-wide listing generation in
Redis (``catalog:listing:gen``, bumped after every catalog write commits, see
``raymall.catalog.cache``) is the one it read them under, and for at most ``ttl_s``.

Guarantees:
- **A catalog change shows on the next request**: each request reads the generation (one
  Redis GET, shared by the requests that arrived while the previous GET was out). When it
  moved, every card held is dropped. Cards are stored under the generation read *before*
  the database read, so a card read across a write is dropped when the write's bump is
  seen. An unpublished or deleted product is therefore never shown once its change has
  committed and bumped the generation.
- **Stock** (the ``in_stock`` flag and the ``in_stock_only`` filter) changes without a
  catalog write, so it may be up to ``ttl_s`` old, as in cached listing pages.
- **Redis down**: cards come from the database on every request (nothing is cached).
- ``ttl_s`` 0 (or no Redis client) turns the cache off. At most ``max_cards`` cards are
  held; past that the cache starts over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from redis.exceptions import RedisError

from raymall import metrics
from raymall.catalog.cache import CacheKeys
from raymall.logs import get_logger

log = get_logger("recommend.cards")
CACHE_NAME = "recommend_cards"
MAX_CARDS = 50_000

Card = dict[str, Any]
Load = Callable[[list[int]], Awaitable[dict[int, Card]]]
T = TypeVar("T")


class FreshRead(Generic[T]):
    """Concurrent callers of ``read()`` share one call of ``fn``, always one that started
    after they called: a caller arriving while a call is out waits for the next one, which
    starts when that call ends and serves everyone who arrived meanwhile."""

    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self.fn = fn
        self.calls = 0
        self._next: asyncio.Future[T] | None = None
        self._running = False

    async def read(self) -> T:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if not self._running:
                self._running = True
                asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        try:
            while self._next is not None:
                fut, self._next = self._next, None
                self.calls += 1
                try:
                    fut.set_result(await self.fn())
                except Exception as exc:  # every waiter of this call gets it
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: no "never retrieved" warning if all left
        finally:
            self._running = False


_ABSENT: Card = {}  # a product the database does not have (cached like a card)


class CardCache:
    def __init__(
        self,
        redis: Any,
        load: Load,
        *,
        ttl_s: float,
        keys: CacheKeys,
        max_cards: int = MAX_CARDS,
    ) -> None:
        self.redis = redis
        self.load = load
        self.ttl_s = ttl_s
        self.enabled = ttl_s > 0 and redis is not None
        self.max_cards = max_cards
        self._gen_key = keys.listing_gen()
        self._generation: FreshRead[str] = FreshRead(self._read_generation)
        self._held_gen: str | None = None
        self._cards: dict[int, tuple[float, Card]] = {}  # id -> (expires, card)

    async def _read_generation(self) -> str:
        gen = await self.redis.get(self._gen_key)
        return str(gen) if gen is not None else "0"

    def __len__(self) -> int:
        return len(self._cards)

    def _count(self, event: str, n: int = 1) -> None:
        if n:
            metrics.CACHE_EVENTS.labels(CACHE_NAME, event).inc(n)

    async def get(self, ids: list[int]) -> dict[int, Card]:
        """The cards (any status) of those of ``ids`` that exist, by id."""
        if not self.enabled:
            self._count("bypass")
            return await self.load(ids)
        try:
            gen = await self._generation.read()
        except (RedisError, OSError) as exc:
            self._count("error")
            log.warning("card cache unavailable, reading the database: %s", exc)
            return await self.load(ids)
        if gen != self._held_gen:
            self._cards.clear()
            self._held_gen = gen
        now = time.monotonic()
        out: dict[int, Card] = {}
        missing: list[int] = []
        for pid in dict.fromkeys(ids):
            held = self._cards.get(pid)
            if held is not None and held[0] > now:
                if held[1] is not _ABSENT:
                    out[pid] = held[1]
            else:
                missing.append(pid)
        self._count("hit", len(ids) - len(missing))
        self._count("miss", len(missing))
        if missing:
            loaded = await self.load(missing)
            out.update(loaded)
            if self._held_gen == gen:  # not dropped for a newer generation meanwhile
                if len(self._cards) + len(missing) > self.max_cards:
                    self._cards.clear()
                expires = now + self.ttl_s
                for pid in missing:
                    self._cards[pid] = (expires, loaded.get(pid, _ABSENT))
        return out
