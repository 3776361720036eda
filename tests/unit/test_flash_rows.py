"""One source per row shape: a flash purchase's order, item, history event and outbox
event are stored exactly as ``insert_orders`` stores an ordinary order with the same
values (the shard's flash statements and the order workflow share the row builders of
``raymall.orders.rows``), apart from what makes a flash order one."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import create_engine, text

from actors import flash_store
from raymall.db import session_factory, transaction
from raymall.domain.flash_desk import FlashChanges, Purchase
from raymall.domain.pricing import CURRENCY, PricedLine
from raymall.domain.sale import Sale
from raymall.orders.repository import NewOrder, insert_orders

TABLES = {
    "orders": "SELECT * FROM orders WHERE id = :id",
    "order_items": "SELECT order_id, sku_id, product_id, title, specs, unit_price_cents, "
    "quantity, line_total_cents FROM order_items WHERE order_id = :id",
    "order_events": "SELECT order_id, from_status, to_status, reason, actor, created_ms "
    "FROM order_events WHERE order_id = :id",
    "outbox": "SELECT topic, aggregate_id, payload, created_ms, published_ms FROM outbox "
    "WHERE aggregate_id = :id",
}


def stored(engine: Any, order_id: int) -> dict[str, list[dict[str, Any]]]:
    with engine.connect() as conn:
        return {
            table: [dict(r._mapping) for r in conn.execute(text(sql), {"id": order_id})]
            for table, sql in TABLES.items()
        }


def test_a_flash_order_is_stored_as_insert_orders_stores_the_same_order(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
        user = conn.exec_driver_sql(
            "INSERT INTO users (email, username, password_hash, role, display_name, phone, "
            "is_blocked, password_changed_ms, created_ms, updated_ms) "
            "VALUES ('r@x.io', 'rows', '!', 'user', '', '', 0, 0, 1, 1)"
        ).lastrowid
    title, specs = "T" * 230, {"size": "L", "colour": "grün"}
    sale = Sale(7, 55, 990, 10, 2, 0, 10**13, False, 0, 66, title, specs, None, "sale")
    purchase = Purchase(1_001, user, "k:x", 2, 9_000, 4_000)
    changes = FlashChanges(purchases=[(sale, purchase, 3)], sales={7: sale})
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA foreign_keys = OFF")
        for sql, params, many, _ in flash_store.statements(changes, "?", 4_000):
            (cur.executemany if many else cur.execute)(sql, params)
        raw.commit()
    finally:
        raw.close()

    line = PricedLine(55, 66, title, specs, 990, 2)
    new = NewOrder(
        order_id=1_002,
        user_id=user,
        shard=3,
        total_cents=1_980,
        currency=CURRENCY,
        address={},
        reservation_key="order:1002",
        idempotency_key=flash_store.order_key(7, "k:y"),
        request_hash=None,
        expires_ms=9_000,
        created_ms=4_000,
        lines=(line,),
        kind="flash",
    )
    with transaction(session_factory(engine)) as session:
        insert_orders(session, [new], [f"user:{user}"])

    flash, plain = stored(engine, 1_001), stored(engine, 1_002)
    assert flash["orders"][0]["flash_sale_id"] == 7 and plain["orders"][0]["flash_sale_id"] is None
    payload = json.loads(flash["outbox"][0]["payload"])
    assert payload.pop("flash_sale_id") == 7
    flash["outbox"][0]["payload"] = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    for rows, order_id, key in ((flash, 1_001, "k:x"), (plain, 1_002, "k:y")):
        order = rows["orders"][0]
        assert order.pop("id") == order_id and order.pop("reservation_key") == f"order:{order_id}"
        assert order.pop("idempotency_key") == flash_store.order_key(7, key)
        order.pop("flash_sale_id")
        for table in ("order_items", "order_events"):
            assert rows[table][0].pop("order_id") == order_id
        assert rows["outbox"][0].pop("aggregate_id") == str(order_id)
        body = json.loads(rows["outbox"][0]["payload"])
        assert body.pop("order_id") == str(order_id)
        rows["outbox"][0]["payload"] = body
    assert flash == plain
    assert flash["order_items"][0]["title"] == title[:200]
    assert flash["order_items"][0]["specs"] == '{"colour":"gr\\u00fcn","size":"L"}'  # as Json
    engine.dispose()
