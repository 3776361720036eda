"""Flash-sale rows as the replicas read and write them (plain functions over a Session).

The shard owns ``sold`` and the end of a sale (``actors.flash_store``); replicas insert a
new sale (then place its hold through the shard), end a sale whose hold could not be
placed (never delete it: its id names its hold's key, which the shard has tombstoned, and
a deleted row's id could be handed out again), and read. A sale is
``raymall.domain.sale.Sale``, the model the shard's desk uses too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import FlashPurchase, FlashSale, Inventory, Order, Product, Sku
from raymall.db import transaction
from raymall.domain.sale import Sale
from raymall.errors import NotFound, ValidationFailed

T = TypeVar("T")


async def in_tx(sessions: sessionmaker[Session], fn: Callable[[Session], T]) -> T:
    """``fn`` in one transaction, in a worker thread (never on the event loop)."""

    def run() -> T:
        with transaction(sessions) as session:
            return fn(session)

    return await asyncio.to_thread(run)


def _sale(row: FlashSale) -> Sale:
    timeout_s = row.payment_timeout_s
    return Sale(
        id=int(row.id),
        sku_id=int(row.sku_id),
        title=row.title,
        price_cents=int(row.price_cents),
        quantity=int(row.quantity),
        per_user_limit=int(row.per_user_limit),
        starts_ms=int(row.starts_ms),
        ends_ms=int(row.ends_ms),
        ended=row.status == "ended",
        sold=int(row.sold),
        payment_timeout_ms=None if timeout_s is None else int(timeout_s) * 1000,
        require_token=bool(row.require_token),
    )


def get_sale(session: Session, sale_id: int) -> Sale:
    row = session.get(FlashSale, sale_id, populate_existing=True)
    if row is None:
        raise NotFound(f"flash sale {sale_id} not found")
    return _sale(row)


def running_or_upcoming(session: Session, now_ms: int, limit: int = 1000) -> list[Sale]:
    rows = session.scalars(
        select(FlashSale)
        .where(FlashSale.ends_ms > now_ms, FlashSale.status != "ended")
        .order_by(FlashSale.starts_ms)
        .limit(limit)
    )
    return [_sale(r) for r in rows]


def list_sales(session: Session, *, limit: int, before_id: int | None) -> list[Sale]:
    stmt = select(FlashSale).order_by(FlashSale.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(FlashSale.id < before_id)
    return [_sale(r) for r in session.scalars(stmt)]


def insert_sale(
    session: Session,
    *,
    sku_id: int,
    title: str,
    price_cents: int,
    quantity: int,
    per_user_limit: int,
    starts_ms: int,
    ends_ms: int,
    now_ms: int,
    payment_timeout_s: int | None = None,
    require_token: bool = False,
) -> Sale:
    """A new sale row (its hold is placed next, through the SKU's shard)."""
    found = session.execute(
        select(Product.title, Product.status)
        .select_from(Sku)
        .join(Product, Product.id == Sku.product_id)
        .join(Inventory, Inventory.sku_id == Sku.id)
        .where(Sku.id == sku_id)
    ).first()
    if found is None:
        raise NotFound(f"SKU {sku_id} not found (or it has no inventory)")
    if found.status != "published":
        raise ValidationFailed("the SKU's product is not published")
    values = {
        "sku_id": sku_id,
        "title": (title or found.title)[:200],
        "price_cents": price_cents,
        "quantity": quantity,
        "per_user_limit": per_user_limit,
        "starts_ms": starts_ms,
        "ends_ms": ends_ms,
        "status": "scheduled",
        "sold": 0,
        "payment_timeout_s": payment_timeout_s,
        "require_token": require_token,
        "created_ms": now_ms,
        "updated_ms": now_ms,
    }
    result = session.execute(insert(FlashSale).values(**values))
    sale_id = result.inserted_primary_key[0]  # type: ignore[attr-defined]
    return get_sale(session, int(sale_id))


def void_sale(session: Session, sale_id: int, now_ms: int) -> None:
    """End a sale whose hold could not be placed (it never sold anything). The row stays,
    so its id, which names the hold's key, is never given to another sale."""
    session.execute(
        update(FlashSale)
        .where(FlashSale.id == sale_id, FlashSale.sold == 0)
        .values(status="ended", updated_ms=now_ms)
    )


def _replay(order_id: Any, quantity: Any, expires_ms: Any) -> dict[str, Any]:
    """What a replay of a purchase answers (as the shard does: the first result)."""
    return {
        "order_id": int(order_id),
        "quantity": int(quantity),
        "expires_ms": int(expires_ms) if expires_ms is not None else None,
    }


def _purchase_rows(sale_id: int) -> Any:
    return (
        select(
            FlashPurchase.user_id,
            FlashPurchase.idempotency_key,
            FlashPurchase.order_id,
            FlashPurchase.quantity,
            Order.expires_ms,
        )
        .join(Order, Order.id == FlashPurchase.order_id)
        .where(FlashPurchase.sale_id == sale_id)
    )


def purchases_by_keys(
    session: Session, keys: Sequence[tuple[int, int, str]]
) -> list[dict[str, Any] | None]:
    """The purchase stored under each (sale, user, key), or None; one query per sale."""
    found: dict[tuple[int, int, str], dict[str, Any]] = {}
    by_sale: dict[int, set[int]] = {}
    for sale_id, user_id, _ in keys:
        by_sale.setdefault(sale_id, set()).add(user_id)
    for sale_id, users in by_sale.items():
        rows = session.execute(
            _purchase_rows(sale_id).where(FlashPurchase.user_id.in_(sorted(users)))
        )
        for r in rows:
            found[(sale_id, int(r[0]), str(r[1]))] = _replay(r[2], r[3], r[4])
    return [found.get(k) for k in keys]


def client_keyed_purchases(
    session: Session, sale_id: int, prefix: str
) -> dict[tuple[int, str], dict[str, Any]]:
    """Every purchase of a sale whose key starts with ``prefix`` (the clients' own keys),
    by (user, key), with what a replay of it answers."""
    rows = session.execute(
        _purchase_rows(sale_id).where(FlashPurchase.idempotency_key.startswith(prefix))
    )
    return {(int(r[0]), str(r[1])): _replay(r[2], r[3], r[4]) for r in rows}


def my_purchases(session: Session, sale_id: int, user_id: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(
            FlashPurchase.order_id,
            FlashPurchase.quantity,
            FlashPurchase.status,
            FlashPurchase.created_ms,
            Order.status,
            Order.total_cents,
            Order.expires_ms,
        )
        .join(Order, Order.id == FlashPurchase.order_id)
        .where(FlashPurchase.sale_id == sale_id, FlashPurchase.user_id == user_id)
        .order_by(FlashPurchase.id)
    )
    return [
        {
            "order_id": str(r[0]),
            "quantity": int(r[1]),
            "purchase_status": r[2],
            "created_ms": int(r[3]),
            "order_status": r[4],
            "total_cents": int(r[5]),
            "expires_ms": int(r[6]) if r[6] is not None else None,
        }
        for r in rows
    ]
