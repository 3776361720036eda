"""Catalog read queries, plain SQLAlchemy 2.0 on a ``Session``; no I/O besides the DB.

Category subtrees and ancestor paths use recursive CTEs, which SQLite and MySQL 8 /
MariaDB 10.2+ both run, so no dialect branch is needed here. The product *document*
(SPU + SKUs, no stock) is what the detail cache stores; live availability is merged per
request by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CTE, ColumnElement, and_, exists, literal, select
from sqlalchemy.orm import Session

from models import Brand, Category, Inventory, Product, Sku
from raymall.reviews.rules import public_rating

MAX_TREE_DEPTH = 64


@dataclass(frozen=True)
class ProductFilters:
    """Filters shared by the listing and keyword search. ``in_stock`` keeps products with
    at least one SKU whose ``inventory.available`` is positive; the price range keeps
    products with at least one SKU priced inside it (bounds inclusive)."""

    category_id: int | None = None
    brand_id: int | None = None
    min_price_cents: int | None = None
    max_price_cents: int | None = None
    in_stock: bool = False
    statuses: tuple[str, ...] = ("published",)


def subtree_cte(category_id: int) -> CTE:
    """Ids of a category and all its descendants."""
    tree = (
        select(Category.id, literal(0).label("depth"))
        .where(Category.id == category_id)
        .cte("subtree", recursive=True)
    )
    child = select(Category.id, (tree.c.depth + 1).label("depth")).where(
        Category.parent_id == tree.c.id, tree.c.depth < MAX_TREE_DEPTH
    )
    return tree.union_all(child)


def subtree_ids(session: Session, category_id: int) -> list[int]:
    tree = subtree_cte(category_id)
    return [int(i) for i in session.scalars(select(tree.c.id))]


def category_path(session: Session, category_id: int) -> list[dict[str, Any]]:
    """Ancestors of a category, root first, the category itself last."""
    up = (
        select(Category.id, Category.parent_id, Category.name, Category.slug, literal(0).label("d"))
        .where(Category.id == category_id)
        .cte("ancestors", recursive=True)
    )
    parent = select(
        Category.id, Category.parent_id, Category.name, Category.slug, (up.c.d + 1).label("d")
    ).where(Category.id == up.c.parent_id, up.c.d < MAX_TREE_DEPTH)
    up = up.union_all(parent)
    rows = session.execute(select(up.c.id, up.c.name, up.c.slug).order_by(up.c.d.desc()))
    return [{"id": int(r.id), "name": r.name, "slug": r.slug} for r in rows]


def filter_clauses(f: ProductFilters) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    if f.statuses:
        clauses.append(Product.status.in_(f.statuses))
    if f.category_id is not None:
        tree = subtree_cte(f.category_id)
        clauses.append(Product.category_id.in_(select(tree.c.id)))
    if f.brand_id is not None:
        clauses.append(Product.brand_id == f.brand_id)
    if f.min_price_cents is not None or f.max_price_cents is not None:
        price = [Sku.product_id == Product.id]
        if f.min_price_cents is not None:
            price.append(Sku.price_cents >= f.min_price_cents)
        if f.max_price_cents is not None:
            price.append(Sku.price_cents <= f.max_price_cents)
        clauses.append(exists().where(and_(*price)))
    if f.in_stock:
        clauses.append(
            exists()
            .where(Sku.product_id == Product.id, Inventory.sku_id == Sku.id)
            .where(Inventory.available > 0)
        )
    return clauses


def load_product_doc(session: Session, product_id: int) -> dict[str, Any] | None:
    """The cacheable product document (any status), or None when the id does not exist."""
    row = session.execute(
        select(Product, Brand.name, Brand.slug)
        .outerjoin(Brand, Brand.id == Product.brand_id)
        .where(Product.id == product_id)
    ).first()
    if row is None:
        return None
    product, brand_name, brand_slug = row
    skus = session.scalars(
        select(Sku).where(Sku.product_id == product_id).order_by(Sku.price_cents, Sku.id)
    ).all()
    path = category_path(session, product.category_id)
    return {
        "id": int(product.id),
        "title": product.title,
        "description": product.description,
        "status": product.status,
        "category": {
            "id": int(product.category_id),
            "name": path[-1]["name"] if path else None,
            "path": path,
        },
        "brand": (
            {"id": int(product.brand_id), "name": brand_name, "slug": brand_slug}
            if product.brand_id is not None
            else None
        ),
        "attributes": product.attributes or {},
        "images": list(product.images or []),
        "min_price_cents": int(product.min_price_cents),
        "max_price_cents": int(product.max_price_cents),
        "sales_count": int(product.sales_count),
        **public_rating(product.rating_count, product.rating_x100),
        "created_ms": int(product.created_ms),
        "updated_ms": int(product.updated_ms),
        "skus": [sku_doc(s) for s in skus],
    }


def sku_doc(sku: Sku) -> dict[str, Any]:
    return {
        "id": int(sku.id),
        "product_id": int(sku.product_id),
        "code": sku.code,
        "specs": dict(sku.specs or {}),
        "price_cents": int(sku.price_cents),
        "low_stock_threshold": int(sku.low_stock_threshold),
    }


def db_availability(session: Session, sku_ids: Sequence[int]) -> dict[int, int]:
    """``inventory.available`` per SKU as last committed by the owning shard (0 if none)."""
    if not sku_ids:
        return {}
    rows = session.execute(
        select(Inventory.sku_id, Inventory.available).where(Inventory.sku_id.in_(sku_ids))
    )
    found = {int(r.sku_id): int(r.available) for r in rows}
    return {int(s): found.get(int(s), 0) for s in sku_ids}


def in_stock_products(session: Session, product_ids: Sequence[int]) -> set[int]:
    if not product_ids:
        return set()
    rows = session.scalars(
        select(Sku.product_id)
        .join(Inventory, Inventory.sku_id == Sku.id)
        .where(Sku.product_id.in_(product_ids), Inventory.available > 0)
        .distinct()
    )
    return {int(p) for p in rows}


# The products among a list that exist and have no SKU in stock. Most listed products are in
# stock, so the reply is a few rows, and the ids are bound by the driver: no statement is
# compiled per call for a long IN list (a 500-id read costs ~2 ms of CPU this way against
# ~8 ms through the ORM query of ``in_stock_products``).
_SOLD_OUT_SQL = (
    "SELECT p.id FROM products p"
    " LEFT JOIN skus s ON s.product_id = p.id"
    " LEFT JOIN inventory i ON i.sku_id = s.id"
    " WHERE p.id IN ({marks})"
    " GROUP BY p.id HAVING COALESCE(MAX(i.available), 0) <= 0"
)


def sold_out_products(session: Session, product_ids: Sequence[int]) -> set[int]:
    """Which of ``product_ids`` exist and have no SKU in stock (the complement, among the
    products that exist, of ``in_stock_products``)."""
    if not product_ids:
        return set()
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = _SOLD_OUT_SQL.format(marks=",".join([mark] * len(product_ids)))
    return {int(r[0]) for r in conn.exec_driver_sql(sql, tuple(int(p) for p in product_ids))}


def product_summaries(session: Session, product_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Listing cards for ``product_ids``, in the given order (missing ids are skipped)."""
    if not product_ids:
        return []
    rows = session.execute(
        select(Product, Brand.name)
        .outerjoin(Brand, Brand.id == Product.brand_id)
        .where(Product.id.in_(product_ids))
    ).all()
    stocked = in_stock_products(session, product_ids)
    by_id = {}
    for product, brand_name in rows:
        by_id[int(product.id)] = {
            "id": int(product.id),
            "title": product.title,
            "brand": (
                {"id": int(product.brand_id), "name": brand_name}
                if product.brand_id is not None
                else None
            ),
            "category_id": int(product.category_id),
            "status": product.status,
            "min_price_cents": int(product.min_price_cents),
            "max_price_cents": int(product.max_price_cents),
            "image": (product.images or [None])[0],
            "sales_count": int(product.sales_count),
            **public_rating(product.rating_count, product.rating_x100),
            "created_ms": int(product.created_ms),
            "in_stock": int(product.id) in stocked,
        }
    return [by_id[int(i)] for i in product_ids if int(i) in by_id]


