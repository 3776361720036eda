"""A replica's copy of the flash sales: what it needs to refuse a purchase on its own
before the start and after the end.

Each sale is read at most once per ``ttl_s`` (concurrent misses share one read), and
``keep_warm`` re-reads the running and upcoming ones every ``ttl_s``, so a sale created
through another replica is here before it starts; each newly seen sale is loaded into its
shard too (``FlashWarm``), so its first purchases do not wait for that load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy.orm import Session, sessionmaker

from raymall.domain.sale import Sale
from raymall.domain.shard_ops import FlashWarm
from raymall.flash import sales as repo
from raymall.flash.ports import FlashShards
from raymall.flash.returns import hold_key
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.singleflight import SingleFlight

log = get_logger("flash")


class SaleCache:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        shards: FlashShards,
        ttl_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.sessions = sessions
        self.shards = shards
        self.ttl_s = ttl_s
        self.clock = clock  # monotonic seconds
        self._sales: dict[int, tuple[Sale, float]] = {}
        self._loads = SingleFlight()

    def hold(self, sale: Sale) -> tuple[int, str]:
        """The sale's shard and the key of its hold there."""
        shard = self.shards.shard_of(sale.sku_id)
        return shard, f"{hold_key(sale.id)}@{shard}"

    def remember(self, sale: Sale) -> Sale:
        self._sales[sale.id] = (sale, self.clock() + self.ttl_s)
        return sale

    def mark_ended(self, sale: Sale) -> None:
        """The shard said the sale has ended: refuse it here from now on."""
        self.remember(replace(sale, ended=True))

    async def get(self, sale_id: int) -> Sale:
        """The sale (NotFound if there is none), from memory while fresh."""
        hit = self._sales.get(sale_id)
        if hit is not None and hit[1] > self.clock():
            return hit[0]

        async def load() -> Sale:
            return self.remember(
                await repo.in_tx(self.sessions, lambda s: repo.get_sale(s, sale_id))
            )

        return await self._loads.do(sale_id, load)

    async def warm(self, *, shards: bool = True) -> int:
        """Cache the running and upcoming sales (and have their shards load them)."""
        found = await repo.in_tx(self.sessions, lambda s: repo.running_or_upcoming(s, now_ms()))
        for sale in found:
            known = sale.id in self._sales
            self.remember(sale)
            if shards and not known:
                shard, hold = self.hold(sale)
                await self.shards.submit(shard, FlashWarm(hold, sale.id))
        return len(found)

    async def keep_warm(self) -> None:
        """``warm`` every ``ttl_s``, until cancelled."""
        while True:
            try:
                await self.warm()
            except Exception:  # first use loads a sale anyway
                log.warning("could not refresh the flash sales", exc_info=True)
            await asyncio.sleep(self.ttl_s)
