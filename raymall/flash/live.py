"""SaleHub: a replica's live view of its watched flash sales, fanned out to every client.

One hub per replica. It follows the sales' read model (``raymall.flash.live_model``)
through the replica's one Redis pub/sub connection (``raymall.feed.Feed``) and keeps, per
sale that at least one client watches, the sale (from the replica's ``SaleCache``), its
live value and an ``asyncio.Event`` that is replaced on every change. A client (the
server-sent event stream of ``GET /flash-sales/{id}/events``) waits on the event it holds
and reads the state when woken. Guarantees:

- **no per-client work outside the replica**: the owning shard publishes once per commit
  whatever the number of watchers; a replica reads a sale's value from Redis once when
  its first watcher arrives (and again after a feed resync), its row through the
  ``SaleCache`` (at most once per ``ttl``); 2,000 watchers cost 2,000 waiting coroutines;
- **latest value wins**: a watcher woken late sees the newest state, never a queue of old
  ones (watchers compare with what they last sent to report units coming back);
- **time-driven changes wake watchers too**: the start and the end of a sale, by the
  server's clock;
- a sale nobody watches holds no memory here: messages about it are ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from raymall.catalog.availability import CHANGE, Message
from raymall.domain.sale import Sale
from raymall.feed import Feed, scoped_channel
from raymall.flash import live_model
from raymall.flash.cache import SaleCache
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.singleflight import SingleFlight

log = get_logger("flash.live")


@dataclass
class Watch:
    """One watched sale: its model, its live value and the event of its next change."""

    sale: Sale
    value: int
    watchers: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def state(self, now: int) -> dict[str, Any]:
        """What a watcher shows: remaining units and the sale's status now."""
        sale = self.sale
        ended = self.value == live_model.ENDED or sale.ended or now >= sale.ends_ms
        remaining = 0 if ended else max(0, self.value)
        if ended:
            status = "ended"
        elif now < sale.starts_ms:
            status = "scheduled"
        else:
            status = "sold_out" if remaining == 0 else "active"
        return {
            "sale_id": sale.id,
            "remaining": remaining,
            "quantity": sale.quantity,
            "status": status,
            "starts_at_ms": sale.starts_ms,
            "ends_at_ms": sale.ends_ms,
            "server_time_ms": now,
        }


class SaleHub:
    """See the module docstring. ``redis`` is an async client decoding replies to ``str``;
    ``shard_of`` names the shard owning a SKU."""

    def __init__(
        self, redis: Any, cache: SaleCache, shard_of: Callable[[int], int], redis_url: str
    ) -> None:
        self.redis = redis
        self.cache = cache
        self.shard_of = shard_of
        self.channel = scoped_channel(redis_url, live_model.CHANNEL)
        self.watches: dict[int, Watch] = {}
        self._loads = SingleFlight()

    def follow(self, feed: Feed) -> None:
        feed.subscribe(self.channel, self.on_message, self.resync)

    @property
    def watchers(self) -> int:
        return sum(w.watchers for w in self.watches.values())

    # ---- watchers -----------------------------------------------------------------------
    async def watch(self, sale_id: int) -> Watch:
        """Start watching ``sale_id`` (NotFound for no such sale); pair with ``unwatch``."""
        found = self.watches.get(sale_id)
        if found is None:
            found = await self._loads.do(sale_id, lambda: self._load(sale_id))
        found.watchers += 1
        return found

    def unwatch(self, watch: Watch) -> None:
        watch.watchers -= 1
        if watch.watchers <= 0 and self.watches.get(watch.sale.id) is watch:
            del self.watches[watch.sale.id]
            for timer in watch.timers:
                timer.cancel()

    async def _load(self, sale_id: int) -> Watch:
        sale = await self.cache.get(sale_id)
        value = await self._read_value(sale)
        current = self.watches.get(sale_id)
        if current is not None:  # loaded meanwhile by a resync
            return current
        watch = Watch(sale, value)
        loop = asyncio.get_running_loop()
        now = now_ms()
        for at_ms in (sale.starts_ms, sale.ends_ms):
            if at_ms > now:
                delay = (at_ms - now) / 1000 + 0.001
                watch.timers.append(loop.call_later(delay, self._wake, watch))
        self.watches[sale_id] = watch
        return watch

    async def _read_value(self, sale: Sale) -> int:
        """The owner's last published value, else the committed row's."""
        raw = None
        try:
            raw = await self.redis.hget(live_model.hash_key(self.shard_of(sale.sku_id)), sale.id)
        except Exception as exc:  # the row is committed too; Redis may be back later
            log.warning("flash sale %s: live value not read (%r)", sale.id, exc)
        if raw is not None:
            return int(raw)
        return live_model.live_value(sale, now_ms())

    # ---- the feed -----------------------------------------------------------------------
    def on_message(self, data: bytes) -> None:
        msg = Message.decode(data)
        if msg.kind != CHANGE:
            return
        for sale_id, value in msg.pairs:
            watch = self.watches.get(sale_id)
            if watch is not None and watch.value != value:
                watch.value = value
                self._wake(watch)

    async def resync(self) -> None:
        """After each (re)subscription: values published while away are read again."""
        reads: list[Awaitable[None]] = [self._refresh(w) for w in list(self.watches.values())]
        await asyncio.gather(*reads)

    async def _refresh(self, watch: Watch) -> None:
        value = await self._read_value(watch.sale)
        if value != watch.value:
            watch.value = value
            self._wake(watch)

    @staticmethod
    def _wake(watch: Watch) -> None:
        event, watch.changed = watch.changed, asyncio.Event()
        event.set()
