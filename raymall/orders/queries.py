"""Order listings for users and admins: keyset pagination on the order id.

Order ids are snowflakes, so descending id is newest first. A page answers its items and
``next_cursor`` (the last id, as a string) while more may follow; a cursor is only ever a
bound on the id, so a list stays correct while orders are being created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Order
from raymall.orders.repository import items_of, order_view


@dataclass(frozen=True)
class OrderFilters:
    user_id: int | None = None
    status: str | None = None
    from_ms: int | None = None  # created at or after
    to_ms: int | None = None  # created before
    kind: str | None = None


def list_orders(
    session: Session,
    filters: OrderFilters,
    *,
    limit: int,
    before_id: int | None = None,
    with_items: bool = False,
) -> dict[str, Any]:
    stmt = select(Order)
    if filters.user_id is not None:
        stmt = stmt.where(Order.user_id == filters.user_id)
    if filters.status is not None:
        stmt = stmt.where(Order.status == filters.status)
    if filters.kind is not None:
        stmt = stmt.where(Order.kind == filters.kind)
    if filters.from_ms is not None:
        stmt = stmt.where(Order.created_ms >= filters.from_ms)
    if filters.to_ms is not None:
        stmt = stmt.where(Order.created_ms < filters.to_ms)
    if before_id is not None:
        stmt = stmt.where(Order.id < before_id)
    rows = list(session.scalars(stmt.order_by(Order.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    items = items_of(session, [int(o.id) for o in rows]) if with_items else {}
    return {
        "items": [order_view(o, items.get(int(o.id)) if with_items else None) for o in rows],
        "next_cursor": str(rows[-1].id) if more and rows else None,
    }
