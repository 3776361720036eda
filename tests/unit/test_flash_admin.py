"""SaleAdmin's create, over a real SQLite database and a stand-in shard that remembers
every hold key it has seen (a released key stays tombstoned, as in the ledger): a create
refused for stock must never leave an id that a later sale could take again."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine

from raymall.db import make_engine, session_factory
from raymall.domain.shard_ops import FlashWarm, Op, Release, Reserve, Result
from raymall.errors import OutOfStock
from raymall.flash import sales as repo
from raymall.flash.admin import SaleAdmin
from raymall.flash.cache import SaleCache
from raymall.ids import now_ms
from raymall.launcher.shop import SkuSpec, add_category, add_product

HOUR_MS = 3_600_000


class Shard:
    """One shard holding ``available`` units; keys are never reused, as in the ledger."""

    def __init__(self, available: int) -> None:
        self.available = available
        self.keys: set[str] = set()

    def shard_of(self, sku_id: int) -> int:
        return 0

    async def submit(self, shard: int, op: Op) -> Result:
        if isinstance(op, Reserve):
            if op.key in self.keys:
                return "key_reused"
            self.keys.add(op.key)
            wanted = sum(op.items.values())
            if wanted > self.available:
                return "out_of_stock"
            self.available -= wanted
            return "ok"
        if isinstance(op, Release):
            self.keys.add(op.key)  # tombstoned: a late reserve under it is refused
            return "ok"
        assert isinstance(op, FlashWarm)
        return "ok"

    async def send_batch(self, shard: int, ops: list[Op]) -> list[Result]:
        return [await self.submit(shard, op) for op in ops]

    async def release(self, key: str, sku_ids: Any) -> None:
        raise AssertionError("not used here")


@pytest.fixture()
def admin_and_sku(sqlite_url: str) -> tuple[SaleAdmin, int, Any]:
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        cat = add_category(conn, "Kettles", "kettles-admin")
        _, (sku_id,) = add_product(conn, cat, "Kettle", [SkuSpec("K-1", 1000, 10)], shards=1)
    engine.dispose()
    sessions = session_factory(make_engine(sqlite_url))
    shard = Shard(available=10)
    cache = SaleCache(sessions, shard, ttl_s=60, clock=lambda: 0.0)  # type: ignore[arg-type]
    return SaleAdmin(sessions, shard, cache), sku_id, sessions  # type: ignore[arg-type]


async def _create(admin: SaleAdmin, sku_id: int, quantity: int) -> dict[str, Any]:
    now = now_ms()
    return await admin.create(
        sku_id=sku_id,
        title="",
        price_cents=500,
        quantity=quantity,
        per_user_limit=1,
        starts_ms=now + HOUR_MS,
        ends_ms=now + 2 * HOUR_MS,
    )


async def test_a_create_refused_for_stock_does_not_wedge_later_creates(
    admin_and_sku: tuple[SaleAdmin, int, Any],
) -> None:
    admin, sku_id, sessions = admin_and_sku
    with pytest.raises(OutOfStock):
        await _create(admin, sku_id, 50)
    with pytest.raises(OutOfStock):
        await _create(admin, sku_id, 50)
    made = await _create(admin, sku_id, 3)  # its id is new, so its hold key is too
    ids = [
        s.id
        for s in await repo.in_tx(sessions, lambda s: repo.list_sales(s, limit=10, before_id=None))
    ]
    assert int(made["id"]) == max(ids)
    assert len(set(ids)) == len(ids) == 3
    refused = [
        s
        for s in await repo.in_tx(sessions, lambda s: repo.list_sales(s, limit=10, before_id=None))
    ]
    assert sum(1 for s in refused if s.ended) == 2  # the refused ones stay, ended, unsold
    assert all(s.sold == 0 for s in refused)
