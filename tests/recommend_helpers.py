"""Shared pieces of the recommender tests: one model per test process, and a recommend
engine on a SQLite file plus a Milvus Lite directory (no servers needed)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from raymall.db import make_engine, session_factory, transaction
from raymall.ids import now_ms
from recommend.embedder import Embedder
from recommend.engine import RecommendEngine
from recommend.index import ProductIndex


@functools.cache
def shared_embedder() -> Embedder:
    """Loading the model takes seconds; every test in the process shares one."""
    return Embedder(torch_threads=1)


def lite_engine(
    db_url: str,
    milvus_dir: Path,
    alias: str = "products",
    similar_cache: int = 0,
    table_max_rows: int = 0,
) -> tuple[RecommendEngine, sessionmaker[Session]]:
    sessions = session_factory(make_engine(db_url, pool_size=2))
    index = ProductIndex(str(milvus_dir / "milvus.db"), alias)
    index.ensure()
    engine = RecommendEngine(index, shared_embedder(), sessions, similar_cache, table_max_rows)
    return engine, sessions


def add_product(
    sessions: sessionmaker[Session],
    title: str,
    *,
    category: str = "Test Category",
    description: str = "",
    status: str = "published",
    stock: int = 10,
    sales: int = 0,
    price_cents: int = 1999,
    outbox: bool = True,
) -> int:
    """A product with one SKU and its inventory row, written straight to the tables, with
    the ``product.upserted`` outbox row a catalog write would add."""
    from sqlalchemy import select

    from models import Category, Inventory, Product, Sku
    from raymall.launcher.shop import (
        SkuSpec,
        category_values,
        product_values,
        sku_values,
        stock_values,
    )

    with transaction(sessions) as s:
        cat = s.scalar(select(Category).where(Category.name == category))
        now = now_ms()
        if cat is None:
            slug = "t-" + "-".join(category.lower().split()) + f"-{now}"
            cat = Category(**category_values(category, slug, now=now))
            s.add(cat)
            s.flush()
        p = Product(
            **product_values(
                title,
                cat.id,
                [price_cents],
                status=status,
                description=description,
                sales_count=sales,
                search_text=title.lower(),
                now=now,
            )
        )
        s.add(p)
        s.flush()
        spec = SkuSpec(f"T-{p.id}-{now}", price_cents, stock, low_stock_threshold=1)
        sku = Sku(**sku_values(p.id, spec, now=now))
        s.add(sku)
        s.flush()
        s.add(Inventory(**stock_values(int(sku.id), stock, 1, now=now)))  # one shard: 0
        if outbox:
            s.add(product_event(int(p.id), "product.upserted", now))
        return int(p.id)


def product_event(product_id: int, topic: str, at_ms: int | None = None) -> Any:
    import uuid

    from models import OutboxEvent

    return OutboxEvent(
        event_id=uuid.uuid4().hex,
        topic=topic,
        aggregate_id=str(product_id),
        payload={"product_id": product_id},
        created_ms=at_ms or now_ms(),
    )


def set_status(sessions: sessionmaker[Session], product_id: int, status: str) -> None:
    """Change a product's status with its outbox event, as the catalog service does."""
    from models import Product

    with transaction(sessions) as s:
        p = s.get(Product, product_id)
        assert p is not None
        p.status = status
        p.updated_ms = now_ms()
        s.add(product_event(product_id, "product.upserted"))
