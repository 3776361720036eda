"""``raymall seed --demo``: load the deterministic demo catalog (and demo accounts).

Idempotent: categories and brands are matched by slug and products by their SKU codes,
so a second run finds everything present and changes nothing. Migrates the database
first and ensures the reference data (roles, permissions). Inventory rows get their
initial stock here, before any inventory shard owns them; afterwards only the shards
change stock. When a Redis server is configured, new product ids are added to the
catalog's shared Bloom filter and their cache entries dropped, so a running app sees them.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from models import Brand, Category, Inventory, Product, Sku
from raymall.bootstrap import ensure_reference_data
from raymall.catalog.demo_data import DemoCatalog, generate
from raymall.catalog.effects import emit
from raymall.catalog.text import build_search_text
from raymall.db import make_engine, session_factory, transaction
from raymall.ids import now_ms
from raymall.launcher.migrate import upgrade
from raymall.launcher.shop import (
    SkuSpec,
    category_values,
    product_values,
    sku_values,
    stock_values,
)
from raymall.logs import get_logger
from raymall.settings import Settings

log = get_logger("seed")


def seed_demo(settings: Settings) -> dict[str, Any]:
    """Load the demo data; returns a summary (counts created, demo credentials)."""
    started = time.perf_counter()
    url = settings.resolved_database_url
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(url)
    ensure_reference_data(settings)
    catalog = generate()
    engine = make_engine(url, pool_size=1)
    try:
        with transaction(session_factory(engine)) as session:
            created = _load(session, catalog, settings.inventory_shards)
    finally:
        engine.dispose()
    summary: dict[str, Any] = {
        "database": make_url(url).render_as_string(hide_password=True),
        "catalog": catalog.summary(),
        "created": {k: v for k, v in created.items() if k != "product_ids"},
    }
    summary["cache"] = _announce(settings, created["product_ids"])
    accounts = _seed_accounts(settings)
    if accounts is not None:
        summary["accounts"] = accounts
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary


def _load(session: Session, catalog: DemoCatalog, shards: int) -> dict[str, Any]:
    now = now_ms()
    cats = {c.slug: c for c in session.scalars(select(Category))}
    new_categories = 0
    for dc in catalog.categories:  # parents come before their children
        if dc.slug not in cats:
            parent = cats[dc.parent_slug].id if dc.parent_slug else None
            row = Category(
                **category_values(
                    dc.name, dc.slug, parent_id=parent, sort_order=dc.sort_order, now=now
                )
            )
            session.add(row)
            session.flush()
            cats[dc.slug] = row
            new_categories += 1
    brands = {b.slug: b for b in session.scalars(select(Brand))}
    new_brands = [
        Brand(
            name=db.name, slug=db.slug, description=db.description, created_ms=now, updated_ms=now
        )
        for db in catalog.brands
        if db.slug not in brands
    ]
    session.add_all(new_brands)
    session.flush()
    brands.update({b.slug: b for b in new_brands})

    codes = set(session.scalars(select(Sku.code).where(Sku.code.like("DM-%"))))
    todo = [p for p in catalog.products if p.skus[0].code not in codes]
    by_slug = {c.slug: c for c in catalog.categories}
    products: list[Product] = []
    for dp in todo:
        brand = brands[dp.brand_slug]
        path: list[str] = []
        slug: str | None = dp.category_slug
        while slug is not None:
            path.insert(0, by_slug[slug].name)
            slug = by_slug[slug].parent_slug
        products.append(
            Product(
                **product_values(
                    dp.title,
                    cats[dp.category_slug].id,
                    [s.price_cents for s in dp.skus],
                    description=dp.description,
                    brand_id=brand.id,
                    attributes=dp.attributes,
                    sales_count=dp.sales_count,
                    search_text=build_search_text(dp.title, brand.name, path, dp.description),
                    now=dp.created_ms,
                )
            )
        )
    session.add_all(products)
    session.flush()
    skus: list[tuple[Sku, int]] = []
    for dp, product in zip(todo, products, strict=True):
        for ds in dp.skus:
            spec = SkuSpec(ds.code, ds.price_cents, ds.stock, ds.specs, low_stock_threshold=10)
            sku = Sku(**sku_values(product.id, spec, now=dp.created_ms))
            skus.append((sku, ds.stock))
        emit(session, "product.upserted", product.id, {"product_id": product.id, "reason": "seed"})
    session.add_all([s for s, _ in skus])
    session.flush()
    session.add_all(
        [Inventory(**stock_values(int(sku.id), stock, shards, now=now)) for sku, stock in skus]
    )
    return {
        "categories": new_categories,
        "brands": len(new_brands),
        "products": len(products),
        "skus": len(skus),
        "product_ids": [int(p.id) for p in products],
    }


def _announce(settings: Settings, product_ids: list[int]) -> str:
    """Tell a running app's cache about new products (only with a Redis server URL)."""
    if not product_ids:
        return "nothing new"
    if not settings.redis_url:
        return "embedded redis: the app rebuilds its Bloom filter at start"
    import redis

    from raymall.catalog.runtime import cache_hooks

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    try:
        hooks = cache_hooks(settings, client)
        hooks.announce(product_ids)
        hooks.invalidate(product_ids)
        return f"announced {len(product_ids)} products"
    except Exception as exc:  # the app's periodic Bloom refresh will pick them up
        log.warning("could not announce demo products to redis: %s", exc)
        return f"redis unreachable ({type(exc).__name__}); the app refreshes its filter"
    finally:
        client.close()


def _seed_accounts(settings: Settings) -> Any:
    try:
        module = importlib.import_module("raymall.auth.demo")
    except ModuleNotFoundError as exc:
        if exc.name not in ("raymall.auth", "raymall.auth.demo"):
            raise
        return None
    return module.seed_demo_accounts(settings)
