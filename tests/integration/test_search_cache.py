"""The search cache against real MariaDB (FULLTEXT) and Redis: answers equal uncached
search, a catalog write shows on the next request, a load that raced with a write is
never served, identical misses share one load, bad input is still refused, and search
keeps answering without Redis."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy.orm import Session, sessionmaker

from raymall.catalog.bloom import BloomSpec
from raymall.catalog.cache import CacheKeys
from raymall.catalog.effects import RedisCacheHooks
from raymall.catalog.repository import ProductFilters
from raymall.catalog.schemas import CategoryCreate, ProductCreate, ProductUpdate, SkuCreate
from raymall.catalog.search import search_products
from raymall.catalog.search_cache import SearchCache
from raymall.catalog.service import CatalogService
from raymall.db import make_engine, session_factory
from raymall.errors import ValidationFailed

pytestmark = pytest.mark.integration
CURSOR_KEY = b"k" * 32


@dataclass
class Env:
    sessions: sessionmaker[Session]
    aredis: Any
    keys: CacheKeys
    service: CatalogService
    category_id: int
    word: str  # a word only this test's products carry
    loads: int = 0

    def cache(self, **kw: Any) -> SearchCache[str]:
        """A cache as one replica holds it."""
        return SearchCache(
            kw.pop("redis", self.aredis),
            name="test_search",
            decode=str,
            ttl_s=300,
            keys=self.keys,
            **kw,
        )

    def add(self, title: str) -> int:
        tag = secrets.token_hex(4)
        doc = self.service.create_product(
            ProductCreate(
                title=f"{title} {self.word}",
                description="For long walks.",
                category_id=self.category_id,
                skus=[SkuCreate(code=f"SC-{tag}", price_cents=1500)],
            )
        )
        self.service.set_published(doc["id"], True)
        return int(doc["id"])

    def search_now(self, query: str, page: int = 1, cursor: str | None = None) -> str:
        with self.sessions() as s:
            found = search_products(
                s, query, ProductFilters(), page=page, size=5, cursor=cursor, cursor_key=CURSOR_KEY
            )
        return json.dumps(found.to_dict(), separators=(",", ":"))

    async def search(
        self, cache: SearchCache[str], query: str, page: int = 1, cursor: str | None = None
    ) -> dict[str, Any]:
        async def load() -> str:
            self.loads += 1
            return await asyncio.to_thread(self.search_now, query, page, cursor)

        key = {"q": query.lower().split(), "page": page, "cursor": cursor}
        return dict(json.loads(await cache.get(key, load)))


@pytest.fixture()
async def env(mysql_url: str, redis_url: str) -> AsyncIterator[Env]:
    engine = make_engine(mysql_url)
    sessions = session_factory(engine)
    prefix = f"searchtest{secrets.token_hex(4)}"  # keys of this test only
    keys = CacheKeys(prefix)
    sredis = redis.Redis.from_url(redis_url)
    aredis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    spec = BloomSpec.for_capacity(10_000, 0.01, prefix)
    service = CatalogService(
        sessions, inventory_shards=4, hooks=RedisCacheHooks(sredis, spec, keys, 3600)
    )
    category = service.create_category(CategoryCreate(name=f"Search test {secrets.token_hex(4)}"))
    word = "zq" + secrets.token_hex(3).replace("0", "x")  # letters and digits, no stopword
    yield Env(sessions, aredis, keys, service, int(category["id"]), word)
    await aredis.aclose()
    sredis.close()
    engine.dispose()


def ids(page: dict[str, Any]) -> list[int]:
    return [item["id"] for item in page["items"]]


async def test_cached_answers_equal_uncached_search_on_every_replica(env: Env) -> None:
    made = {env.add("Trail boot"), env.add("Trail sandal"), env.add("Rain boot")}
    a, b = env.cache(), env.cache()
    first = await env.search(a, f"boot {env.word}")
    assert env.loads == 1
    assert first == json.loads(env.search_now(f"boot {env.word}"))
    assert set(ids(first)) <= made and len(ids(first)) == 2
    assert await env.search(a, f"BOOT  {env.word}") == first  # this replica's tier
    assert await env.search(b, f"boot {env.word}") == first  # Redis, filled by replica a
    assert env.loads == 1
    assert (await env.search(b, f"trail {env.word}"))["total"] == 2
    assert env.loads == 2


async def test_a_catalog_write_shows_in_search_on_the_next_request(env: Env) -> None:
    env.add("Hiking boot")
    a, b = env.cache(), env.cache()
    before = await env.search(a, env.word)
    await env.search(b, env.word)
    new = env.add("Winter boot")  # commits, then bumps the generation
    assert new in ids(await env.search(a, env.word))
    assert new in ids(await env.search(b, env.word))
    env.service.update_product(new, ProductUpdate(title=f"Winter sock {env.word}"))
    assert (await env.search(a, f"boot {env.word}"))["total"] == before["total"]
    env.service.set_published(new, False)
    assert new not in ids(await env.search(b, env.word))


async def test_an_answer_loaded_across_a_write_is_never_served(env: Env) -> None:
    env.add("Camp stove")
    cache = env.cache()
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_load() -> str:
        text = await asyncio.to_thread(env.search_now, env.word)
        started.set()
        await release.wait()
        return text

    pending = asyncio.ensure_future(cache.get({"q": [env.word]}, slow_load))
    await started.wait()
    new = await asyncio.to_thread(env.add, "Camp kettle")  # write while the load is out
    release.set()
    stale = json.loads(await pending)
    assert new not in ids(stale)  # the racing caller gets what it read ...
    assert new in ids(await env.search(cache, env.word))  # ... nobody after it does
    assert new in ids(await env.search(env.cache(), env.word))


async def test_concurrent_identical_misses_share_one_load(env: Env) -> None:
    env.add("Head lamp")
    cache = env.cache()
    pages = await asyncio.gather(*(env.search(cache, env.word) for _ in range(50)))
    assert env.loads == 1
    assert all(p == pages[0] for p in pages)


async def test_a_bad_cursor_is_still_refused_and_nothing_is_stored(env: Env) -> None:
    for n in range(7):
        env.add(f"Water bottle {n}")
    cache = env.cache()
    first = await env.search(cache, env.word)
    assert first["next_cursor"]
    second = await env.search(cache, env.word, cursor=first["next_cursor"])
    assert set(ids(second)).isdisjoint(ids(first))
    for _ in range(2):
        with pytest.raises(ValidationFailed):
            await env.search(cache, env.word, cursor="not-a-cursor")
    assert env.loads == 4  # each refused request searched again: no error was stored


async def test_search_answers_without_redis(env: Env) -> None:
    env.add("Tent peg")
    down = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        cache = env.cache(redis=down)
        page = await env.search(cache, env.word)
        assert page == json.loads(env.search_now(env.word))
        await env.search(cache, env.word)
        assert env.loads == 2  # nothing cached while Redis is away
    finally:
        await down.aclose()


async def test_answers_expire_after_the_ttl(env: Env) -> None:
    env.add("Snow shovel")
    cache = SearchCache(env.aredis, name="test_search", decode=str, ttl_s=0.3, keys=env.keys)
    await env.search(cache, env.word)
    await env.search(cache, env.word)
    assert env.loads == 1
    await asyncio.sleep(0.4)
    await env.search(cache, env.word)
    assert env.loads == 2
