"""Order persistence: plain functions over a SQLAlchemy ``Session`` (run them in a thread).

Guarantees:

- ``insert_order`` writes the order, its items (each with its allocated discount), its
  first history event and its ``order.placed`` outbox event, and locks the coupons it uses
  (``raymall.coupons.locks``); the caller's transaction commits them together or not at
  all (``CouponUnavailable`` if a coupon could not be locked). The unique
  ``(user_id, idempotency_key)`` makes a second order under one key fail with
  ``IntegrityError``;
- ``transition`` is a compare-and-set, ``UPDATE orders ... WHERE id = :id AND status =
  :from``: it answers whether this caller won, and only the winner appends the history
  event and the outbox event and moves the order's coupons (used when paid, given back
  when cancelled), in the same transaction (DESIGN invariants 6 and 8);
- reads never cross users: ``get_user_order`` treats another user's order as absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from models import Order, OrderEvent, OrderItem, Product, Sku
from raymall.auth.addresses import FIELDS as ADDRESS_FIELDS
from raymall.auth.addresses import default_address, get_address
from raymall.coupons import locks
from raymall.domain import order_state as st
from raymall.domain.pricing import PricedLine, SkuInfo, sku_info
from raymall.errors import NotFound, ValidationFailed
from raymall.orders import rows


@dataclass(frozen=True)
class NewOrder:
    order_id: int
    user_id: int
    shard: int
    total_cents: int
    currency: str
    address: dict[str, Any]
    reservation_key: str
    idempotency_key: str | None
    request_hash: str | None
    expires_ms: int
    created_ms: int
    lines: tuple[PricedLine, ...]
    kind: str = "normal"
    # promotions and coupons: the discount allocated to each line (sku id -> cents), and
    # the coupons the order locks in its insert's transaction
    line_discounts: tuple[tuple[int, int], ...] = ()
    coupon_ids: tuple[int, ...] = ()
    # the shipping method chosen and its fee (part of total_cents)
    shipping_method_id: int | None = None
    shipping_cents: int = 0

    @property
    def discount_cents(self) -> int:
        return sum(cents for _, cents in self.line_discounts)


@dataclass(frozen=True)
class OrderHead:
    """The columns of an order that a transition reads (``transition``), read without
    loading the order (``raymall.orders.payments.payment_target``)."""

    id: int
    user_id: int
    status: str
    kind: str
    total_cents: int
    reservation_key: str
    flash_sale_id: int | None


# ---- catalog and addresses (read only) -------------------------------------------------
def load_skus(session: Session, sku_ids: Sequence[int]) -> dict[int, SkuInfo]:
    """Catalog rows for pricing; a SKU is on sale when its product is published."""
    if not sku_ids:
        return {}
    rows = session.execute(
        select(Sku.id, Sku.product_id, Sku.price_cents, Sku.specs, Product.title, Product.status)
        .join(Product, Product.id == Sku.product_id)
        .where(Sku.id.in_(list(sku_ids)))
    )
    return {int(r.id): sku_info(r) for r in rows}


def shipping_address(session: Session, user_id: int, address_id: int | None) -> dict[str, Any]:
    """A snapshot of one of the user's addresses (the default when none is named)."""
    if address_id is not None:
        address = get_address(session, user_id, address_id)  # NotFound if not the user's
    else:
        found = default_address(session, user_id)
        if found is None:
            raise ValidationFailed("add a shipping address first, or name one (address_id)")
        address = found
    snapshot: dict[str, Any] = {name: getattr(address, name) for name in ADDRESS_FIELDS}
    snapshot["address_id"] = int(address.id)
    return snapshot


# ---- creation ---------------------------------------------------------------------------
def event_payload(order: NewOrder | Order | OrderHead, status: str, **extra: Any) -> dict[str, Any]:
    oid = order.order_id if isinstance(order, NewOrder) else order.id
    return {"order_id": str(oid), "user_id": int(order.user_id), "status": status, **extra}


def insert_order(session: Session, new: NewOrder, actor: str) -> None:
    """Order + items + first history event + outbox event (the caller's transaction)."""
    insert_orders(session, [new], [actor])


