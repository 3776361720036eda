"""The conventional shop that raymall's catalog reads are measured against: FastAPI +
uvicorn (one worker) on the same MariaDB tables (products, skus, inventory, categories,
brands) and the same Redis server, built the way the seeds build it.

- ``GET /products/{id}``: the product document (SPU + SKUs, the fields of raymall's
  detail) is cache-aside in Redis (``peer:product:{id}``, ``PEER_DOC_TTL_S``, 300 s like
  raymall's ``RAYMALL_CACHE_TTL_S``; a missing id is cached as such for 30 s). Live
  availability is ONE SQL query per request on ``inventory``, merged into the answer
  (per SKU ``available`` and ``in_stock``, the product's ``in_stock``). 404 when the
  product is missing or not published.
- ``GET /products?page&size``: the listing page of raymall's default order (sort newest:
  ``created_ms`` desc, then id desc; published products; the same card fields, ``total``
  and ``next_cursor``), cached in Redis as serialised JSON for ``PEER_LISTING_TTL_S``
  (30 s, like raymall's ``RAYMALL_LISTING_CACHE_TTL_S``).

An honest implementation, not a strawman: async handlers, an async Redis client with a
connection pool, SQL on a pooled SQLAlchemy + PyMySQL engine in the thread pool (sized to
the pool, so no request waits for a connection while holding a thread), raw SQL with no
ORM objects, stdlib ``json`` with compact separators like raymall's routes.

    PEER_DB=mysql+pymysql://root@127.0.0.1:3306/raymall_x PEER_REDIS=redis://127.0.0.1:6379/5 \\
        uvicorn plain_shop:app --app-dir bench/peers --workers 1 --loop uvloop --http httptools
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
import redis.asyncio as aioredis
from fastapi import FastAPI, Path, Query, Response
from sqlalchemy import Engine, create_engine

MISSING = b"-"  # the cached answer for an id that is not in the products table

PRODUCT_SQL = (
    "SELECT p.id, p.title, p.description, p.status, p.category_id, p.brand_id, p.attributes,"
    " p.images, p.min_price_cents, p.max_price_cents, p.sales_count, p.created_ms,"
    " p.updated_ms, b.name, b.slug, p.rating_count, p.rating_x100"
    " FROM products p LEFT JOIN brands b ON b.id = p.brand_id WHERE p.id = %s"
)
SKUS_SQL = (
    "SELECT id, product_id, code, specs, price_cents, low_stock_threshold FROM skus"
    " WHERE product_id = %s ORDER BY price_cents, id"
)
CATEGORY_PATH_SQL = (
    "WITH RECURSIVE up (id, parent_id, name, slug, d) AS ("
    " SELECT id, parent_id, name, slug, 0 FROM categories WHERE id = %s"
    " UNION ALL SELECT c.id, c.parent_id, c.name, c.slug, up.d + 1"
    " FROM categories c JOIN up ON c.id = up.parent_id WHERE up.d < 64)"
    " SELECT id, name, slug FROM up ORDER BY d DESC"
)
AVAILABLE_SQL = "SELECT sku_id, available FROM inventory WHERE sku_id IN ({marks})"
COUNT_SQL = "SELECT COUNT(*) FROM products WHERE status = 'published'"
PAGE_SQL = (
    "SELECT p.id, p.title, p.brand_id, b.name, p.category_id, p.status, p.min_price_cents,"
    " p.max_price_cents, p.images, p.sales_count, p.created_ms,"
    " EXISTS (SELECT 1 FROM skus s JOIN inventory i ON i.sku_id = s.id"
    "   WHERE s.product_id = p.id AND i.available > 0), p.rating_count, p.rating_x100"
    " FROM products p LEFT JOIN brands b ON b.id = p.brand_id"
    " WHERE p.status = 'published'"
    " ORDER BY p.created_ms DESC, p.id DESC LIMIT %s OFFSET %s"
)


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def error(status: int, code: str, message: str) -> Response:
    body = {"error": {"code": code, "message": message, "request_id": ""}}
    return Response(dumps(body), status_code=status, media_type="application/json")


def first_image(images: str | None) -> str | None:
    found = json.loads(images) if images else None
    return (found or [None])[0]  # type: ignore[no-any-return]


def rating(count: int, x100: int) -> dict[str, Any]:
    """The review summary fields of raymall's documents and cards."""
    return {"rating_count": int(count), "rating_average": None if count <= 0 else x100 / 100}


