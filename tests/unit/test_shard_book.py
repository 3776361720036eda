"""ShardBook on SQLite, with no Ray: it loads what a batch touches and memory lacks (and
nothing it holds), stages ledger and desk together two deep and undoes them together,
writes nothing for replays, and after a duplicate key either re-applies the batch with the
stored records or rebuilds memory from the database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session

from actors.inventory_store import DuplicateKey, InventoryStore
from actors.shard_book import Needs, ShardBook, fetch, load_ledger
from raymall.db import make_engine
from raymall.domain.shard_ops import BuyResult, Confirm, FlashBuy, FlashWarm, Reserve
from raymall.errors import Unavailable
from raymall.flash import sales as sales_repo
from raymall.flash.returns import hold_key
from raymall.ids import now_ms
from raymall.settings import Settings
from tests.order_helpers import Shop


class World:
    def __init__(self, url: str) -> None:
        self.settings = Settings(database_url=url, redis_url="redis://unused", inventory_shards=1)
        self.engine = make_engine(url, pool_size=2)
        self.shop = Shop(self.settings, engine=self.engine)
        self.store = InventoryStore(url, 0)
        self.loads: list[Any] = []  # what went through run(), in order

    async def run(self, fn: Any, *args: Any) -> Any:
        self.loads.append(args[-1] if args else fn.__name__)
        return await asyncio.to_thread(fn, *args)

    def book(self) -> ShardBook:
        return ShardBook(self.settings, 0, self.store, load_ledger(self.store), run=self.run)

    async def commit(self, book: ShardBook, ops: list[Any]) -> list[Any]:
        stage = await book.stage(ops)
        self.store.write_statements(stage.statements)
        book.commit(stage)
        return stage.results

    def sale(self, sku: int, quantity: int) -> int:
        now = now_ms()
        with Session(self.engine) as session, session.begin():
            sale = sales_repo.insert_sale(
                session,
                sku_id=sku,
                title="book test",
                price_cents=500,
                quantity=quantity,
                per_user_limit=1,
                starts_ms=now - 1000,
                ends_ms=now + 600_000,
                now_ms=now,
            )
        return int(sale.id)


@pytest.fixture()
def world(sqlite_url: str) -> Iterator[World]:
    w = World(sqlite_url)
    yield w
    w.store.dispose()
    w.engine.dispose()


async def test_prepare_loads_only_what_memory_lacks_then_the_sales_skus(world: World) -> None:
    book = world.book()
    sku = world.shop.sku(stock=10)  # created after the shard started
    assert sku not in book.ledger.stock
    assert await world.commit(book, [Reserve("a@0", {sku: 2}, None)]) == ["ok"]
    assert world.loads == [Needs([sku], [], [])]
    await world.commit(book, [Confirm("a@0")])  # held: nothing to read
    assert len(world.loads) == 1
    # a sale whose hold another owner placed, on a SKU created after this book started
    fresh = world.book()
    other = world.shop.sku(stock=5)
    sale = world.sale(other, 3)
    hold = f"{hold_key(sale)}@0"
    await world.commit(world.book(), [Reserve(hold, {other: 3}, None)])
    world.loads.clear()
    result = (await world.commit(fresh, [FlashBuy(hold, sale, world.shop.user(), "k", 1)]))[0]
    # the sale and its hold first, then the SKU the sale names
    assert world.loads == [Needs([], [hold], [sale]), Needs([other], [], [])]
    assert type(result) is BuyResult and result.code == "ok" and result.remaining == 2
    assert fresh.ledger.violations(full_history=False) == []
    world.loads.clear()
    await world.commit(fresh, [FlashBuy(hold, sale, world.shop.user(), "k", 1)])
    assert world.loads == []  # all held now


async def test_ledger_and_desk_stage_two_deep_and_roll_back_together(world: World) -> None:
    sku = world.shop.sku(stock=10)
    sale = world.sale(sku, 4)
    hold = f"{hold_key(sale)}@0"
    book = world.book()
    assert await world.commit(book, [Reserve(hold, {sku: 4}, None), FlashWarm(hold, sale)]) == [
        "ok",
        "ok",
    ]
    users = [world.shop.user() for _ in range(3)]
    first = await book.stage([FlashBuy(hold, sale, users[0], "k", 1)])
    second = await book.stage([FlashBuy(hold, sale, users[1], "k", 1), Reserve("r@0", {sku: 1})])
    assert book.ledger.open_batches == 2
    assert second.results[0].remaining == 2  # staged on top of the first
    assert book.desk.books[sale].info.sold == 2
    book.rollback()
    book.rollback()
    assert book.ledger.open_batches == 0 and book.desk.books[sale].info.sold == 0
    assert book.ledger.records[hold].items == {sku: 4} and "r@0" not in book.ledger.records
    order = second.results[0].order_id
    assert first.statements and second.created == [f"order:{order}@0", "r@0"]
    again = await world.commit(book, [FlashBuy(hold, sale, users[2], "k", 1)])
    assert again[0].code == "ok" and again[0].remaining == 3
    stored = world.shop.scalar("SELECT sold FROM flash_sales WHERE id = :s", s=sale)
    assert stored == 1 and book.ledger.violations(full_history=False) == []


async def test_a_batch_that_cannot_be_applied_is_undone_in_ledger_and_desk_alike(
    world: World,
) -> None:
    sku = world.shop.sku(stock=10)
    sale = world.sale(sku, 4)
    hold = f"{hold_key(sale)}@0"
    book = world.book()
    await world.commit(book, [Reserve(hold, {sku: 4}, None), FlashWarm(hold, sale)])
    users = [world.shop.user() for _ in range(2)]
    under = await book.stage([FlashBuy(hold, sale, users[0], "k", 1)])  # stays open

    def broken(user_id: int) -> int:
        raise ZeroDivisionError("no order shards")

    book.desk.order_shard_of = broken  # raises inside the desk, after the ledger applied
    with pytest.raises(Unavailable):
        await book.stage([Reserve("r@0", {sku: 2}), FlashBuy(hold, sale, users[1], "k", 1)])
    assert book.ledger.open_batches == 1 and len(book.desk._segments) == 1
    assert "r@0" not in book.ledger.records and book.ledger.stock[sku].available == 6
    assert book.desk.books[sale].info.sold == 1 and book.ledger.records[hold].items == {sku: 3}
    world.store.write_statements(under.statements)
    book.commit(under)  # the batch under it is intact
    assert book.ledger.open_batches == 0 and book.desk._segments == []
    assert world.shop.stock(sku)["reserved"] == 4
    assert book.ledger.violations(full_history=False) == []


async def test_a_batch_of_replays_writes_nothing(world: World) -> None:
    sku = world.shop.sku(stock=3)
    book = world.book()
    await world.commit(book, [Reserve("k@0", {sku: 1})])
    stage = await book.stage([Reserve("k@0", {sku: 1})])
    assert stage.results == ["ok"] and stage.statements == []
    book.commit(stage)


async def test_a_duplicate_key_reapplies_with_the_stored_record_or_reloads(world: World) -> None:
    sku = world.shop.sku(stock=5)
    book = world.book()
    await world.commit(book, [Reserve("k@0", {sku: 2})])
    await world.commit(book, [Confirm("k@0")])  # terminal: a fresh shard would not hold it
    stale = world.book()
    stage = await stale.stage([Reserve("k@0", {sku: 2}), Reserve("n@0", {sku: 1})])
    with pytest.raises(DuplicateKey) as refused:
        world.store.write_statements(stage.statements)
    stale.rollback()
    assert await stale.failed(stage, refused.value) is None  # stage it again
    again = await stale.stage([Reserve("k@0", {sku: 2}), Reserve("n@0", {sku: 1})], attempt=1)
    assert again.results == ["ok", "ok"] and again.created == ["n@0"]  # k@0 is a replay
    world.store.write_statements(again.statements)
    stale.commit(again)
    assert world.shop.stock(sku)["available"] == 2
    # refused again on a second attempt: Unavailable, and memory is rebuilt before the next
    err = await stale.failed(again._replace(attempt=1), DuplicateKey("again"))
    assert isinstance(err, Unavailable)
    before = stale.ledger
    await stale.ready()
    assert stale.ledger is not before and stale.desk.ledger is stale.ledger
    held = stale.ledger.stock[sku].as_dict()
    assert {k: held[k] for k in ("total", "available", "reserved", "sold")} == world.shop.stock(sku)
    assert held["available"] == 2 and set(stale.ledger.records) == {"n@0"}  # open ones only


def test_fetch_reads_stock_keys_and_sales_in_one_go(world: World) -> None:
    sku = world.shop.sku(stock=2)
    sale = world.sale(sku, 1)
    found = fetch(world.store, Needs([sku], ["nope@0"], [sale, 10**9]))
    assert set(found.stock) == {sku} and found.records == {}
    assert [info.id for info, _ in found.sales] == [sale]
