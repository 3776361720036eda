"""The catalog as one replica runs it: service, detail cache, Bloom filter upkeep, media,
and the public reads (listing, search, categories, brands), wired from the resolved
settings. The HTTP routes call this and nothing deeper. Availability comes from the
replica's mirror of the read model the inventory owners publish
(``raymall.catalog.availability``), from the owner (the ``LiveStock`` port) for what the
mirror cannot answer, and from the database when neither can. SKUs for the cart come from
their products' documents (``raymall.catalog.skus``). Reads use read sessions
(``raymall.db.read_sessions``); the catalog service writes with ``sessions``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import redis as redis_sync
from sqlalchemy.orm import Session, sessionmaker

from raymall.catalog import local_cache
from raymall.catalog.availability import CHANNEL, AvailabilityMirror, LiveStock
from raymall.catalog.bloom import BloomSpec
from raymall.catalog.cache import CacheKeys, DetailCache, ListingCache
from raymall.catalog.effects import RedisCacheHooks
from raymall.catalog.listing import list_products
from raymall.catalog.local_cache import LocalCatalog, PageParts
from raymall.catalog.media_stores import open_media
from raymall.catalog.repository import (
    ProductFilters,
    category_tree,
    db_availability,
    iter_product_ids,
    list_brands,
    load_product_doc,
    sku_ids_of,
)
from raymall.catalog.search import search_products
from raymall.catalog.search_cache import SearchCache
from raymall.catalog.service import CatalogService
from raymall.catalog.skus import SkuDirectory
from raymall.catalog.text import query_terms
from raymall.db import read_sessions
from raymall.errors import NotFound
from raymall.feed import Feed, scoped_channel
from raymall.logs import get_logger
from raymall.settings import Settings
from raymall.tasks import stop_tasks

log = get_logger("catalog")
KEY_PREFIX = "catalog"


def bloom_spec(settings: Settings) -> BloomSpec:
    return BloomSpec.for_capacity(settings.bloom_capacity, settings.bloom_error_rate, KEY_PREFIX)


def generation_ttl_s(settings: Settings) -> int:
    """Generation counters outlive any document (and any fill in flight) by far."""
    return max(3_600, 4 * settings.cache_ttl_s)


def cache_hooks(settings: Settings, client: Any) -> RedisCacheHooks:
    channel = (
        scoped_channel(settings.redis_url, local_cache.CHANNEL) if settings.redis_url else None
    )
    return RedisCacheHooks(
        client,
        bloom_spec(settings),
        CacheKeys(KEY_PREFIX),
        generation_ttl_s(settings),
        channel,
    )


class CatalogRuntime:
    """Per-replica catalog (``Services.catalog``). Without ``inventory``, availability is
    the last committed value."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        redis: Any,
        inventory: LiveStock | None = None,
    ) -> None:
        assert settings.redis_url, "settings must be resolved"
        self.settings = settings
        self.sessions = read_sessions(sessions)  # the reads below; the service writes
        self.inventory = inventory
        self.sync_redis = redis_sync.Redis.from_url(
            settings.redis_url, socket_timeout=5, socket_connect_timeout=2
        )
        self.spec = bloom_spec(settings)
        self.hooks = cache_hooks(settings, self.sync_redis)
        self.media = open_media(settings)
        self.service = CatalogService(
            sessions,
            inventory_shards=settings.inventory_shards,
            media=self.media,
            hooks=self.hooks,
        )
        self.cache = DetailCache(
            redis,
            self._load,
            spec=self.spec,
            ttl_s=settings.cache_ttl_s,
            null_ttl_s=settings.cache_null_ttl_s,
            jitter=settings.cache_ttl_jitter,
            enabled=settings.cache_enabled,
            keys=CacheKeys(KEY_PREFIX),
        )
        self.listings = ListingCache(
            redis,
            ttl_s=settings.listing_cache_ttl_s,
            keys=CacheKeys(KEY_PREFIX),
            enabled=settings.cache_enabled,
        )
        self.searches: SearchCache[PageParts] = SearchCache(
            redis,
            name="product_search",
            decode=PageParts,
            ttl_s=settings.listing_cache_ttl_s,
            keys=CacheKeys(KEY_PREFIX),
            enabled=settings.cache_enabled,
        )
        self._refresher: asyncio.Task[None] | None = None
        self.mirror: AvailabilityMirror | None = None
        self.local: LocalCatalog | None = None
        self.skus = SkuDirectory(self.sessions, self.documents)

    def follow(self, feed: Feed, redis: Any) -> None:
        """Read availability from the read model the shards publish, through ``feed``
        (``redis``: an async client decoding replies to str, for the mirror's reloads)."""
        if not self.settings.availability_read_model or self.settings.redis_url is None:
            return
        self.mirror = AvailabilityMirror(
            redis,
            self.settings.inventory_shards,
            trust_s=self.settings.availability_trust_ms / 1000,
            owner=self.inventory,
            connected=lambda: feed.connected,
        )
        channel = scoped_channel(self.settings.redis_url, CHANNEL)
        feed.subscribe(channel, self.mirror.on_message, self.mirror.resync)
        if self.settings.cache_enabled:
            self.local = local = LocalCatalog(
                lambda: feed.connected,
                # a page lives as long as its shared copy has left (``ListingCache.fetch``)
                page_ttl_s=self.settings.listing_cache_ttl_s,
                doc_ttl_s=min(60.0, self.settings.cache_ttl_s),
            )
            channel = scoped_channel(self.settings.redis_url, local_cache.CHANNEL)
            feed.subscribe(channel, local.on_message, local.resync)
            loop = asyncio.get_running_loop()

            def drop_soon(ids: list[int]) -> None:  # from a writer's thread
                loop.call_soon_threadsafe(local.drop, ids)

            self.hooks.after = drop_soon

    # ---- reads ----------------------------------------------------------------------
    def _load_sync(self, product_id: int) -> dict[str, Any] | None:
        with self.sessions() as session:
            return load_product_doc(session, product_id)

    async def _load(self, product_id: int) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._load_sync, product_id)

    async def _read(self, read: Any, *args: Any, **kw: Any) -> Any:
        def run() -> Any:
            with self.sessions() as session:
                return read(session, *args, **kw)

        return await asyncio.to_thread(run)

    async def listing(
        self, filters: ProductFilters, *, sort: str, page: int, size: int, cursor: str | None
    ) -> str:
        """A page of published products as JSON text: from the replica's copy, else the
        listing cache, else the database; each card's ``in_stock`` from the availability
        read model where it can answer (the value the page was filled with otherwise)."""
        local = self.local
        key = (filters, sort, page, size, cursor)
        parts = local.page(key) if local is not None else None
        if parts is None:
            token = local.page_token() if local is not None else 0
            text, left_s = await self._listing_text(filters, sort, page, size, cursor)
            parts = PageParts(text)
            if local is not None and left_s > 0:
                local.put_page(key, token, parts, left_s)
        if self.mirror is None:
            return parts.render(lambda sku_ids: None)
        return parts.render(self.mirror.in_stock_view())

    async def _listing_text(
        self, filters: ProductFilters, sort: str, page: int, size: int, cursor: str | None
    ) -> tuple[str, float]:
        """The page's JSON text with its cards' SKU ids (``_skus``), through the listing
        cache, and the seconds its shared copy has left."""
        # everything the page depends on: the cache key
        query = {
            "filters": asdict(filters),
            "sort": sort,
            "page": page,
            "size": size,
            "cursor": cursor,
        }

        def run() -> str:
            with self.sessions() as session:
                found = list_products(
                    session, filters, sort=sort, page=page, size=size, cursor=cursor
                ).to_dict()
                by_product = sku_ids_of(session, [card["id"] for card in found["items"]])
                found["_skus"] = [by_product.get(card["id"], []) for card in found["items"]]
                return json.dumps(found, separators=(",", ":"))

        return await self.listings.fetch(query, lambda: asyncio.to_thread(run))

    async def admin_listing(
        self, filters: ProductFilters, *, sort: str, page: int, size: int, cursor: str | None
    ) -> dict[str, Any]:
        """Products in any status, read from the database (not the listing cache)."""
        return await self._read(  # type: ignore[no-any-return]
            lambda s: list_products(
                s, filters, sort=sort, page=page, size=size, cursor=cursor
            ).to_dict()
        )

    async def search(
        self,
        query: str,
        filters: ProductFilters,
        *,
        sort: str,
        page: int,
        size: int,
        cursor: str | None,
    ) -> str:
        """Keyword search (``raymall.catalog.search``) as JSON text, through the search
        cache (``raymall.catalog.search_cache``: answers versioned by the catalog
        generation, so a catalog change shows on the next request); each card's
        ``in_stock`` from the availability read model where it can answer, as in
        listings."""
        cache = self.searches
        key = {  # everything the page depends on (the query only through its terms)
            "q": query_terms(query),
            "filters": asdict(filters),
            "sort": sort,
            "page": page,
            "size": size,
            "cursor": cursor,
        }

        def run() -> str:
            with self.sessions() as session:
                found = search_products(
                    session,
                    query,
                    filters,
                    sort=sort,
                    page=page,
                    size=size,
                    cursor=cursor,
                    cursor_key=self.cursor_key,
                ).to_dict()
                by_product = sku_ids_of(session, [card["id"] for card in found["items"]])
                found["_skus"] = [by_product.get(card["id"], []) for card in found["items"]]
                return json.dumps(found, separators=(",", ":"))

        parts = await cache.get(key, lambda: asyncio.to_thread(run))
        if self.mirror is None:
            return parts.render(lambda sku_ids: None)
        return parts.render(self.mirror.in_stock_view())

    @property
    def cursor_key(self) -> bytes:
        """The key that signs search cursors, derived from the JWT secret (no new secret
        to manage; another purpose string, so neither key reveals the other)."""
        secret = self.settings.secret("jwt_secret").encode()
        return hmac.new(secret, b"raymall:search-cursor", hashlib.sha256).digest()

    async def categories(self) -> list[dict[str, Any]]:
        return await self._read(category_tree)  # type: ignore[no-any-return]

    async def brands(self) -> list[dict[str, Any]]:
        return await self._read(list_brands)  # type: ignore[no-any-return]

    async def availability(self, sku_ids: Sequence[int]) -> dict[int, int]:
        """Availability per SKU: from the read model's mirror, else from the inventory
        owner; the last committed value from the database when neither can answer."""
        if not sku_ids:
            return {}
        try:
            if self.mirror is not None:
                return await self.mirror.availability(sku_ids)
            if self.inventory is not None:
                live = await self.inventory.availability(list(sku_ids))
                return {int(k): int(v) for k, v in live.items()}
        except Exception as exc:  # degrade to the committed value, never fail the page
            log.warning("live availability failed, using the database: %s", exc)

        def read() -> dict[int, int]:
            with self.sessions() as session:
                return db_availability(session, sku_ids)

        return await asyncio.to_thread(read)

    async def public_detail(self, product_id: int) -> dict[str, Any]:
        """A published product with live availability per SKU; 404 otherwise."""
        doc = await self.document(product_id)
        if doc is None or doc.get("status") != "published":
            raise NotFound(f"product {product_id} not found")
        stock = await self.availability([s["id"] for s in doc["skus"]])
        skus = [
            {**s, "available": stock.get(s["id"], 0), "in_stock": stock.get(s["id"], 0) > 0}
            for s in doc["skus"]
        ]
        return {**doc, "skus": skus, "in_stock": any(s["in_stock"] for s in skus)}

    async def document(self, product_id: int) -> dict[str, Any] | None:
        """The product's document (any status; None: no such product): the replica's copy,
        else the detail cache."""
        local = self.local
        if local is None:
            return await self.cache.get(product_id)
        doc = local.doc(product_id)
        if doc is None:
            token = local.doc_token(product_id)
            doc = await self.cache.get(product_id)
            if doc is not None:
                local.put_doc(product_id, token, doc)
        return doc

    async def documents(self, product_ids: Sequence[int]) -> dict[int, dict[str, Any] | None]:
        """``document`` of each product: the replica's copies at once, the others read
        together."""
        out: dict[int, dict[str, Any] | None] = {}
        local = self.local
        missing = list(product_ids)
        if local is not None and local.usable():
            missing = []
            for pid in product_ids:
                doc = local.doc(pid)
                if doc is None:
                    missing.append(pid)
                else:
                    out[pid] = doc
        if len(missing) == 1:
            out[missing[0]] = await self.document(missing[0])
        elif missing:
            docs = await asyncio.gather(*(self.document(pid) for pid in missing))
            out.update(zip(missing, docs, strict=True))
        return out

    def invalidate_sync(self, product_ids: Sequence[int]) -> None:
        """``invalidate`` for a writer running in a worker thread (after its commit)."""
        self.service.hooks.invalidate(list(product_ids))

    async def invalidate(self, product_ids: Sequence[int]) -> None:
        """For other areas that change product rows outside the catalog service (e.g. a
        sales counter): call after the commit so the next read sees the change."""
        await asyncio.to_thread(self.service.hooks.invalidate, list(product_ids))

    # ---- lifecycle ------------------------------------------------------------------
    def _all_ids(self) -> list[list[int]]:
        with self.sessions() as session:
            return list(iter_product_ids(session))

    async def refresh_bloom(self) -> bool:
        try:
            return await self.cache.warm_bloom(self._all_ids)
        except Exception as exc:  # readers treat an incomplete filter as absent
            log.warning("bloom filter refresh failed: %s", exc)
            return False

    async def _refresh_forever(self) -> None:
        await self.refresh_bloom()
        while True:
            period = self.settings.bloom_refresh_s
            await asyncio.sleep(period * random.uniform(0.8, 1.2))
            await self.refresh_bloom()

    def start(self) -> None:
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._refresher is not None:
            await stop_tasks([self._refresher])
            self._refresher = None
        self.sync_redis.close()