def next_cursor(created_ms: int, product_id: int) -> str:
    """The keyset cursor of the listing's next page, encoded as raymall encodes it."""
    raw = json.dumps({"s": "newest", "v": created_ms, "i": product_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


class Store:
    """The SQL side: a pooled engine; every method runs in a worker thread."""

    def __init__(self, url: str, pool_size: int) -> None:
        self.engine: Engine = create_engine(
            url, pool_size=pool_size, max_overflow=0, pool_recycle=3600
        )

    def product_doc(self, product_id: int) -> dict[str, Any] | None:
        """SPU + SKUs (any status, no stock), as raymall's cached document."""
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql(PRODUCT_SQL, (product_id,)).first()
            if row is None:
                return None
            skus = conn.exec_driver_sql(SKUS_SQL, (product_id,)).all()
            path = [
                {"id": int(r[0]), "name": r[1], "slug": r[2]}
                for r in conn.exec_driver_sql(CATEGORY_PATH_SQL, (row[4],))
            ]
        return {
            "id": int(row[0]),
            "title": row[1],
            "description": row[2],
            "status": row[3],
            "category": {
                "id": int(row[4]),
                "name": path[-1]["name"] if path else None,
                "path": path,
            },
            "brand": (
                {"id": int(row[5]), "name": row[13], "slug": row[14]}
                if row[5] is not None
                else None
            ),
            "attributes": json.loads(row[6]) if row[6] else {},
            "images": json.loads(row[7]) if row[7] else [],
            "min_price_cents": int(row[8]),
            "max_price_cents": int(row[9]),
            "sales_count": int(row[10]),
            **rating(row[15], row[16]),
            "created_ms": int(row[11]),
            "updated_ms": int(row[12]),
            "skus": [
                {
                    "id": int(s[0]),
                    "product_id": int(s[1]),
                    "code": s[2],
                    "specs": json.loads(s[3]) if s[3] else {},
                    "price_cents": int(s[4]),
                    "low_stock_threshold": int(s[5]),
                }
                for s in skus
            ],
        }

    def availability(self, sku_ids: Sequence[int]) -> dict[int, int]:
        """``inventory.available`` per SKU: one query."""
        if not sku_ids:
            return {}
        sql = AVAILABLE_SQL.format(marks=",".join(["%s"] * len(sku_ids)))
        with self.engine.connect() as conn:
            return {int(r[0]): int(r[1]) for r in conn.exec_driver_sql(sql, tuple(sku_ids))}

    def listing(self, page: int, size: int) -> dict[str, Any]:
        """One page of published products, newest first, as raymall's listing page."""
        with self.engine.connect() as conn:
            total = int(conn.exec_driver_sql(COUNT_SQL).scalar() or 0)
            rows = conn.exec_driver_sql(PAGE_SQL, (size + 1, (page - 1) * size)).all()
        more, rows = len(rows) > size, rows[:size]
        items = [
            {
                "id": int(r[0]),
                "title": r[1],
                "brand": {"id": int(r[2]), "name": r[3]} if r[2] is not None else None,
                "category_id": int(r[4]),
                "status": r[5],
                "min_price_cents": int(r[6]),
                "max_price_cents": int(r[7]),
                "image": first_image(r[8]),
                "sales_count": int(r[9]),
                **rating(r[12], r[13]),
                "created_ms": int(r[10]),
                "in_stock": bool(r[11]),
            }
            for r in rows
        ]
        return {
            "items": items,
            "total": total,
            "page": page,
            "size": size,
            "next_cursor": next_cursor(int(rows[-1][10]), int(rows[-1][0])) if more else None,
        }


def build_app(db_url: str, redis_url: str) -> FastAPI:
    threads = int(os.environ.get("PEER_THREADS", "32"))
    doc_ttl_s = int(os.environ.get("PEER_DOC_TTL_S", "300"))
    missing_ttl_s = int(os.environ.get("PEER_MISSING_TTL_S", "30"))
    listing_ttl_s = int(os.environ.get("PEER_LISTING_TTL_S", "30"))
    store = Store(db_url, pool_size=threads)
    cache = aioredis.Redis.from_url(redis_url, max_connections=256)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # one DB connection per worker thread: no request holds a thread waiting for one
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield
        await cache.aclose()
        store.engine.dispose()

    app = FastAPI(lifespan=lifespan)

    async def product_doc(product_id: int) -> dict[str, Any] | None:
        key = f"peer:product:{product_id}"
        cached = await cache.get(key)
        if cached == MISSING:
            return None
        if cached is not None:
            return json.loads(cached)  # type: ignore[no-any-return]
        doc = await anyio.to_thread.run_sync(store.product_doc, product_id)
        if doc is None:
            await cache.set(key, MISSING, ex=missing_ttl_s)
        else:
            await cache.set(key, dumps(doc), ex=doc_ttl_s)
        return doc

    @app.get("/products/{product_id}")
    async def product_detail(product_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:
        doc = await product_doc(product_id)
        if doc is None or doc["status"] != "published":
            return error(404, "not_found", f"product {product_id} not found")
        ids = [s["id"] for s in doc["skus"]]
        stock = await anyio.to_thread.run_sync(store.availability, ids)
        for s in doc["skus"]:
            s["available"] = stock.get(s["id"], 0)
            s["in_stock"] = s["available"] > 0
        doc["in_stock"] = any(s["in_stock"] for s in doc["skus"])
        return Response(dumps(doc), media_type="application/json")

    @app.get("/products")
    async def products(
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
        size: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Response:
        key = f"peer:listing:newest:{page}:{size}"
        body = await cache.get(key)
        if body is None:
            body = dumps(await anyio.to_thread.run_sync(store.listing, page, size))
            await cache.set(key, body, ex=listing_ttl_s)
        return Response(body, media_type="application/json")

    return app


if os.environ.get("PEER_DB"):
    app = build_app(os.environ["PEER_DB"], os.environ["PEER_REDIS"])
