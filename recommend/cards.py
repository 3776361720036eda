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
  catalog write, so it may be up to ``ttl_s`` old, as in cached listing pages: a card is
  served only within ``ttl_s`` of the start of the database read it came from.
- **Cards in use are read ahead, off the request path**: every ``ttl_s / 4`` a refresher
  task reloads, in chunks of ``REFRESH_CHUNK`` ids, the cards that were asked for within
  the last ``ttl_s`` and are at least ``ttl_s / 2`` old. So a card asked for at least once
  per ``ttl_s`` never expires on a request, and one asked for once stays fresh for at
  least 1.5 ``ttl_s`` after. Without it every card in use expired on a request once per
  ``ttl_s``: with 10,000 products picked at random, half of the similar requests waited on
  a database read. (Counting only the cards asked for since the previous pass still let a
  card asked for now and then expire between two asks, and be read on the request path.)
  A card not asked for in a whole ``ttl_s`` is left to expire.
  A pass follows the rules above: it reads the generation first, and what it read is
  dropped with the rest when the generation moves. Given ``load_sold_out``, a pass reads
  only the stock flags (the rest of a card holds for its generation): the ids of the few
  sold-out products instead of whole cards. ``read_ahead=False`` leaves the passes
  to the caller (``refresh()``).
- **Redis down**: cards come from the database on every request (nothing is cached).
- ``ttl_s`` 0 (or no Redis client) turns the cache off. At most ``max_cards`` cards are
  held; past that the cache starts over. ``close()`` stops the refresher.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from raymall import metrics
from raymall.catalog.cache import CacheKeys
from raymall.logs import get_logger
from raymall.singleflight import FreshRead
from raymall.tasks import stop_tasks

log = get_logger("recommend.cards")
CACHE_NAME = "recommend_cards"
MAX_CARDS = 50_000
# ids per read-ahead query: the query runs in a worker thread of the replica, and a smaller
# one holds the GIL, which the requests' event loop waits on, for less at a time (~1 ms)
REFRESH_CHUNK = 200

Card = dict[str, Any]
Load = Callable[[list[int]], Awaitable[dict[int, Card]]]
# the ids, among those asked, of products that exist and have no SKU in stock
LoadSoldOut = Callable[[list[int]], Awaitable[set[int]]]

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
        read_ahead: bool = True,
        load_sold_out: LoadSoldOut | None = None,
    ) -> None:
        self.redis = redis
        self.load = load
        self.load_sold_out = load_sold_out
        self.ttl_s = ttl_s
        self.enabled = ttl_s > 0 and redis is not None
        self.max_cards = max_cards
        self.read_ahead = read_ahead and self.enabled
        self._gen_key = keys.listing_gen()
        self._generation: FreshRead[str] = FreshRead(self._read_generation)
        self._held_gen: str | None = None
        self._cards: dict[int, tuple[float, Card]] = {}  # id -> (read started, card)
        self._asked: dict[int, float] = {}  # id -> when last asked for (monotonic)
        self._refresher: asyncio.Task[None] | None = None
        self._events: dict[str, Any] = {}  # event -> its CACHE_EVENTS child

    async def _read_generation(self) -> str:
        gen = await self.redis.get(self._gen_key)
        return str(gen) if gen is not None else "0"

    def __len__(self) -> int:
        return len(self._cards)

    def _count(self, event: str, n: int = 1) -> None:
        if n:
            counter = self._events.get(event)
            if counter is None:
                counter = self._events[event] = metrics.CACHE_EVENTS.labels(CACHE_NAME, event)
            counter.inc(n)

    async def _current_generation(self) -> str:
        """The generation now; every card held under an older one is dropped."""
        gen = await self._generation.read()
        if gen != self._held_gen:
            self._cards.clear()
            self._held_gen = gen
        return gen

    def _store(self, gen: str, started: float, ids: list[int], loaded: dict[int, Card]) -> None:
        """Keep what a read that started at ``started`` under ``gen`` found, unless the
        generation moved on while it was out."""
        if self._held_gen != gen:
            return
        if len(self._cards) + len(ids) > self.max_cards:
            self._cards.clear()
        for pid in ids:
            self._cards[pid] = (started, loaded.get(pid, _ABSENT))

    def _restock(self, gen: str, started: float, ids: list[int], sold_out: set[int]) -> None:
        """Give held cards the stock flags a read that started at ``started`` found: the
        rest of a card holds for its generation, so only the flag needs reading again."""
        if self._held_gen != gen:
            return
        cards = self._cards
        for pid in ids:
            held = cards.get(pid)
            if held is None:
                continue
            card = held[1]
            if card is not _ABSENT and card["in_stock"] == (pid in sold_out):
                card = {**card, "in_stock": pid not in sold_out}
            cards[pid] = (started, card)

    async def get(self, ids: list[int]) -> dict[int, Card]:
        """The cards (any status) of those of ``ids`` that exist, by id."""
        if not self.enabled:
            self._count("bypass")
            return await self.load(ids)
        if self.read_ahead and self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
        try:
            gen = await self._current_generation()
        except (RedisError, OSError) as exc:
            self._count("error")
            log.warning("card cache unavailable, reading the database: %s", exc)
            return await self.load(ids)
        now = time.monotonic()
        oldest = now - self.ttl_s
        out: dict[int, Card] = {}
        missing: list[int] = []
        wanted = dict.fromkeys(ids, now)
        for pid in wanted:
            held = self._cards.get(pid)
            if held is not None and held[0] > oldest:
                if held[1] is not _ABSENT:
                    out[pid] = held[1]
            else:
                missing.append(pid)
        self._asked.update(wanted)
        self._count("hit", len(wanted) - len(missing))
        self._count("miss", len(missing))
        if missing:
            loaded = await self.load(missing)
            out.update(loaded)
            self._store(gen, now, missing, loaded)
        return out

    async def refresh(self) -> int:
        """One read-ahead pass: reload the cards asked for within the last ``ttl_s`` that
        are at least ``ttl_s / 2`` old. Answers how many were reloaded."""
        gen = await self._current_generation()
        now = time.monotonic()
        asked_after, due_before = now - self.ttl_s, now - self.ttl_s / 2
        asked = self._asked
        for pid in [pid for pid, when in asked.items() if when < asked_after]:
            del asked[pid]
        due = [pid for pid in asked if (held := self._cards.get(pid)) and held[0] <= due_before]
        done = 0
        for i in range(0, len(due), REFRESH_CHUNK):
            chunk = due[i : i + REFRESH_CHUNK]
            started = time.monotonic()
            if self.load_sold_out is None:
                self._store(gen, started, chunk, await self.load(chunk))
            else:
                self._restock(gen, started, chunk, await self.load_sold_out(chunk))
            if self._held_gen != gen:
                break  # the cards were dropped: read again on demand
            done += len(chunk)
        self._count("refresh", done)
        return done

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 4)
            try:
                await self.refresh()
            except Exception as exc:  # Redis or the database away: cards expire instead
                log.warning("card read-ahead failed: %r", exc)

    async def close(self) -> None:
        if self._refresher is not None:
            await stop_tasks([self._refresher])
            self._refresher = None
