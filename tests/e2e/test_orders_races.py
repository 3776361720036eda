"""Races and faults over HTTP: one Idempotency-Key sent 20 times at once, 200 buyers for
the last 50 units, unpaid orders timing out (also across an OrderShard kill), and payment
against timeout 100 times. Stock is checked in the database to the unit."""

from __future__ import annotations

import random
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import ray

from actors.order_client import shard_name
from raymall.hashing import shard_for
from tests.auth_helpers import TestUser
from tests.order_helpers import Shop, restock, wait_for

pytestmark = pytest.mark.e2e


def stocked_sku(shop: Shop, client: httpx.Client, admin: TestUser, units: int, price: int) -> int:
    sku = shop.sku(price_cents=price)
    restock(client, admin.headers, sku, units)
    return sku


def conserved(shop: Shop, sku: int) -> dict[str, int]:
    """The inventory row and the reservation ledger, read in one snapshot, agree."""
    with shop.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        from sqlalchemy import text

        with conn.begin():
            row = conn.execute(
                text("SELECT total, available, reserved, sold FROM inventory WHERE sku_id = :s"),
                {"s": sku},
            ).one()
            ops = conn.execute(
                text(
                    "SELECT state, items FROM inventory_ops "
                    "WHERE kind = 'reserve' AND state IN ('reserved', 'confirmed') "
                    "AND items LIKE :pat"
                ),
                {"pat": f'%"{sku}":%'},
            ).all()
    import json

    open_units = sum(json.loads(i).get(str(sku), 0) for s, i in ops if s == "reserved")
    sold_units = sum(json.loads(i).get(str(sku), 0) for s, i in ops if s == "confirmed")
    total, available, reserved, sold = row
    assert min(total, available, reserved, sold) >= 0, row
    assert total == available + reserved + sold, row
    assert reserved == open_units and sold == sold_units, (row, open_units, sold_units)
    return {"total": total, "available": available, "reserved": reserved, "sold": sold}


def test_one_idempotency_key_sent_20_times_at_once_makes_one_order(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked_sku(shop, client, admin, units=10, price=333)
    uid, headers = shop.customer()
    key = f"k-{secrets.token_hex(8)}"
    body = {"items": [{"sku_id": sku, "quantity": 2}]}

    def post(_: int) -> httpx.Response:
        return client.post("/orders", json=body, headers={**headers, "Idempotency-Key": key})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in responses) == 1
    assert shop.scalar("SELECT COUNT(*) FROM orders WHERE user_id = :u", u=uid) == 1
    assert conserved(shop, sku)["reserved"] == 2
    reused = client.post(
        "/orders",
        json={"items": [{"sku_id": sku, "quantity": 3}]},
        headers={**headers, "Idempotency-Key": key},
    )
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert conserved(shop, sku)["reserved"] == 2


