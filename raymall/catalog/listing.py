"""The public product listing: filters, five sorts, page/size and keyset cursors.

Guarantees: ``total`` counts every product matching the filters (not just the page);
pages and cursors walk the same order, which is total (ties broken by id), so no product
is skipped or repeated while the catalog is unchanged. A cursor names its sort and is
refused (422) with another sort, when it cannot be decoded, or when its values do not fit
the 64-bit columns they are compared with. ``sign_cursor``/``verified_cursor`` add an HMAC
for cursors whose contents the server must be able to trust (search offsets).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from models import Product
from raymall import jsonin
from raymall.catalog.repository import (
    FilterShape,
    ProductFilters,
    filter_params,
    product_summaries,
    shaped_clauses,
)
from raymall.errors import ValidationFailed

Sort = Literal["newest", "sales", "price_asc", "price_desc", "rating"]
SORTS: dict[str, tuple[InstrumentedAttribute[int], bool]] = {
    # sort -> (key column, descending); "price" is the product's from-price (cheapest SKU)
    "newest": (Product.created_ms, True),
    "sales": (Product.sales_count, True),
    "price_asc": (Product.min_price_cents, False),
    "price_desc": (Product.min_price_cents, True),
    # the average of the visible reviews (x100); unrated products last
    "rating": (Product.rating_x100, True),
}
MAX_PAGE_SIZE = 100
MAX_PAGE = 10_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CURSOR_MAC_BYTES = 16


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
        data = jsonin.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("cursor is not valid", details={"field": "cursor"}) from exc
    if not isinstance(data, dict):
        raise ValidationFailed("cursor is not valid", details={"field": "cursor"})
    return data


def _mac(key: bytes, body: str) -> str:
    digest = hmac.new(key, body.encode(), hashlib.sha256).digest()[:CURSOR_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign_cursor(data: dict[str, Any], key: bytes) -> str:
    """An opaque cursor whose contents only a holder of ``key`` can have written."""
    body = encode_cursor(data)
    return f"{body}.{_mac(key, body)}"


def verified_cursor(cursor: str, key: bytes) -> dict[str, Any]:
    """The contents of a ``sign_cursor`` cursor; 422 if it was not signed with ``key``."""
    body, _, mac = cursor.partition(".")
    if not mac or not hmac.compare_digest(mac.encode(), _mac(key, body).encode()):
        raise ValidationFailed("cursor is not valid", details={"field": "cursor"})
    return decode_cursor(body)


def _after(sort: str, cursor: dict[str, Any]) -> tuple[int, int]:
    """The (sort key, id) a cursor continues after; 422 if it is not this sort's."""
    value, last_id = cursor.get("v"), cursor.get("i")
    if cursor.get("s") != sort or not _is_int(value) or not _is_int(last_id):
        raise ValidationFailed("cursor does not belong to this sort", details={"field": "cursor"})
    return int(value), int(last_id)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=512)
def _statements(shape: FilterShape, sort: str, keyset: bool) -> tuple[Select[Any], Select[Any]]:
    """The count and the page statements for a shape of filters and a sort, built once
    with bound parameters (``filter_params``; ``limit``, and ``offset`` or the keyset's
    ``after_v`` and ``after_i``)."""
    clauses = shaped_clauses(shape)
    count = select(func.count()).select_from(Product).where(*clauses)
    key, desc = SORTS[sort]
    order = (key.desc(), Product.id.desc()) if desc else (key.asc(), Product.id.asc())
    stmt = select(Product.id, key).where(*clauses).order_by(*order).limit(bindparam("limit"))
    if keyset:
        value: Any = bindparam("after_v")
        last_id: Any = bindparam("after_i")
        if desc:
            after = or_(key < value, and_(key == value, Product.id < last_id))
        else:
            after = or_(key > value, and_(key == value, Product.id > last_id))
        stmt = stmt.where(after)
    else:
        stmt = stmt.offset(bindparam("offset"))
    return count, stmt


def _is_int(v: Any) -> bool:
    """A JSON integer that fits a 64-bit column (a larger one cannot be bound: 500)."""
    return isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX


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
    params = filter_params(filters)
    count, stmt = _statements(FilterShape.of(filters), sort, cursor is not None)
    total = int(session.scalar(count, params) or 0)
    params["limit"] = size + 1
    if cursor is not None:
        params["after_v"], params["after_i"] = _after(sort, decode_cursor(cursor))
    else:
        params["offset"] = (page - 1) * size
    rows = session.execute(stmt, params).all()
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
