"""Database reads of the recommender: product documents, outbox rows, user history.

Plain SQLAlchemy on a ``Session``; nothing here writes. Category paths come from one read
of the (small) category table instead of a recursive query per product, so a rebuild of
the whole catalog costs a handful of queries per batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from models import Brand, Category, Inventory, Order, OrderItem, OutboxEvent, Product, Sku
from raymall.reviews.rules import public_rating
from recommend.text import ProductDoc

PRODUCT_TOPIC_PREFIX = "product."
# an order in these states means the user bought (or is buying) the product
BOUGHT_STATUSES = (
    "pending_payment", "paid", "partially_shipped", "shipped", "delivered", "completed"
)  # fmt: skip


def category_paths(session: Session) -> dict[int, tuple[str, ...]]:
    """Every category's name path, root first; a cycle (never expected) is cut."""
    rows = session.execute(select(Category.id, Category.parent_id, Category.name)).all()
    parent = {int(r.id): (int(r.parent_id) if r.parent_id is not None else None) for r in rows}
    name = {int(r.id): str(r.name) for r in rows}
    paths: dict[int, tuple[str, ...]] = {}
    for cid in name:
        chain: list[str] = []
        seen: set[int] = set()
        node: int | None = cid
        while node is not None and node in name and node not in seen:
            seen.add(node)
            chain.append(name[node])
            node = parent[node]
        paths[cid] = tuple(reversed(chain))
    return paths


def _docs(
    session: Session, products: Sequence[Product], paths: dict[int, tuple[str, ...]]
) -> list[ProductDoc]:
    brand_ids = {int(p.brand_id) for p in products if p.brand_id is not None}
    brands: dict[int, str] = {}
    if brand_ids:
        rows = session.execute(select(Brand.id, Brand.name).where(Brand.id.in_(brand_ids)))
        brands = {int(r.id): str(r.name) for r in rows}
    return [
        ProductDoc(
            id=int(p.id),
            title=p.title,
            description=p.description or "",
            category_id=int(p.category_id),
            category_path=paths.get(int(p.category_id), ()),
            brand_id=int(p.brand_id) if p.brand_id is not None else None,
            brand_name=brands.get(int(p.brand_id)) if p.brand_id is not None else None,
            price_cents=int(p.min_price_cents),
            published=p.status == "published",
            attributes=dict(p.attributes or {}),
        )
        for p in products
    ]


def load_docs(session: Session, product_ids: Sequence[int]) -> dict[int, ProductDoc]:
    """Documents of the given products that exist (any status), by id."""
    if not product_ids:
        return {}
    products = session.scalars(select(Product).where(Product.id.in_(list(product_ids)))).all()
    docs = _docs(session, products, category_paths(session))
    return {d.id: d for d in docs}


def iter_published_docs(session: Session, batch_size: int) -> Iterator[list[ProductDoc]]:
    """Every published product, in id order, ``batch_size`` at a time."""
    paths = category_paths(session)
    last = 0
    while True:
        products = session.scalars(
            select(Product)
            .where(Product.id > last, Product.status == "published")
            .order_by(Product.id)
            .limit(batch_size)
        ).all()
        if not products:
            return
        yield _docs(session, products, paths)
        last = int(products[-1].id)
        session.expunge_all()


def count_published(session: Session) -> int:
    return int(session.scalar(select(func.count()).where(Product.status == "published")) or 0)


