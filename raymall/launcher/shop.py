"""Shop data written straight to the tables before the owners run: the demo seed, the
benchmarks and the tests build their users, categories, products, SKUs and initial stock
here, so each row has one shape wherever it is made.

Stock is written here only for SKUs that no inventory shard owns yet (DESIGN invariant 1):
a shard loads it when it first meets the SKU; afterwards only the shard changes it.

    with engine.begin() as conn:
        category = add_category(conn, name="Kettles", slug="kettles-1a2b")
        product_id, (sku_id,) = add_product(
            conn, category, "Test kettle", [SkuSpec("T-1a2b", 1999, stock=50)], shards=4
        )
        user_ids = add_users(conn, 100, tag="f1a2b")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, insert, text

from models import Category, Inventory, Product, Sku, User
from raymall.hashing import shard_for
from raymall.ids import now_ms

UNUSABLE_PASSWORD = "!unusable"  # noqa: S105 - no password verifies against it


class SkuSpec(NamedTuple):
    code: str
    price_cents: int
    stock: int = 0
    specs: dict[str, str] = {}  # shared default: copied by sku_values, never changed
    low_stock_threshold: int = 0


# ---- row shapes -----------------------------------------------------------------------
def user_values(
    username: str, *, role: str = "user", display_name: str = "", now: int
) -> dict[str, Any]:
    """A user who never signs in with a password (``@example.com`` address)."""
    return {
        "email": f"{username}@example.com",
        "username": username,
        "password_hash": UNUSABLE_PASSWORD,
        "role": role,
        "display_name": display_name,
        "phone": "",
        "is_blocked": False,
        "password_changed_ms": 0,
        "created_ms": now,
        "updated_ms": now,
    }


def category_values(
    name: str, slug: str, *, parent_id: int | None = None, sort_order: int = 0, now: int
) -> dict[str, Any]:
    return {
        "name": name,
        "slug": slug,
        "parent_id": parent_id,
        "sort_order": sort_order,
        "created_ms": now,
        "updated_ms": now,
    }


def product_values(
    title: str,
    category_id: int,
    prices: Sequence[int],
    *,
    status: str = "published",
    description: str = "",
    brand_id: int | None = None,
    attributes: dict[str, Any] | None = None,
    sales_count: int = 0,
    search_text: str = "",
    now: int,
) -> dict[str, Any]:
    """A product; ``prices`` are its SKUs' prices (its price range)."""
    return {
        "title": title,
        "description": description,
        "category_id": category_id,
        "brand_id": brand_id,
        "attributes": attributes or {},
        "images": [],
        "status": status,
        "min_price_cents": min(prices),
        "max_price_cents": max(prices),
        "sales_count": sales_count,
        "search_text": search_text,
        "created_ms": now,
        "updated_ms": now,
    }


def sku_values(product_id: int, spec: SkuSpec, *, now: int) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "code": spec.code,
        "specs": dict(spec.specs),
        "price_cents": spec.price_cents,
        "low_stock_threshold": spec.low_stock_threshold,
        "created_ms": now,
        "updated_ms": now,
    }


def stock_values(sku_id: int, units: int, shards: int, *, now: int) -> dict[str, Any]:
    """The SKU's inventory row before any shard owns it: ``units`` on hand, all available,
    routed to ``shard_for(sku_id, shards)``."""
    return {
        "sku_id": sku_id,
        "shard": shard_for(sku_id, shards),
        "total": units,
        "available": units,
        "reserved": 0,
        "sold": 0,
        "version": 0,
        "updated_ms": now,
    }


# ---- writers --------------------------------------------------------------------------
def _insert(conn: Connection, table: Any, values: dict[str, Any]) -> int:
    return int(conn.execute(insert(table).values(**values)).inserted_primary_key[0])  # type: ignore[index]


def add_category(conn: Connection, name: str, slug: str) -> int:
    return _insert(conn, Category, category_values(name, slug, now=now_ms()))


def add_product(
    conn: Connection,
    category_id: int,
    title: str,
    skus: Sequence[SkuSpec],
    *,
    shards: int,
    status: str = "published",
    sales_count: int = 0,
) -> tuple[int, list[int]]:
    """A product with its SKUs and their inventory rows; answer (product id, SKU ids)."""
    now = now_ms()
    values = product_values(
        title,
        category_id,
        [s.price_cents for s in skus],
        status=status,
        sales_count=sales_count,
        now=now,
    )
    product_id = _insert(conn, Product, values)
    sku_ids = []
    for spec in skus:
        sku_id = _insert(conn, Sku, sku_values(product_id, spec, now=now))
        conn.execute(insert(Inventory).values(**stock_values(sku_id, spec.stock, shards, now=now)))
        sku_ids.append(sku_id)
    return product_id, sku_ids


def add_users(
    conn: Connection, count: int, *, tag: str, roles: Sequence[str] = (), display_name: str = ""
) -> list[int]:
    """``count`` users named ``{tag}{i}`` in one multi-row insert; ``roles[i]`` is the
    role of user i (``user`` beyond them). Answer their ids in order."""
    now = now_ms()
    rows = [
        user_values(
            f"{tag}{i}",
            role=roles[i] if i < len(roles) else "user",
            display_name=display_name,
            now=now,
        )
        for i in range(count)
    ]
    conn.execute(insert(User), rows)
    found = conn.execute(
        text("SELECT id, username FROM users WHERE username LIKE :p"), {"p": f"{tag}%"}
    )
    by_name = {str(name): int(uid) for uid, name in found}
    return [by_name[f"{tag}{i}"] for i in range(count)]