def category_tree(session: Session) -> list[dict[str, Any]]:
    """Every category as a nested tree, siblings by (sort_order, name)."""
    rows = session.scalars(select(Category).order_by(Category.sort_order, Category.name)).all()
    nodes: dict[int, dict[str, Any]] = {
        int(c.id): {"id": int(c.id), "name": c.name, "slug": c.slug, "children": []} for c in rows
    }
    roots: list[dict[str, Any]] = []
    for c in rows:
        node = nodes[int(c.id)]
        parent = nodes.get(int(c.parent_id)) if c.parent_id is not None else None
        (parent["children"] if parent is not None else roots).append(node)
    return roots


def list_brands(session: Session) -> list[dict[str, Any]]:
    rows = session.scalars(select(Brand).order_by(Brand.name)).all()
    return [
        {"id": int(b.id), "name": b.name, "slug": b.slug, "description": b.description}
        for b in rows
    ]


def iter_product_ids(session: Session, batch: int = 5_000) -> Iterator[list[int]]:
    """Every product id, in batches (the Bloom filter rebuild)."""
    last = 0
    while True:
        ids = [
            int(i)
            for i in session.scalars(
                select(Product.id).where(Product.id > last).order_by(Product.id).limit(batch)
            )
        ]
        if not ids:
            return
        yield ids
        last = ids[-1]


def sku_ids_of(session: Session, product_ids: Sequence[int]) -> dict[int, list[int]]:
    """The SKU ids of each product (ascending), for ``product_ids``."""
    if not product_ids:
        return {}
    out: dict[int, list[int]] = {}
    rows = session.execute(
        select(Sku.product_id, Sku.id).where(Sku.product_id.in_(product_ids)).order_by(Sku.id)
    )
    for pid, sku_id in rows:
        out.setdefault(int(pid), []).append(int(sku_id))
    return out