def insert_orders(session: Session, news: Sequence[NewOrder], actors: Sequence[str]) -> None:
    """Many orders with their items, first events and outbox events: one multi-row
    statement per table (the caller's transaction), rows from ``raymall.orders.rows``."""
    orders, items, events, outbox = [], [], [], []
    for new, actor in zip(news, actors, strict=True):
        discounts = dict(new.line_discounts)
        orders.append(
            rows.order_row(
                new.order_id,
                new.user_id,
                new.shard,
                new.kind,
                new.total_cents,
                new.currency,
                rows.dumps(new.address),
                new.reservation_key,
                new.idempotency_key,
                new.request_hash,
                None,
                new.expires_ms,
                new.created_ms,
                new.discount_cents,
                new.shipping_method_id,
                new.shipping_cents,
            )
        )
        for line in new.lines:
            items.append(
                rows.item_row(
                    new.order_id,
                    line.sku_id,
                    line.product_id,
                    line.title,
                    rows.dumps(line.specs),
                    line.unit_price_cents,
                    line.quantity,
                    line.line_total_cents,
                    discounts.get(line.sku_id, 0),
                )
            )
        events.append(rows.placed_event_row(new.order_id, actor, new.created_ms))
        outbox.append(
            rows.placed_outbox_row(
                new.order_id,
                int(new.user_id),
                new.total_cents,
                [{"sku_id": ln.sku_id, "quantity": ln.quantity} for ln in new.lines],
                new.created_ms,
                **(
                    {
                        "discount_cents": new.discount_cents,
                        "coupon_ids": [str(c) for c in new.coupon_ids],
                    }
                    if new.line_discounts or new.coupon_ids
                    else {}
                ),
            )
        )
    _insert(session, rows.ORDERS, rows.ORDER_COLUMNS, orders)
    _insert(session, rows.ORDER_ITEMS, rows.ITEM_COLUMNS, items)
    _insert(session, rows.ORDER_EVENTS, rows.EVENT_COLUMNS, events)
    _insert(session, rows.OUTBOX, rows.OUTBOX_COLUMNS, outbox)
    for new in news:
        if new.coupon_ids:
            locks.lock(session, new.order_id, new.user_id, new.coupon_ids, new.created_ms)


def _insert(session: Session, table: str, columns: Sequence[str], values: list[Any]) -> None:
    """One multi-row INSERT of ``raymall.orders.rows`` rows, in the session's transaction."""
    if values:
        conn = session.connection()
        conn.exec_driver_sql(rows.insert_sql(table, columns, rows.placeholder(conn)), values)


# ---- transitions ------------------------------------------------------------------------
def transition(
    session: Session,
    order: Order | OrderHead,
    to: str,
    *,
    reason: str,
    actor: str,
    now: int,
    items: list[dict[str, int]] | None = None,
    also_set: dict[str, Any] | None = None,
    holds_coupons: bool = True,
) -> bool:
    """Compare-and-set ``order.status -> to``; on success also the history and outbox
    rows. ``False`` means another transition got there first (nothing was written).
    ``also_set``: more columns the move sets (e.g. ``delivered_ms``, ``expires_ms``);
    ``holds_coupons=False``: the caller read that the order holds no coupon (coupons are
    locked only in the order's insert), so none is looked for."""
    frm = order.status
    values: dict[str, Any] = {**(also_set or {}), "status": to, "updated_ms": now}
    if to == st.CANCELLED:
        values["cancel_reason"] = reason[:32]
    session.flush()  # what the session holds goes first, as before an ORM statement
    conn = session.connection()
    ph = rows.placeholder(conn)
    sets = ", ".join(f"{name} = {ph}" for name in values)
    result = conn.exec_driver_sql(
        f"UPDATE orders SET {sets} WHERE id = {ph} AND status = {ph}",
        (*values.values(), int(order.id), frm),
    )
    if result.rowcount != 1:
        return False
    event = rows.event_row(int(order.id), frm, to, reason, actor, now)
    _insert(session, rows.ORDER_EVENTS, rows.EVENT_COLUMNS, [event])
    extra: dict[str, Any] = {"from_status": frm, "reason": reason, "total_cents": order.total_cents}
    if items is not None:
        extra["items"] = items
    payload = event_payload(order, to, **extra)
    _insert(
        session,
        rows.OUTBOX,
        rows.OUTBOX_COLUMNS,
        [rows.outbox_row(st.topic_for(to), order.id, payload, now)],
    )
    if holds_coupons and order.kind != "flash":  # flash orders take no coupons
        locks.follow(session, int(order.id), to, now)
    return True


def status_of(session: Session, order_id: int) -> str | None:
    """The order's status now (None: no such order)."""
    conn = session.connection()
    found = conn.exec_driver_sql(
        f"SELECT status FROM orders WHERE id = {rows.placeholder(conn)}", (order_id,)
    ).first()
    return None if found is None else str(found[0])


def stock_lines(session: Session, order_id: int) -> list[dict[str, int]]:
    """``stock_items`` of the order's items, read without loading them."""
    conn = session.connection()
    found = conn.exec_driver_sql(
        "SELECT sku_id, quantity FROM order_items "
        f"WHERE order_id = {rows.placeholder(conn)} ORDER BY id",
        (order_id,),
    )
    return [{"sku_id": int(sku), "quantity": int(qty)} for sku, qty in found]


# ---- reads ------------------------------------------------------------------------------
def get_order(session: Session, order_id: int) -> Order | None:
    return session.get(Order, order_id, populate_existing=True)


def get_user_order(session: Session, user_id: int, order_id: int) -> Order:
    order = get_order(session, order_id)
    if order is None or int(order.user_id) != user_id:
        raise NotFound(f"order {order_id} not found")
    return order


