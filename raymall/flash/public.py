"""The public side of flash sales: the list of upcoming and running sales, with the
product each one sells, for the storefront.

The list is read from the database at most once per ``ttl_s`` per replica (concurrent
readers share one read) and always answered with the replica's clock as
``server_time_ms``, by which clients count down to a start (correcting their own clock
by the difference). Remaining units come from the rows, which the owning shards commit;
a sale's page follows them live through ``raymall.flash.live.SaleHub``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models import FlashSale, Product, Sku
from raymall.flash import sales as repo
from raymall.ids import now_ms
from raymall.singleflight import SingleFlight

MAX_LISTED = 100


def upcoming_and_running(session: Session, now: int, limit: int = MAX_LISTED) -> list[Any]:
    """(sale, product id, product title, product images) of the sales not yet ended,
    soonest start first."""
    rows = session.execute(
        select(FlashSale, Sku.product_id, Product.title, Product.images)
        .join(Sku, Sku.id == FlashSale.sku_id)
        .join(Product, Product.id == Sku.product_id)
        .where(FlashSale.ends_ms > now, FlashSale.status != "ended")
        .order_by(FlashSale.starts_ms, FlashSale.id)
        .limit(limit)
    ).all()
    return [(repo._sale(r[0]), int(r[1]), r[2], list(r[3] or [])) for r in rows]


class PublicSales:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self.clock = clock
        self._found: tuple[float, list[Any]] | None = None
        self._loads = SingleFlight()

    async def listing(self) -> dict[str, Any]:
        """``{"items": [...], "server_time_ms"}``: sales whose end is still ahead."""
        found = self._found
        if found is None or found[0] <= self.clock():
            rows = await self._loads.do("all", self._load)
        else:
            rows = found[1]
        now = now_ms()
        items = []
        for sale, product_id, product_title, images in rows:
            view = sale.view(now)
            if view["status"] == "ended":
                continue
            view.update(
                product_id=product_id,
                product_title=product_title,
                image=images[0] if images else None,
            )
            items.append(view)
        return {"items": items, "server_time_ms": now}

    async def _load(self) -> list[Any]:
        rows = await repo.in_tx(self.sessions, lambda s: upcoming_and_running(s, now_ms()))
        self._found = (self.clock() + self.ttl_s, rows)
        return rows
