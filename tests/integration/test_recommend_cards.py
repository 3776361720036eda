"""The replica's card cache (``recommend.cards``) against a real Redis: cards are reused
while the catalog generation holds, dropped when it moves (also across a load that raced
with a write), expire after their TTL, and come from the database when Redis is down."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from raymall.catalog.cache import CacheKeys
from recommend.cards import CardCache, FreshRead

pytestmark = pytest.mark.integration


class Catalog:
    """A stand-in for the database: product id -> status, counting reads."""

    def __init__(self) -> None:
        self.status = {pid: "published" for pid in range(1, 21)}
        self.reads: list[list[int]] = []
        self.during_load: Any = None  # awaited inside a read, after the rows were taken

    async def load(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        self.reads.append(sorted(ids))
        rows = {pid: {"id": pid, "status": self.status[pid]} for pid in ids if pid in self.status}
        if self.during_load is not None:
            hook, self.during_load = self.during_load, None
            await hook()
        return rows


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def cache(client: Any, catalog: Catalog, keys: CacheKeys, ttl_s: float = 30.0) -> CardCache:
    return CardCache(client, catalog.load, ttl_s=ttl_s, keys=keys)


def keys() -> CacheKeys:
    return CacheKeys(f"cardtest{secrets.token_hex(4)}")


async def test_cards_are_read_once_while_the_generation_holds(redis_client: Any) -> None:
    catalog = Catalog()
    cards = cache(redis_client, catalog, keys())
    first = await cards.get([1, 2, 3])
    again = await cards.get([3, 2, 1, 4, 99])
    assert sorted(first) == [1, 2, 3] and sorted(again) == [1, 2, 3, 4]  # 99 does not exist
    assert catalog.reads == [[1, 2, 3], [4, 99]]
    assert await cards.get([99, 4]) == {4: {"id": 4, "status": "published"}}
    assert len(catalog.reads) == 2  # an absent product is remembered too


async def test_a_catalog_write_drops_every_card_at_the_next_request(redis_client: Any) -> None:
    catalog, k = Catalog(), keys()
    cards = cache(redis_client, catalog, k)
    assert (await cards.get([5]))[5]["status"] == "published"
    catalog.status[5] = "unpublished"  # the write commits, then bumps the generation
    await redis_client.incr(k.listing_gen())
    assert (await cards.get([5]))[5]["status"] == "unpublished"
    assert catalog.reads == [[5], [5]]


async def test_a_load_that_raced_with_a_write_is_not_served_after_it(redis_client: Any) -> None:
    catalog, k = Catalog(), keys()
    cards = cache(redis_client, catalog, k)

    async def write() -> None:  # lands after the rows were read, before they are stored
        catalog.status[7] = "unpublished"
        await redis_client.incr(k.listing_gen())

    catalog.during_load = write
    assert (await cards.get([7]))[7]["status"] == "published"  # the read's own answer
    assert (await cards.get([7]))[7]["status"] == "unpublished"  # never the old card again


async def test_cards_expire_after_the_ttl_for_the_stock_flag(redis_client: Any) -> None:
    catalog = Catalog()
    cards = cache(redis_client, catalog, keys(), ttl_s=0.2)
    try:
        await cards.get([1])
        await cards.get([1])
        # not asked for since: read ahead while the ask is under a TTL old (until 0.2 s),
        # so fresh until 0.4 s at most, then left to expire
        await asyncio.sleep(0.5)
        before = len(catalog.reads)
        await cards.get([1])
        assert len(catalog.reads) == before + 1  # expired: the request reads it again
        assert catalog.reads[0] == [1] and catalog.reads[-1] == [1]
    finally:
        await cards.close()


async def test_a_read_ahead_pass_reloads_only_cards_asked_for_within_the_ttl_and_half_expired(
    redis_client: Any,
) -> None:
    catalog = Catalog()
    # no refresher task: the passes are run by hand
    cards = CardCache(redis_client, catalog.load, ttl_s=0.4, keys=keys(), read_ahead=False)
    await cards.get([1, 2])
    assert await cards.refresh() == 0  # asked for, but fresh
    await asyncio.sleep(0.25)
    await cards.get([1])
    await asyncio.sleep(0.2)
    catalog.status[1] = "unpublished"  # e.g. the stock flag moving, without a catalog write
    assert await cards.refresh() == 1  # 1 was asked for 0.2 s ago, 2 0.45 s ago (> TTL)
    assert catalog.reads == [[1, 2], [1]]
    found = await cards.get([1, 2])  # 2 was read 0.45 s ago: expired
    assert found[1]["status"] == "unpublished"  # the reloaded card, served without a read
    assert catalog.reads == [[1, 2], [1], [2]]


async def test_a_card_asked_for_once_is_read_ahead_until_a_ttl_after_the_ask(
    redis_client: Any,
) -> None:
    catalog = Catalog()
    cards = CardCache(redis_client, catalog.load, ttl_s=0.4, keys=keys(), read_ahead=False)
    await cards.get([3])
    assert await cards.refresh() == 0  # fresh
    await asyncio.sleep(0.25)
    # not asked for since the last pass, but 0.25 s ago, under a TTL: read ahead
    assert await cards.refresh() == 1
    await asyncio.sleep(0.25)  # 0.5 s after the ask, 0.25 s after the pass's read
    assert sorted(await cards.get([3])) == [3]
    assert catalog.reads == [[3], [3]]  # served from the pass, past the first read's TTL


async def test_a_read_ahead_pass_with_load_sold_out_reads_only_the_stock_flags(
    redis_client: Any,
) -> None:
    catalog = Catalog()
    stocked = {1, 2}
    stock_reads: list[list[int]] = []

    async def load(ids: list[int]) -> dict[int, dict[str, Any]]:
        cards = await catalog.load(ids)
        return {pid: {**card, "in_stock": pid in stocked} for pid, card in cards.items()}

    async def load_sold_out(ids: list[int]) -> set[int]:
        stock_reads.append(sorted(ids))
        return {pid for pid in ids if pid in catalog.status and pid not in stocked}

    cards = CardCache(
        redis_client, load, ttl_s=0.4, keys=keys(), read_ahead=False, load_sold_out=load_sold_out
    )
    before = await cards.get([1, 2, 99])
    await asyncio.sleep(0.21)
    stocked.discard(2)  # 2 sells out
    assert await cards.refresh() == 3
    assert stock_reads == [[1, 2, 99]] and catalog.reads == [[1, 2, 99]]
    await asyncio.sleep(0.21)  # past the TTL of the first read, not of the pass
    after = await cards.get([1, 2, 99])
    assert catalog.reads == [[1, 2, 99]]  # served from the pass
    assert after[1] is before[1]  # unchanged flag: the same card
    assert before[2]["in_stock"] and not after[2]["in_stock"] and 99 not in after


async def test_a_read_ahead_that_raced_with_a_write_is_dropped(redis_client: Any) -> None:
    catalog, k = Catalog(), keys()
    cards = CardCache(redis_client, catalog.load, ttl_s=0.2, keys=k, read_ahead=False)
    await cards.get([7])
    await asyncio.sleep(0.11)

    async def write() -> None:  # lands while the pass's read is out
        catalog.status[7] = "unpublished"
        await redis_client.incr(k.listing_gen())

    catalog.during_load = write
    await cards.refresh()
    assert (await cards.get([7]))[7]["status"] == "unpublished"  # never the raced card


async def test_cards_asked_for_steadily_never_expire_on_a_request(redis_client: Any) -> None:
    catalog = Catalog()
    by_refresher: list[bool] = []
    load = catalog.load

    async def tracked(ids: list[int]) -> dict[int, dict[str, Any]]:
        by_refresher.append(asyncio.current_task() is cards._refresher)
        return await load(ids)

    cards = CardCache(redis_client, tracked, ttl_s=0.4, keys=keys())
    try:
        deadline = asyncio.get_running_loop().time() + 1.3  # three TTLs and more
        while asyncio.get_running_loop().time() < deadline:
            assert sorted(await cards.get([3, 4])) == [3, 4]
            await asyncio.sleep(0.02)
    finally:
        await cards.close()
    assert by_refresher[0] is False  # the first read is the request's own
    assert by_refresher[1:] and all(by_refresher[1:]), by_refresher  # then only read-ahead
    assert len(by_refresher) >= 3


async def test_ttl_zero_turns_the_cache_off(redis_client: Any) -> None:
    catalog = Catalog()
    cards = cache(redis_client, catalog, keys(), ttl_s=0)
    await cards.get([1])
    await cards.get([1])
    assert catalog.reads == [[1], [1]] and len(cards) == 0


async def test_with_redis_down_cards_come_from_the_database() -> None:
    down = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    catalog = Catalog()
    cards = cache(down, catalog, keys())
    try:
        assert sorted(await cards.get([1, 2])) == [1, 2]
        assert sorted(await cards.get([1, 2])) == [1, 2]
        assert catalog.reads == [[1, 2], [1, 2]] and len(cards) == 0
    finally:
        await down.aclose()


async def test_concurrent_readers_share_a_read_that_started_after_they_asked() -> None:
    value = 0
    started: list[int] = []
    gate = asyncio.Event()

    async def read() -> int:
        seen = value  # what the read saw when it started
        started.append(seen)
        await gate.wait()
        return seen

    shared: FreshRead[int] = FreshRead(read)
    first = [asyncio.create_task(shared.read()) for _ in range(5)]
    await asyncio.sleep(0.01)
    value = 1  # changes while the first read is out: later callers must see it
    later = [asyncio.create_task(shared.read()) for _ in range(5)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.gather(*first) == [0] * 5
    assert await asyncio.gather(*later) == [1] * 5
    assert shared.calls == 2 and started == [0, 1]


@pytest.mark.parametrize("db", ["sqlite", "mysql"])
def test_sold_out_products_is_the_complement_of_in_stock_among_existing_products(
    db: str, request: pytest.FixtureRequest
) -> None:
    """The read-ahead's stock query (driver-bound ids) agrees with the ORM one."""
    from sqlalchemy import delete, select

    from models import Inventory, Sku
    from raymall.catalog.repository import in_stock_products, sold_out_products
    from raymall.db import make_engine, session_factory, transaction
    from tests.recommend_helpers import add_product

    url = request.getfixturevalue("sqlite_url" if db == "sqlite" else "mysql_url")
    engine = make_engine(url, pool_size=2)
    sessions = session_factory(engine)
    try:
        stocked = add_product(sessions, "Stocked kettle", stock=3)
        sold_out = add_product(sessions, "Sold out kettle", stock=0)
        draft = add_product(sessions, "Draft kettle", status="draft", stock=0)
        bare = add_product(sessions, "Kettle without a SKU")
        with transaction(sessions) as s:
            sku_ids = list(s.scalars(select(Sku.id).where(Sku.product_id == bare)))
            s.execute(delete(Inventory).where(Inventory.sku_id.in_(sku_ids)))
            s.execute(delete(Sku).where(Sku.product_id == bare))
        many = [add_product(sessions, f"Kettle {i}", stock=i % 3) for i in range(12)]
        ids = [stocked, sold_out, draft, bare, 987_654, *many]
        with sessions() as s:
            out = sold_out_products(s, ids)
            stocked_ids = in_stock_products(s, ids)
        assert {stocked, sold_out, draft, bare} & out == {sold_out, draft, bare}
        assert 987_654 not in out  # not a product
        assert out == set(ids) - {987_654} - stocked_ids
        with sessions() as s:
            assert sold_out_products(s, []) == set()
    finally:
        engine.dispose()
