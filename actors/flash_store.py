"""SQL of the flash-sale desk: load a sale into a shard, and the rows one batch writes.

``statements`` returns statements that ``InventoryStore.write`` runs in the SAME
transaction as the ledger's rows, so a purchase's hold change, its order reservation,
its ``flash_purchases`` row, its order (with item, first event and ``order.placed``
outbox event) and the sale's ``sold`` count commit together or not at all (durable before
ack). Driver-level SQL with the driver's placeholders, like ``actors.inventory_store``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from actors.inventory_store import Statement
from raymall.domain.flash_desk import LIVE, RETURNED, FlashChanges, Purchase
from raymall.domain.pricing import CURRENCY
from raymall.domain.sale import Sale
from raymall.orders import rows


def load_sale(engine: Engine, ph: str, sale_id: int) -> tuple[Sale, list[Purchase]] | None:
    """A sale with its SKU's catalog fields and every purchase so far (None if unknown)."""
    sale_sql = (
        "SELECT f.id, f.sku_id, f.price_cents, f.quantity, f.per_user_limit, f.starts_ms, "
        "f.ends_ms, f.status, f.sold, s.product_id, p.title, s.specs, f.payment_timeout_s, "
        "f.title "
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
    info = Sale(
        id=int(row[0]),
        sku_id=int(row[1]),
        price_cents=int(row[2]),
        quantity=int(row[3]),
        per_user_limit=int(row[4]),
        starts_ms=int(row[5]),
        ends_ms=int(row[6]),
        ended=row[7] == "ended",
        sold=int(row[8]),
        product_id=int(row[9]),
        product_title=str(row[10]),
        specs=json.loads(row[11]) if isinstance(row[11], str) else dict(row[11] or {}),
        payment_timeout_ms=int(row[12]) * 1000 if row[12] is not None else None,
        title=str(row[13]),
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
            oid = p.order_id
            created = p.created_ms
            orders.append(
                rows.order_row(
                    oid,
                    p.user_id,
                    order_shard,
                    "flash",
                    total,
                    CURRENCY,
                    "{}",
                    f"order:{oid}",
                    order_key(info.id, p.key),
                    None,
                    info.id,
                    p.expires_ms,
                    created,
                )
            )
            items.append(
                rows.item_row(
                    oid,
                    info.sku_id,
                    info.product_id,
                    info.product_title,
                    rows.dumps(info.specs),
                    info.price_cents,
                    p.qty,
                    total,
                )
            )
            events.append(rows.placed_event_row(oid, f"user:{p.user_id}", created))
            outbox.append(
                rows.placed_outbox_row(
                    oid,
                    p.user_id,
                    total,
                    [{"sku_id": info.sku_id, "quantity": p.qty}],
                    created,
                    flash_sale_id=info.id,
                )
            )
            purchases.append((info.id, p.user_id, oid, p.key, p.qty, LIVE, created, created))
        for table, columns, batch in (
            (rows.ORDERS, rows.ORDER_COLUMNS, orders),
            (rows.ORDER_ITEMS, rows.ITEM_COLUMNS, items),
            (rows.ORDER_EVENTS, rows.EVENT_COLUMNS, events),
            (rows.OUTBOX, rows.OUTBOX_COLUMNS, outbox),
        ):
            out.append((rows.insert_sql(table, columns, ph), batch, True, None))
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
        changed: Sequence[tuple[Any, ...]] = [
            (info.sold, "ended" if info.ended else "scheduled", info.ends_ms, now_ms, sid)
            for sid, info in sorted(changes.sales.items())
        ]
        out.append(
            (
                f"UPDATE flash_sales SET sold = {ph}, status = {ph}, ends_ms = {ph}, "
                f"updated_ms = {ph} WHERE id = {ph}",
                changed,
                True,
                None,
            )
        )
    return out
