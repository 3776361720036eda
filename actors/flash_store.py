"""SQL of the flash-sale desk: load a sale into a shard, and the rows one batch writes.

``statements`` returns statements that ``InventoryStore.write`` runs in the SAME
transaction as the ledger's rows, so a purchase's hold change, its order reservation,
its ``flash_purchases`` row, its order (with item, first event and ``order.placed``
outbox event) and the sale's ``sold`` count commit together or not at all (durable before
ack). Driver-level SQL with the driver's placeholders, like ``actors.inventory_store``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from actors.inventory_store import Statement
from raymall.domain import order_state as st
from raymall.domain.flash_desk import LIVE, RETURNED, FlashChanges, Purchase, SaleInfo
from raymall.domain.pricing import CURRENCY


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def load_sale(engine: Engine, ph: str, sale_id: int) -> tuple[SaleInfo, list[Purchase]] | None:
    """A sale with its SKU's catalog fields and every purchase so far (None if unknown)."""
    sale_sql = (
        "SELECT f.id, f.sku_id, f.price_cents, f.quantity, f.per_user_limit, f.starts_ms, "
        "f.ends_ms, f.status, f.sold, s.product_id, p.title, s.specs, f.payment_timeout_s "
        "FROM flash_sales f "
        "JOIN skus s ON s.id = f.sku_id JOIN products p ON p.id = s.product_id "
        f"WHERE f.id = {ph}"
    )
    purchases_sql = (
        "SELECT fp.order_id, fp.user_id, fp.idempotency_key, fp.quantity, fp.status, "
        "o.expires_ms, fp.created_ms FROM flash_purchases fp JOIN orders o ON o.id = fp.order_id "
        f"WHERE fp.sale_id = {ph}"
    )
    with engine.connect() as conn:
        row = conn.exec_driver_sql(sale_sql, (sale_id,)).first()
        if row is None:
            return None
        rows = conn.exec_driver_sql(purchases_sql, (sale_id,)).all()
    info = SaleInfo(
        sale_id=int(row[0]),
        sku_id=int(row[1]),
        price_cents=int(row[2]),
        quantity=int(row[3]),
        per_user_limit=int(row[4]),
        starts_ms=int(row[5]),
        ends_ms=int(row[6]),
        ended=row[7] == "ended",
        sold=int(row[8]),
        product_id=int(row[9]),
        title=str(row[10]),
        specs=json.loads(row[11]) if isinstance(row[11], str) else dict(row[11] or {}),
        payment_timeout_ms=int(row[12]) * 1000 if row[12] is not None else None,
    )
    purchases = [
        Purchase(
            order_id=int(r[0]),
            user_id=int(r[1]),
            key=str(r[2]),
            qty=int(r[3]),
            expires_ms=int(r[5] or 0),
            created_ms=int(r[6]),
            state=RETURNED if r[4] == RETURNED else LIVE,
        )
        for r in rows
    ]
    return info, purchases


def order_key(sale_id: int, purchase_key: str) -> str:
    """The flash order's ``orders.idempotency_key``. It shares the unique
    ``(user_id, idempotency_key)`` with the keys of ordinary orders, which are a client's
    ``Idempotency-Key`` (printable ASCII, no space), so it holds spaces: no client key can
    equal it and make the batch's commit fail. At most 6 + 19 + 1 + 102 = 128 characters."""
    return f"flash {sale_id} {purchase_key}"


def statements(changes: FlashChanges, ph: str, now_ms: int) -> list[Statement]:
    """Rows for one batch (see the module docstring), parents before children."""
    out: list[Statement] = []

    def values(n: int) -> str:
        return ", ".join([ph] * n)

    if changes.purchases:
        orders, items, events, outbox, purchases = [], [], [], [], []
        for info, p, order_shard in changes.purchases:
            total = info.price_cents * p.qty
            orders.append(
                (
                    p.order_id,
                    p.user_id,
                    order_shard,
                    "flash",
                    st.PENDING_PAYMENT,
                    total,
                    CURRENCY,
                    "{}",
                    f"order:{p.order_id}",
                    order_key(info.sale_id, p.key),
                    info.sale_id,
                    p.expires_ms,
                    p.created_ms,
                    p.created_ms,
                )
            )
            items.append(
                (
                    p.order_id,
                    info.sku_id,
                    info.product_id,
                    info.title[:200],
                    _dumps(info.specs),
                    info.price_cents,
                    p.qty,
                    total,
                )
            )
            events.append(
                (p.order_id, None, st.PENDING_PAYMENT, "placed", f"user:{p.user_id}", p.created_ms)
            )
            payload = {
                "order_id": str(p.order_id),
                "user_id": p.user_id,
                "status": st.PENDING_PAYMENT,
                "total_cents": total,
                "items": [{"sku_id": info.sku_id, "quantity": p.qty}],
                "flash_sale_id": info.sale_id,
            }
            outbox.append(
                (
                    uuid.uuid4().hex,
                    st.topic_for(st.PENDING_PAYMENT),
                    str(p.order_id),
                    _dumps(payload),
                    p.created_ms,
                )
            )
            purchases.append(
                (
                    info.sale_id,
                    p.user_id,
                    p.order_id,
                    p.key,
                    p.qty,
                    LIVE,
                    p.created_ms,
                    p.created_ms,
                )
            )
        out.append(
            (
                "INSERT INTO orders (id, user_id, shard, kind, status, total_cents, currency, "
                "address, reservation_key, idempotency_key, flash_sale_id, expires_ms, "
                f"created_ms, updated_ms) VALUES ({values(14)})",
                orders,
                True,
                None,
            )
        )
        out.append(
            (
                "INSERT INTO order_items (order_id, sku_id, product_id, title, specs, "
                f"unit_price_cents, quantity, line_total_cents) VALUES ({values(8)})",
                items,
                True,
                None,
            )
        )
        out.append(
            (
                "INSERT INTO order_events (order_id, from_status, to_status, reason, actor, "
                f"created_ms) VALUES ({values(6)})",
                events,
                True,
                None,
            )
        )
        out.append(
            (
                "INSERT INTO outbox (event_id, topic, aggregate_id, payload, created_ms) "
                f"VALUES ({values(5)})",
                outbox,
                True,
                None,
            )
        )
        out.append(
            (
                "INSERT INTO flash_purchases (sale_id, user_id, order_id, idempotency_key, "
                f"quantity, status, created_ms, updated_ms) VALUES ({values(8)})",
                purchases,
                True,
                None,
            )
        )
    if changes.returned:
        out.append(
            (
                f"UPDATE flash_purchases SET status = {ph}, updated_ms = {ph} "
                f"WHERE order_id = {ph}",
                [(RETURNED, now_ms, p.order_id) for p in changes.returned],
                True,
                None,
            )
        )
    if changes.sales:
        rows: Sequence[tuple[Any, ...]] = [
            (info.sold, "ended" if info.ended else "scheduled", info.ends_ms, now_ms, sid)
            for sid, info in sorted(changes.sales.items())
        ]
        out.append(
            (
                f"UPDATE flash_sales SET sold = {ph}, status = {ph}, ends_ms = {ph}, "
                f"updated_ms = {ph} WHERE id = {ph}",
                rows,
                True,
                None,
            )
        )
    return out