# ---- listing cards ----------------------------------------------------------------------
def cards(session: Session, product_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Listing cards of the given products that exist (any status), by id: the same dicts
    as ``raymall.catalog.repository.product_summaries`` (a test holds them equal), read
    with one column query instead of loading ORM entities and a second stock query, since
    every similar-product answer re-reads its cards."""
    if not product_ids:
        return {}
    stocked = (
        select(Sku.id)
        .join(Inventory, Inventory.sku_id == Sku.id)
        .where(Sku.product_id == Product.id, Inventory.available > 0)
        .exists()
    )
    rows = session.execute(
        select(
            Product.id,
            Product.title,
            Product.brand_id,
            Brand.name.label("brand_name"),
            Product.category_id,
            Product.status,
            Product.min_price_cents,
            Product.max_price_cents,
            Product.images,
            Product.sales_count,
            Product.rating_count,
            Product.rating_x100,
            Product.created_ms,
            stocked.label("in_stock"),
        )
        .outerjoin(Brand, Brand.id == Product.brand_id)
        .where(Product.id.in_(sorted({int(i) for i in product_ids})))
    ).all()
    return {
        int(r.id): {
            "id": int(r.id),
            "title": r.title,
            "brand": (
                {"id": int(r.brand_id), "name": r.brand_name} if r.brand_id is not None else None
            ),
            "category_id": int(r.category_id),
            "status": r.status,
            "min_price_cents": int(r.min_price_cents),
            "max_price_cents": int(r.max_price_cents),
            "image": (r.images or [None])[0],
            "sales_count": int(r.sales_count),
            **public_rating(r.rating_count, r.rating_x100),
            "created_ms": int(r.created_ms),
            "in_stock": bool(r.in_stock),
        }
        for r in rows
    }


# ---- outbox ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    aggregate_id: str
    created_ms: int

    def product_id(self) -> int | None:
        """The product a ``product.*`` event is about (None for other topics)."""
        if not self.topic.startswith(PRODUCT_TOPIC_PREFIX):
            return None
        try:
            return int(self.aggregate_id)
        except ValueError:
            return None


_OUTBOX_COLS = (OutboxEvent.id, OutboxEvent.topic, OutboxEvent.aggregate_id, OutboxEvent.created_ms)


def _rows(result: object) -> list[OutboxRow]:
    return [
        OutboxRow(int(r.id), str(r.topic), str(r.aggregate_id), int(r.created_ms))
        for r in result  # type: ignore[attr-defined]
    ]


def outbox_after(session: Session, after_id: int, limit: int) -> list[OutboxRow]:
    """Outbox rows with ``id > after_id`` in id order (every topic: gaps must be seen)."""
    stmt = select(*_OUTBOX_COLS).where(OutboxEvent.id > after_id).order_by(OutboxEvent.id)
    return _rows(session.execute(stmt.limit(limit)))


def outbox_in_ranges(
    session: Session, ranges: Sequence[tuple[int, int]], limit: int
) -> list[OutboxRow]:
    """Rows whose id falls in one of the inclusive ``ranges`` (late commits into gaps)."""
    if not ranges:
        return []
    cond = or_(*(OutboxEvent.id.between(lo, hi) for lo, hi in ranges))
    stmt = select(*_OUTBOX_COLS).where(cond).order_by(OutboxEvent.id).limit(limit)
    return _rows(session.execute(stmt))


def outbox_settled_cursor(session: Session, before_ms: int, page: int = 1_000) -> int:
    """The highest outbox id whose row was created before ``before_ms``: rows at or below
    it are assumed committed (scans back from the newest row, newest first)."""
    upper: int | None = None
    while True:
        stmt = select(OutboxEvent.id, OutboxEvent.created_ms).order_by(OutboxEvent.id.desc())
        if upper is not None:
            stmt = stmt.where(OutboxEvent.id < upper)
        rows = session.execute(stmt.limit(page)).all()
        if not rows:
            return 0
        for r in rows:
            if int(r.created_ms) < before_ms:
                return int(r.id)
        upper = int(rows[-1].id)


# ---- user history ---------------------------------------------------------------------
def ordered_products(session: Session, user_id: int, limit: int = 100) -> list[tuple[int, int]]:
    """(product_id, ordered_ms) of the user's live orders, newest first."""
    rows = session.execute(
        select(OrderItem.product_id, Order.created_ms)
        .join(Order, Order.id == OrderItem.order_id)
        .where(Order.user_id == user_id, Order.status.in_(BOUGHT_STATUSES))
        .order_by(Order.created_ms.desc())
        .limit(limit)
    ).all()
    return [(int(r.product_id), int(r.created_ms)) for r in rows]


def products_for_skus(session: Session, skus: Sequence[str]) -> dict[str, int]:
    """Map cart fields (SKU ids, or SKU codes) to their product ids."""
    ids = [int(s) for s in skus if s.isdigit()]
    codes = [s for s in skus if not s.isdigit()]
    out: dict[str, int] = {}
    if ids:
        by_id = session.execute(select(Sku.id, Sku.product_id).where(Sku.id.in_(ids))).all()
        out.update({str(int(sid)): int(pid) for sid, pid in by_id})
    if codes:
        by_code = session.execute(select(Sku.code, Sku.product_id).where(Sku.code.in_(codes)))
        out.update({str(code): int(pid) for code, pid in by_code.all()})
    return out


def best_sellers(session: Session, limit: int, exclude: Sequence[int] = ()) -> list[int]:
    """Published products by sales, most sold first; ties go to the better rated (the
    average of their visible reviews), then to the newest id."""
    stmt = select(Product.id).where(Product.status == "published")
    if exclude:
        stmt = stmt.where(Product.id.not_in(list(exclude)))
    stmt = stmt.order_by(
        Product.sales_count.desc(), Product.rating_x100.desc(), Product.id.desc()
    ).limit(limit)
    return [int(i) for i in session.scalars(stmt)]