def test_200_buyers_for_the_last_50_units_exactly_50_win(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked_sku(shop, client, admin, units=50, price=1999)
    buyers = [shop.customer()[1] for _ in range(200)]

    def buy(headers: dict[str, str]) -> httpx.Response:
        return client.post(
            "/orders", json={"items": [{"sku_id": sku, "quantity": 1}]}, headers=headers
        )

    with ThreadPoolExecutor(64) as pool:
        responses = list(pool.map(buy, buyers))
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 50, {c: codes.count(c) for c in set(codes)}
    losers = [r for r in responses if r.status_code != 201]
    assert len(losers) == 150
    assert all(
        r.status_code == 409 and r.json()["error"]["code"] == "out_of_stock" for r in losers
    ), {r.text for r in losers}
    placed = shop.scalar(
        "SELECT COUNT(*) FROM orders o JOIN order_items i ON i.order_id = o.id WHERE i.sku_id = :s",
        s=sku,
    )
    assert placed == 50
    stock = conserved(shop, sku)
    assert stock["total"] == 50 and stock["sold"] == 0
    assert stock["reserved"] + stock["available"] == 50
    # the 50 unpaid orders time out (stock is released first, then the order moves)
    wait_for(
        lambda: (
            shop.scalar(
                "SELECT COUNT(*) FROM orders o JOIN order_items i ON i.order_id = o.id "
                "WHERE i.sku_id = :s AND o.status = 'cancelled' AND o.cancel_reason = 'timeout'",
                s=sku,
            )
            == 50
        ),
        timeout_s=60,
    )
    assert conserved(shop, sku) == {"total": 50, "available": 50, "reserved": 0, "sold": 0}


def order_one(client: httpx.Client, headers: dict[str, str], sku: int) -> dict[str, Any]:
    resp = client.post("/orders", json={"items": [{"sku_id": sku, "quantity": 1}]}, headers=headers)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_an_unpaid_order_times_out_and_its_stock_returns(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked_sku(shop, client, admin, units=3, price=500)
    _, headers = shop.customer()
    order = order_one(client, headers, sku)
    assert conserved(shop, sku) == {"total": 3, "available": 2, "reserved": 1, "sold": 0}
    wait_for(
        lambda: (
            client.get(f"/orders/{order['id']}", headers=headers).json()["status"] == "cancelled"
        ),
        timeout_s=60,
    )
    assert int(time.time() * 1000) >= order["expires_ms"]
    final = client.get(f"/orders/{order['id']}", headers=headers).json()
    assert final["cancel_reason"] == "timeout"
    assert conserved(shop, sku) == {"total": 3, "available": 3, "reserved": 0, "sold": 0}
    history = client.get(f"/orders/{order['id']}/history", headers=headers).json()["items"]
    assert [(h["to_status"], h["reason"], h["actor"]) for h in history] == [
        ("pending_payment", "placed", history[0]["actor"]),
        ("cancelled", "timeout", "system"),
    ]
    late = client.post(f"/orders/{order['id']}/pay", headers=headers)
    assert late.status_code == 409 and late.json()["error"]["details"]["status"] == "cancelled"


def test_a_killed_order_shard_still_cancels_on_time_and_keeps_later_deadlines(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked_sku(shop, client, admin, units=5, price=800)
    uid, headers = shop.customer()
    first = order_one(client, headers, sku)
    time.sleep(3)
    second = order_one(client, headers, sku)
    shard = shard_for(uid, app.settings.order_shards)
    handle = ray.get_actor(shard_name(shard), namespace=app.settings.namespace)
    before = ray.get(handle.check_alive.remote())
    ray.kill(handle, no_restart=False)  # crash: Ray restarts it, it reloads from the DB

    def status(order: dict[str, Any]) -> str:
        return str(client.get(f"/orders/{order['id']}", headers=headers).json()["status"])

    wait_for(lambda: status(first) == "cancelled", timeout_s=60)
    if int(time.time() * 1000) < second["expires_ms"] - 500:
        assert status(second) == "pending_payment"  # its own deadline is still ahead
    wait_for(lambda: status(second) == "cancelled", timeout_s=60)
    after = ray.get(handle.check_alive.remote())
    assert after["started_ms"] > before["started_ms"]  # it really was restarted
    assert conserved(shop, sku) == {"total": 5, "available": 5, "reserved": 0, "sold": 0}


def test_payment_against_timeout_100_times_exactly_one_wins(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked_sku(shop, client, admin, units=100, price=1234)
    customers = [shop.customer()[1] for _ in range(10)]
    jobs = [customers[i % 10] for i in range(100)]
    with ThreadPoolExecutor(16) as pool:
        orders = list(pool.map(lambda h: (h, order_one(client, h, sku)), jobs))
    rng = random.Random(7)

    def pay_at_deadline(job: tuple[dict[str, str], dict[str, Any]]) -> int:
        headers, order = job
        at = order["expires_ms"] / 1000 + rng.uniform(-0.8, 0.8)
        time.sleep(max(0.0, at - time.time()))
        return client.post(f"/orders/{order['id']}/pay", headers=headers).status_code

    with ThreadPoolExecutor(100) as pool:
        pay_codes = list(pool.map(pay_at_deadline, orders))
    assert set(pay_codes) <= {202, 409}, pay_codes

    def settled() -> bool:
        ids = ",".join(o["id"] for _, o in orders)
        pending_orders = shop.scalar(
            f"SELECT COUNT(*) FROM orders WHERE id IN ({ids}) AND status = 'pending_payment'"
        )
        pending_payments = shop.scalar(
            f"SELECT COUNT(*) FROM payments WHERE order_id IN ({ids}) AND status = 'pending'"
        )
        return pending_orders == 0 and pending_payments == 0

    wait_for(settled, timeout_s=90)
    paid = cancelled = 0
    for _, order in orders:
        oid = int(order["id"])
        status = shop.scalar("SELECT status FROM orders WHERE id = :o", o=oid)
        payments = [
            r[0] for r in shop.rows("SELECT status FROM payments WHERE order_id = :o", o=oid)
        ]
        events = [
            r[0]
            for r in shop.rows(
                "SELECT to_status FROM order_events WHERE order_id = :o ORDER BY id", o=oid
            )
        ]
        states = {
            r[0]
            for r in shop.rows(
                "SELECT state FROM inventory_ops WHERE `key` LIKE :k", k=f"order:{oid}@%"
            )
        }
        if status == "paid":
            paid += 1
            assert payments.count("succeeded") == 1 and events == ["pending_payment", "paid"]
            assert states == {"confirmed"}
        else:
            cancelled += 1
            assert status == "cancelled" and "succeeded" not in payments
            assert events == ["pending_payment", "cancelled"]
            assert states == {"released"}
    assert paid + cancelled == 100
    stock = conserved(shop, sku)
    assert stock == {"total": 100, "available": 100 - paid, "reserved": 0, "sold": paid}
    print(f"pay vs timeout: {paid} paid, {cancelled} cancelled")
