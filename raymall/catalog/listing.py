"""The public product listing: filters, four sorts, page/size and keyset cursors.

Guarantees: ``total`` counts every product matching the filters (not just the page);
pages and cursors walk the same order, which is total (ties broken by id), so no product
is skipped or repeated while the catalog is unchanged. A cursor names its sort and is
refused (422) with another sort or when it cannot be decoded.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from models import Product
from raymall.catalog.repository import ProductFilters, filter_clauses, product_summaries
from raymall.errors import ValidationFailed

Sort = Literal["newest", "sales", "price_asc", "price_desc"]
SORTS: dict[str, tuple[InstrumentedAttribute[int], bool]] = {
    # sort -> (key column, descending); "price" is the product's from-price (cheapest SKU)
    "newest": (Product.created_ms, True),
    "sales": (Product.sales_count, True),
    "price_asc": (Product.min_price_cents, False),
    "price_desc": (Product.min_price_cents, True),
}
MAX_PAGE_SIZE = 100
MAX_PAGE = 10_000


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    page: int | None
    size: int
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "total": self.total,
            "page": self.page,
            "size": self.size,
            "next_cursor": self.next_cursor,
        }


def encode_cursor(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor is not valid", details={"field": "cursor"}) from exc
    if not isinstance(data, dict):
        raise ValidationFailed("cursor is not valid", details={"field": "cursor"})
    return data


def _after(sort: str, cursor: dict[str, Any]) -> ColumnElement[bool]:
    key, desc = SORTS[sort]
    value, last_id = cursor.get("v"), cursor.get("i")
    if cursor.get("s") != sort or not _is_int(value) or not _is_int(last_id):
        raise ValidationFailed("cursor does not belong to this sort", details={"field": "cursor"})
    if desc:
        return or_(key < value, and_(key == value, Product.id < last_id))
    return or_(key > value, and_(key == value, Product.id > last_id))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def list_products(
    session: Session,
    filters: ProductFilters,
    *,
    sort: str = "newest",
    page: int = 1,
    size: int = 20,
    cursor: str | None = None,
) -> Page:
    """One page of product summaries; with ``cursor`` the page number is ignored."""
    if sort not in SORTS:
        raise ValidationFailed(f"unknown sort '{sort}'", details={"field": "sort"})
    if not 1 <= size <= MAX_PAGE_SIZE or not 1 <= page <= MAX_PAGE:
        raise ValidationFailed("page or size out of range", details={"field": "size"})
    clauses = filter_clauses(filters)
    total = int(session.scalar(select(func.count()).select_from(Product).where(*clauses)) or 0)
    key, desc = SORTS[sort]
    order = (key.desc(), Product.id.desc()) if desc else (key.asc(), Product.id.asc())
    stmt = select(Product.id, key).where(*clauses).order_by(*order).limit(size + 1)
    if cursor is not None:
        stmt = stmt.where(_after(sort, decode_cursor(cursor)))
    else:
        stmt = stmt.offset((page - 1) * size)
    rows = session.execute(stmt).all()
    more = len(rows) > size
    rows = rows[:size]
    next_cursor = None
    if more and rows:
        next_cursor = encode_cursor({"s": sort, "v": int(rows[-1][1]), "i": int(rows[-1][0])})
    items = product_summaries(session, [int(r[0]) for r in rows])
    return Page(
        items=items,
        total=total,
        page=None if cursor is not None else page,
        size=size,
        next_cursor=next_cursor,
    )