def visible_order(session: Session, order_id: int, user_id: int | None) -> Order:
    """The order as ``user_id`` sees it (None: an admin, who sees every order); another
    user's order, like a missing one, is NotFound."""
    if user_id is not None:
        return get_user_order(session, user_id, order_id)
    order = get_order(session, order_id)
    if order is None:
        raise NotFound(f"order {order_id} not found")
    return order


def find_by_key(session: Session, user_id: int, key: str) -> Order | None:
    return session.scalar(
        select(Order).where(Order.user_id == user_id, Order.idempotency_key == key)
    )


def find_by_keys(session: Session, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], Order]:
    """Orders stored under any of the (user id, idempotency key) pairs."""
    if not keys:
        return {}
    rows = session.scalars(
        select(Order).where(tuple_(Order.user_id, Order.idempotency_key).in_(sorted(set(keys))))
    )
    return {(int(o.user_id), str(o.idempotency_key)): o for o in rows}


def items_of(session: Session, order_ids: Sequence[int]) -> dict[int, list[OrderItem]]:
    out: dict[int, list[OrderItem]] = {int(i): [] for i in order_ids}
    if not order_ids:
        return out
    rows = session.scalars(
        select(OrderItem).where(OrderItem.order_id.in_(list(order_ids))).order_by(OrderItem.id)
    )
    for item in rows:
        out[int(item.order_id)].append(item)
    return out


def stock_items(items: Sequence[OrderItem]) -> list[dict[str, int]]:
    return [{"sku_id": int(i.sku_id), "quantity": int(i.quantity)} for i in items]


def history(session: Session, order_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)
    )
    return [
        {
            "from_status": e.from_status,
            "to_status": e.to_status,
            "reason": e.reason,
            "actor": e.actor,
            "created_ms": int(e.created_ms),
        }
        for e in rows
    ]


def overdue(
    session: Session, shard: int, now: int, limit: int, status: str = st.PENDING_PAYMENT
) -> list[int]:
    """This shard's orders in ``status`` whose deadline (``expires_ms``) has passed, oldest
    deadline first: unpaid orders past their payment deadline, or delivered orders past
    their automatic completion."""
    rows = session.scalars(
        select(Order.id)
        .where(
            Order.shard == shard,
            Order.status == status,
            Order.expires_ms <= now,
        )
        .order_by(Order.expires_ms)
        .limit(limit)
    )
    return [int(r) for r in rows]


def count_orders(session: Session, **where: Any) -> int:
    stmt = select(func.count()).select_from(Order)
    for name, value in where.items():
        stmt = stmt.where(getattr(Order, name) == value)
    return int(session.scalar(stmt) or 0)


def new_order_view(new: NewOrder) -> dict[str, Any]:
    """``order_view`` of an order just inserted, without reading it back."""
    return {
        "id": str(new.order_id),
        "user_id": new.user_id,
        "status": st.PENDING_PAYMENT,
        "kind": new.kind,
        "total_cents": new.total_cents,
        "discount_cents": new.discount_cents,
        "shipping_method_id": new.shipping_method_id,
        "shipping_cents": new.shipping_cents,
        "delivered_ms": None,
        "coupon_ids": [str(c) for c in new.coupon_ids],
        "currency": new.currency,
        "address": new.address,
        "expires_ms": new.expires_ms,
        "cancel_reason": None,
        "created_ms": new.created_ms,
        "updated_ms": new.created_ms,
        "items": [
            {**line.as_dict(), "discount_cents": dict(new.line_discounts).get(line.sku_id, 0)}
            for line in new.lines
        ],
    }


def order_view(order: Order, items: Sequence[OrderItem] | None = None) -> dict[str, Any]:
    """The public shape of an order. Ids are strings: 64-bit ids do not fit a JSON number
    that every client (JavaScript) reads exactly."""
    view: dict[str, Any] = {
        "id": str(order.id),
        "user_id": int(order.user_id),
        "status": order.status,
        "kind": order.kind,
        "total_cents": int(order.total_cents),
        "discount_cents": int(order.discount_cents or 0),
        "shipping_method_id": (
            int(order.shipping_method_id) if order.shipping_method_id is not None else None
        ),
        "shipping_cents": int(order.shipping_cents or 0),
        "delivered_ms": int(order.delivered_ms) if order.delivered_ms is not None else None,
        "currency": order.currency,
        "address": order.address,
        "expires_ms": int(order.expires_ms) if order.expires_ms is not None else None,
        "cancel_reason": order.cancel_reason,
        "created_ms": int(order.created_ms),
        "updated_ms": int(order.updated_ms),
    }
    if items is not None:
        view["items"] = [
            {
                "id": int(i.id),  # the line's id: returns and reviews name lines by it
                "sku_id": int(i.sku_id),
                "product_id": int(i.product_id),
                "title": i.title,
                "specs": i.specs or {},
                "unit_price_cents": int(i.unit_price_cents),
                "quantity": int(i.quantity),
                "line_total_cents": int(i.line_total_cents),
                "discount_cents": int(i.discount_cents or 0),
                "shipped_quantity": int(i.shipped_quantity or 0),
            }
            for i in items
        ]
    return view
