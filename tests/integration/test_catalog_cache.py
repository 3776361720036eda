"""The product detail cache against real MariaDB and Redis, counting database queries
with a ``before_cursor_execute`` listener on the engine the loader uses."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from raymall import metrics
from raymall.catalog import bloom
from raymall.catalog.bloom import BloomSpec
from raymall.catalog.cache import (
    CACHE_NAME,
    LISTING_TTL_SPREAD,
    CacheKeys,
    DetailCache,
    ListingCache,
)
from raymall.catalog.effects import RedisCacheHooks
from raymall.catalog.listing import list_products
from raymall.catalog.repository import ProductFilters, iter_product_ids, load_product_doc
from raymall.catalog.schemas import (
    BrandCreate,
    CategoryCreate,
    ProductCreate,
    ProductUpdate,
    SkuCreate,
)
from raymall.catalog.service import CatalogService
from raymall.db import make_engine, session_factory

pytestmark = pytest.mark.integration


class QueryCounter:
    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._on)

    def _on(self, *_: Any) -> None:
        self.count += 1


@dataclass
class Env:
    sessions: sessionmaker[Session]
    queries: QueryCounter
    aredis: Any
    sredis: Any
    spec: BloomSpec
    keys: CacheKeys
    service: CatalogService
    loads: list[int]
    category_id: int

    def cache(self, **kw: Any) -> DetailCache:
        """A cache as one replica holds it (its own singleflight)."""
        return DetailCache(
            kw.pop("redis", self.aredis),
            kw.pop("loader", self.loader),
            spec=self.spec,
            ttl_s=300,
            null_ttl_s=30,
            keys=self.keys,
            **kw,
        )

    async def loader(self, product_id: int) -> dict[str, Any] | None:
        self.loads.append(product_id)
        return await asyncio.to_thread(self.load_sync, product_id)

    def load_sync(self, product_id: int) -> dict[str, Any] | None:
        with self.sessions() as s:
            return load_product_doc(s, product_id)

    def all_ids(self) -> list[list[int]]:
        with self.sessions() as s:
            return list(iter_product_ids(s))

    def new_product(self, title: str = "Trail Thermos") -> int:
        tag = secrets.token_hex(4)
        doc = self.service.create_product(
            ProductCreate(
                title=title,
                description="Keeps tea hot on cold mornings.",
                category_id=self.category_id,
                skus=[SkuCreate(code=f"CACHE-{tag}-1", price_cents=2500)],
            )
        )
        self.service.set_published(doc["id"], True)
        return int(doc["id"])


@pytest.fixture()
async def env(mysql_url: str, redis_url: str) -> AsyncIterator[Env]:
    engine = make_engine(mysql_url)
    sessions = session_factory(engine)
    prefix = f"cachetest{secrets.token_hex(4)}"  # keys of this test only
    spec = BloomSpec.for_capacity(100_000, 0.001, prefix)
    keys = CacheKeys(prefix)
    sredis = redis.Redis.from_url(redis_url)
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url, decode_responses=True, max_connections=64, timeout=10
    )
    aredis = aioredis.Redis.from_pool(pool)  # as the app's context builds it
    service = CatalogService(
        sessions, inventory_shards=4, hooks=RedisCacheHooks(sredis, spec, keys, 3600)
    )
    tag = secrets.token_hex(4)
    category = service.create_category(CategoryCreate(name=f"Cache test {tag}"))
    service.create_brand(BrandCreate(name=f"Cache brand {tag}"))
    env = Env(
        sessions, QueryCounter(engine), aredis, sredis, spec, keys, service, [], category["id"]
    )
    yield env
    await aredis.aclose()
    sredis.close()
    engine.dispose()


def counter(event_name: str) -> float:
    return metrics.CACHE_EVENTS.labels(CACHE_NAME, event_name)._value.get()  # type: ignore[attr-defined]


async def test_a_stampede_of_200_requests_loads_the_product_once(env: Env) -> None:
    pid = env.new_product()
    env.queries.count = 0
    env.load_sync(pid)
    per_load = env.queries.count  # statements of one document load
    env.queries.count = 0
    cache = env.cache()
    docs = await asyncio.gather(*(cache.get(pid) for _ in range(200)))
    assert env.loads == [pid]
    assert env.queries.count == per_load
    assert all(d is not None and d["id"] == pid for d in docs)
    # ...and afterwards it is served from Redis without touching the database
    env.queries.count = 0
    again = await asyncio.gather(*(env.cache().get(pid) for _ in range(50)))
    assert env.queries.count == 0 and env.loads == [pid]
    assert again[0] == docs[0]


async def test_a_warm_bloom_filter_answers_1000_unknown_ids_without_queries(env: Env) -> None:
    env.new_product()
    cache = env.cache()
    assert await cache.warm_bloom(env.all_ids)
    assert await bloom.is_complete(env.aredis, env.spec)
    rejects = counter("bloom_reject")
    env.queries.count = 0
    rng = random.Random(7)
    unknown = [rng.randrange(10**12, 10**15) for _ in range(1000)]
    results = await asyncio.gather(*(cache.get(i) for i in unknown))
    assert results == [None] * 1000
    assert env.queries.count == 0 and env.loads == []
    assert counter("bloom_reject") - rejects == 1000


async def test_a_product_created_after_warm_up_is_never_rejected(env: Env) -> None:
    cache = env.cache()
    assert await cache.warm_bloom(env.all_ids)
    pid = env.new_product("Freshly Added Flask")
    doc = await cache.get(pid)
    assert doc is not None and doc["title"] == "Freshly Added Flask"


async def test_missing_ids_are_cached_as_null_until_created(env: Env) -> None:
    cache = env.cache()  # filter never warmed: every unknown id reaches the cache/DB
    missing = 10**15 + secrets.randbelow(10**6)
    assert await cache.get(missing) is None
    assert env.loads == [missing]
    env.queries.count = 0
    assert await asyncio.gather(*(cache.get(missing) for _ in range(20))) == [None] * 20
    assert env.queries.count == 0 and env.loads == [missing]
    ttl = await env.aredis.ttl(env.keys.doc(missing))
    assert 0 < ttl <= 33  # the short null TTL (30 s +/- 10%)


async def test_an_update_is_visible_on_the_next_read_on_every_replica(env: Env) -> None:
    pid = env.new_product("Old Title Thermos")
    replica_a, replica_b = env.cache(), env.cache()
    assert (await replica_a.get(pid))["title"] == "Old Title Thermos"  # type: ignore[index]
    assert (await replica_b.get(pid))["title"] == "Old Title Thermos"  # type: ignore[index]
    await asyncio.to_thread(env.service.update_product, pid, ProductUpdate(title="New Title"))
    assert (await replica_a.get(pid))["title"] == "New Title"  # type: ignore[index]
    assert (await replica_b.get(pid))["title"] == "New Title"  # type: ignore[index]
    await asyncio.to_thread(env.service.set_published, pid, False)
    assert (await replica_b.get(pid))["status"] == "unpublished"  # type: ignore[index]


async def test_a_load_that_raced_with_a_write_does_not_cache_the_old_document(env: Env) -> None:
    pid = env.new_product("Before Write")
    loaded, release = asyncio.Event(), asyncio.Event()

    async def slow_loader(product_id: int) -> dict[str, Any] | None:
        doc = await env.loader(product_id)  # reads the old row...
        loaded.set()
        await release.wait()  # ...and is slow to store it
        return doc

    slow = env.cache(loader=slow_loader)
    pending = asyncio.ensure_future(slow.get(pid))
    await loaded.wait()
    await asyncio.to_thread(env.service.update_product, pid, ProductUpdate(title="After Write"))
    release.set()
    assert (await pending)["title"] == "Before Write"  # type: ignore[index]  # read began earlier
    assert await env.aredis.get(env.keys.doc(pid)) is None  # the stale fill was refused
    assert (await env.cache().get(pid))["title"] == "After Write"  # type: ignore[index]


async def test_ttl_has_jitter_within_bounds(env: Env) -> None:
    cache = env.cache(jitter=0.1)
    ttls = {cache.ttl(300) for _ in range(200)}
    assert len(ttls) > 5 and min(ttls) >= 270 and max(ttls) <= 330
    pid = env.new_product()
    await cache.get(pid)
    assert 270 <= await env.aredis.ttl(env.keys.doc(pid)) <= 330


async def test_reads_fall_back_to_the_database_when_redis_is_down(env: Env) -> None:
    pid = env.new_product("Still Served")
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    cache = env.cache(redis=dead)
    errors = counter("error")
    doc = await cache.get(pid)
    assert doc is not None and doc["title"] == "Still Served"
    assert counter("error") - errors == 1
    await dead.aclose()


async def test_a_disabled_cache_reads_the_database_every_time(env: Env) -> None:
    pid = env.new_product()
    cache = env.cache(enabled=False)
    for _ in range(3):
        assert (await cache.get(pid))["id"] == pid  # type: ignore[index]
    assert env.loads == [pid, pid, pid]
    assert await env.aredis.get(env.keys.doc(pid)) is None


# ---- the listing cache ---------------------------------------------------------------


def listing_query(env: Env) -> dict[str, Any]:
    return {"category_id": env.category_id, "sort": "newest", "page": 1, "size": 20}


def listing_loader(env: Env, calls: list[int]) -> Any:
    def read() -> str:
        with env.sessions() as s:
            page = list_products(s, ProductFilters(category_id=env.category_id), size=20)
            return json.dumps(page.to_dict())

    async def load() -> str:
        calls.append(1)
        return await asyncio.to_thread(read)

    return load


def titles(body: str) -> list[str]:
    return [item["title"] for item in json.loads(body)["items"]]


async def test_a_listing_page_is_read_once_then_served_from_redis(env: Env) -> None:
    env.new_product("Listed Thermos")
    calls: list[int] = []
    replica_a = ListingCache(env.aredis, ttl_s=30, keys=env.keys)
    replica_b = ListingCache(env.aredis, ttl_s=30, keys=env.keys)
    load = listing_loader(env, calls)
    pages = await asyncio.gather(*(replica_a.get(listing_query(env), load) for _ in range(50)))
    assert len(calls) == 1 and len(set(pages)) == 1  # a stampede shares one read
    assert titles(pages[0]) == ["Listed Thermos"]
    assert await replica_b.get(listing_query(env), load) == pages[0]  # the other replica hits
    assert len(calls) == 1
    other = {**listing_query(env), "page": 2}
    await replica_b.get(other, load)
    assert len(calls) == 2  # another query is another page
    # what the shared copy has left, which bounds the replicas' own copies
    body, left = await replica_b.fetch(other, load)
    assert 25 < left <= 30 and len(calls) == 2
    await asyncio.sleep(0.3)
    assert (await replica_a.fetch(other, load))[1] <= left - 0.25
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    assert await ListingCache(dead, ttl_s=30).fetch(other, load) == (body, 0.0)  # none
    await dead.aclose()


async def test_listing_pages_filled_together_expire_spread_over_the_last_part_of_the_ttl(
    env: Env,
) -> None:
    """Pages filled in one burst expire between (1 - spread) x TTL and the TTL, not at one
    instant, and never later than the TTL (the staleness bound of the in_stock filter)."""
    cache = ListingCache(env.aredis, ttl_s=100, keys=env.keys)
    load = listing_loader(env, [])
    queries = [{**listing_query(env), "page": n} for n in range(1, 41)]
    for q in queries:
        await cache.get(q, load)
    lives = [await env.aredis.pttl(env.keys.listing(cache.digest(q))) for q in queries]
    low = 100_000 * (1 - LISTING_TTL_SPREAD) - 2_000
    assert all(low <= life <= 100_000 for life in lives), lives
    assert max(lives) - min(lives) > 3_000  # spread, not one instant


async def test_a_catalog_write_makes_every_cached_listing_page_stale(env: Env) -> None:
    pid = env.new_product("First Flask")
    calls: list[int] = []
    cache = ListingCache(env.aredis, ttl_s=300, keys=env.keys)
    load = listing_loader(env, calls)
    assert titles(await cache.get(listing_query(env), load)) == ["First Flask"]
    await asyncio.to_thread(env.service.update_product, pid, ProductUpdate(title="Renamed"))
    assert titles(await cache.get(listing_query(env), load)) == ["Renamed"]
    await asyncio.to_thread(env.service.set_published, pid, False)
    assert titles(await cache.get(listing_query(env), load)) == []
    assert len(calls) == 3


async def test_a_listing_read_that_raced_with_a_write_is_not_served_afterwards(env: Env) -> None:
    pid = env.new_product("Before")
    loaded, release = asyncio.Event(), asyncio.Event()
    inner = listing_loader(env, [])

    async def slow() -> str:
        body = str(await inner())
        loaded.set()
        await release.wait()
        return body

    cache = ListingCache(env.aredis, ttl_s=300, keys=env.keys)
    pending = asyncio.ensure_future(cache.get(listing_query(env), slow))
    await loaded.wait()
    await asyncio.to_thread(env.service.update_product, pid, ProductUpdate(title="After"))
    release.set()
    assert titles(await pending) == ["Before"]  # the read began before the write
    fresh = ListingCache(env.aredis, ttl_s=300, keys=env.keys)
    assert titles(await fresh.get(listing_query(env), inner)) == ["After"]


async def test_listing_pages_expire_and_fall_back_to_the_database_without_redis(
    env: Env,
) -> None:
    env.new_product("Short Lived")
    calls: list[int] = []
    load = listing_loader(env, calls)
    cache = ListingCache(env.aredis, ttl_s=0.2, keys=env.keys)
    await cache.get(listing_query(env), load)
    await asyncio.sleep(1.3)  # past the TTL and the single-flight linger
    await cache.get(listing_query(env), load)
    assert len(calls) == 2
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    assert titles(await ListingCache(dead, ttl_s=30).get(listing_query(env), load)) == [
        "Short Lived"
    ]
    assert len(calls) == 3
    off = ListingCache(env.aredis, ttl_s=0, keys=env.keys)
    await off.get(listing_query(env), load)
    await off.get(listing_query(env), load)
    assert len(calls) == 5
    await dead.aclose()
