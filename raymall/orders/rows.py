"""The rows of a placed order, built in one place: the order, its items, its first history
event and its ``order.placed`` outbox event (and the history and outbox rows of its later
transitions).

Two writers use them: ``raymall.orders.repository.insert_orders`` (ordinary orders, in the
order workflow's transaction) and ``actors.flash_store.statements`` (flash orders, in the
inventory shard's group commit). Rows are plain tuples in the order of the ``*_COLUMNS``
below, with JSON columns already encoded as ``models.base.Json`` encodes them, so that both
writers run the same driver-level INSERT (``insert_sql``) with no ORM objects on the
shard's commit path, and store the same bytes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from functools import cache
from typing import Any

from raymall import tracing
from raymall.domain import order_state as st

ORDERS = "orders"
ORDER_COLUMNS = (
    "id",
    "user_id",
    "shard",
    "kind",
    "status",
    "total_cents",
    "currency",
    "address",
    "reservation_key",
    "idempotency_key",
    "request_hash",
    "flash_sale_id",
    "expires_ms",
    "created_ms",
    "updated_ms",
    "discount_cents",
    "shipping_method_id",
    "shipping_cents",
)
ORDER_ITEMS = "order_items"
ITEM_COLUMNS = (
    "order_id",
    "sku_id",
    "product_id",
    "title",
    "specs",
    "unit_price_cents",
    "quantity",
    "line_total_cents",
    "discount_cents",
)
ORDER_EVENTS = "order_events"
EVENT_COLUMNS = ("order_id", "from_status", "to_status", "reason", "actor", "created_ms")
OUTBOX = "outbox"
OUTBOX_COLUMNS = ("event_id", "topic", "aggregate_id", "payload", "created_ms")

PLACED_TOPIC = st.topic_for(st.PENDING_PAYMENT)


def dumps(value: Any) -> str:
    """A JSON column's text (as ``models.base.Json`` writes it)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def placeholder(conn: Any) -> str:
    """The driver's parameter mark for ``exec_driver_sql`` on ``conn`` (a Connection)."""
    return "%s" if conn.dialect.paramstyle in ("format", "pyformat") else "?"


@cache
def insert_sql(table: str, columns: Sequence[str], ph: str) -> str:
    """``INSERT INTO table (columns) VALUES (ph, ...)`` with the driver's placeholder."""
    marks = ", ".join([ph] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def order_row(
    order_id: int,
    user_id: int,
    shard: int,
    kind: str,
    total_cents: int,
    currency: str,
    address_json: str,
    reservation_key: str,
    idempotency_key: str | None,
    request_hash: str | None,
    flash_sale_id: int | None,
    expires_ms: int | None,
    created_ms: int,
    discount_cents: int = 0,
    shipping_method_id: int | None = None,
    shipping_cents: int = 0,
) -> tuple[Any, ...]:
    """A new order, pending payment (``address_json``: ``dumps`` of its address;
    ``total_cents``: what is to be paid, its lines less ``discount_cents`` plus
    ``shipping_cents``, the fee of ``shipping_method_id``)."""
    return (
        order_id,
        user_id,
        shard,
        kind,
        st.PENDING_PAYMENT,
        total_cents,
        currency,
        address_json,
        reservation_key,
        idempotency_key,
        request_hash,
        flash_sale_id,
        expires_ms,
        created_ms,
        created_ms,
        discount_cents,
        shipping_method_id,
        shipping_cents,
    )


def item_row(
    order_id: int,
    sku_id: int,
    product_id: int,
    title: str,
    specs_json: str,
    unit_price_cents: int,
    quantity: int,
    line_total_cents: int,
    discount_cents: int = 0,
) -> tuple[Any, ...]:
    """One line of an order (``specs_json``: ``dumps`` of the SKU's specs;
    ``discount_cents``: the share of the order's discounts allocated to it)."""
    return (
        order_id,
        sku_id,
        product_id,
        title[:200],
        specs_json,
        unit_price_cents,
        quantity,
        line_total_cents,
        discount_cents,
    )


def event_row(
    order_id: int, from_status: str | None, to_status: str, reason: str, actor: str, now: int
) -> tuple[Any, ...]:
    """One history event of an order."""
    return (order_id, from_status, to_status, reason[:64], actor[:64], now)


def placed_event_row(order_id: int, actor: str, created_ms: int) -> tuple[Any, ...]:
    """The order's first history event."""
    return (order_id, None, st.PENDING_PAYMENT, "placed", actor[:64], created_ms)


def outbox_row(topic: str, aggregate_id: int | str, payload: Any, now: int) -> tuple[Any, ...]:
    """One event for the outbox relay to publish (with the trace that wrote it, if any:
    ``raymall.tracing.with_trace``)."""
    payload = tracing.with_trace(payload) if tracing.enabled else payload
    return (uuid.uuid4().hex, topic, str(aggregate_id), dumps(payload), now)


def placed_outbox_row(
    order_id: int,
    user_id: int,
    total_cents: int,
    items: list[dict[str, int]],
    created_ms: int,
    **extra: Any,
) -> tuple[Any, ...]:
    """The ``order.placed`` event (``items``: ``{"sku_id", "quantity"}`` per line;
    ``extra``: more payload fields, e.g. ``flash_sale_id``)."""
    payload = {
        "order_id": str(order_id),
        "user_id": user_id,
        "status": st.PENDING_PAYMENT,
        "total_cents": total_cents,
        "items": items,
        **extra,
    }
    if tracing.enabled:
        payload = tracing.with_trace(payload)
    return (uuid.uuid4().hex, PLACED_TOPIC, str(order_id), dumps(payload), created_ms)
