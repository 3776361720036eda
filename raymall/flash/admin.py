"""Creating, ending and reading flash sales (a replica's administrative side).

A sale's quantity is set aside in its SKU's shard (the *hold*, a reservation under
``flash:{sale}@{shard}``) right after its row is written; if that fails, the sale is
ended at once (its row stays, so its id and hold key are never used again), so a sale is
open to buyers only with its hold. Ending a sale gives the
rest of the hold back to normal stock. Reads come from the database and refresh this
replica's cached copy.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from raymall.domain import outcomes
from raymall.domain.sale import Sale
from raymall.domain.shard_ops import FlashEnd, FlashWarm, Release, Reserve
from raymall.errors import ValidationFailed
from raymall.flash import sales as repo
from raymall.flash.cache import SaleCache
from raymall.flash.ports import FlashShards
from raymall.ids import now_ms
from raymall.logs import get_logger

log = get_logger("flash")


class SaleAdmin:
    def __init__(
        self, sessions: sessionmaker[Session], shards: FlashShards, cache: SaleCache
    ) -> None:
        self.sessions = sessions
        self.shards = shards
        self.cache = cache

    async def create(
        self,
        *,
        sku_id: int,
        title: str,
        price_cents: int,
        quantity: int,
        per_user_limit: int,
        starts_ms: int,
        ends_ms: int,
        payment_timeout_s: int | None = None,
        require_token: bool = False,
    ) -> dict[str, Any]:
        """Write the sale and set its quantity aside in the SKU's shard (OutOfStock, and
        no sale, if not enough is available)."""
        now = now_ms()
        if ends_ms <= starts_ms:
            raise ValidationFailed("ends_at_ms must be after starts_at_ms")
        if ends_ms <= now:
            raise ValidationFailed("ends_at_ms must be in the future")
        sale = await repo.in_tx(
            self.sessions,
            lambda s: repo.insert_sale(
                s,
                sku_id=sku_id,
                title=title,
                price_cents=price_cents,
                quantity=quantity,
                per_user_limit=per_user_limit,
                starts_ms=starts_ms,
                ends_ms=ends_ms,
                now_ms=now,
                payment_timeout_s=payment_timeout_s,
                require_token=require_token,
            ),
        )
        shard, hold = self.cache.hold(sale)
        try:
            code = await self.shards.submit(shard, Reserve(hold, {sku_id: quantity}, ends_ms))
            outcomes.raise_for(str(code), key=hold, skus=[sku_id])
        except BaseException:
            await self._undo_create(sale, shard, hold)
            raise
        await self.shards.submit(shard, FlashWarm(hold, sale.id))
        return self.cache.remember(sale).view(now_ms())

    async def _undo_create(self, sale: Sale, shard: int, hold: str) -> None:
        """Tombstone the hold's key (a late reserve cannot take stock), then end the sale.
        If the shard cannot be reached the row stays: the shard alone decides whether the
        hold exists, and a sale without one sells nothing."""
        try:
            await self.shards.submit(shard, Release(hold))
        except Exception:
            log.warning("flash sale %s: could not release %s", sale.id, hold, exc_info=True)
            return
        await repo.in_tx(self.sessions, lambda s: repo.void_sale(s, sale.id, now_ms()))

    async def end(self, sale_id: int) -> dict[str, Any]:
        """End the sale now; the rest of its hold goes back to normal stock."""
        sale = await repo.in_tx(self.sessions, lambda s: repo.get_sale(s, sale_id))
        shard, hold = self.cache.hold(sale)
        code = await self.shards.submit(shard, FlashEnd(hold, sale_id))
        if code != "ok":
            raise outcomes.error_for(str(code), outcomes.END)
        return await self.view(sale_id)

    async def view(self, sale_id: int) -> dict[str, Any]:
        sale = await repo.in_tx(self.sessions, lambda s: repo.get_sale(s, sale_id))
        return self.cache.remember(sale).view(now_ms())

    async def list(self, limit: int, before_id: int | None) -> dict[str, Any]:
        found = await repo.in_tx(
            self.sessions, lambda s: repo.list_sales(s, limit=limit, before_id=before_id)
        )
        now = now_ms()
        items = [s.view(now) for s in found]
        return {"items": items, "next_cursor": items[-1]["id"] if len(items) == limit else None}

    async def mine(self, sale_id: int, user_id: int) -> dict[str, Any]:
        await self.cache.get(sale_id)  # 404 for an unknown sale
        items = await repo.in_tx(self.sessions, lambda s: repo.my_purchases(s, sale_id, user_id))
        return {"sale_id": sale_id, "items": items}
