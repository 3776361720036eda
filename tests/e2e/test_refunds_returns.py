"""Money back over HTTP against the running app, checked in the database to the cent and
the unit: a partial refund and a return through the payment provider's signed refund
callback, and the races of issue #25 (a refund racing a return receipt, two refunds of one
return, a customer's cancel racing a shipment), each with exactly one outcome."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import httpx
import pytest

from raymall.ids import now_ms
from tests.auth_helpers import TestUser
from tests.order_helpers import Shop, restock, wait_for

pytestmark = pytest.mark.e2e


def _sku(shop: Shop, client: httpx.Client, admin: TestUser, price: int, units: int) -> int:
    sku = shop.sku(price_cents=price)
    restock(client, admin.headers, sku, units)
    return sku


def _error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code, resp.text


def _paid_order(
    client: httpx.Client, headers: dict[str, str], lines: dict[int, int]
) -> tuple[str, dict[str, Any]]:
    items = [{"sku_id": s, "quantity": q} for s, q in lines.items()]
    placed = client.post("/orders", json={"items": items}, headers=headers)
    assert placed.status_code == 201, placed.text
    oid = placed.json()["id"]
    assert client.post(f"/orders/{oid}/pay", headers=headers).status_code == 202
    wait_for(lambda: client.get(f"/orders/{oid}", headers=headers).json()["status"] == "paid")
    return oid, client.get(f"/orders/{oid}", headers=headers).json()


def _line_ids(shop: Shop, oid: str) -> dict[int, int]:
    rows = shop.rows("SELECT sku_id, id FROM order_items WHERE order_id = :o", o=int(oid))
    return {int(sku): int(item) for sku, item in rows}


def _deliver(shop: Shop, oid: str) -> None:
    """The carrier's last event, as the database records it (delivery is not this test's)."""
    with shop.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(
            text("UPDATE orders SET status = 'delivered', delivered_ms = :d WHERE id = :o"),
            {"o": int(oid), "d": now_ms()},
        )


def _money(shop: Shop, oid: str) -> dict[str, Any]:
    """The order's money in the database; fails unless every bound holds."""
    o = int(oid)
    paid, reserved = shop.rows(
        "SELECT amount_cents, refunded_cents FROM payments WHERE order_id = :o AND status = "
        "'succeeded'",
        o=o,
    )[0]
    by_status = dict(
        shop.rows(
            "SELECT status, SUM(amount_cents) FROM refunds WHERE order_id = :o GROUP BY status",
            o=o,
        )
    )
    refunded = shop.scalar("SELECT refunded_cents FROM orders WHERE id = :o", o=o)
    lines = shop.rows(
        "SELECT sku_id, line_total_cents - discount_cents, refunded_cents, returned_quantity "
        "FROM order_items WHERE order_id = :o",
        o=o,
    )
    succeeded, pending = int(by_status.get("succeeded", 0)), int(by_status.get("pending", 0))
    assert reserved <= paid and refunded == succeeded and reserved == succeeded + pending
    assert all(line_refunded <= line_paid for _, line_paid, line_refunded, _ in lines)
    return {"paid": paid, "reserved": reserved, "refunded": refunded, "pending": pending}


def _settled(shop: Shop, oid: str) -> Callable[[], bool]:
    return lambda: _money(shop, oid)["pending"] == 0


def test_a_partial_refund_and_a_return_go_back_through_the_provider_to_the_cent(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    a = _sku(shop, client, admin, price=1000, units=5)
    b = _sku(shop, client, admin, price=500, units=5)
    uid, headers = shop.customer()
    oid, _ = _paid_order(client, headers, {a: 3, b: 1})  # 3500
    line = _line_ids(shop, oid)
    key = {"Idempotency-Key": f"rf-{secrets.token_hex(6)}"}
    body = {"amount_cents": 500, "reason": "damaged_box", "lines": [
        {"order_item_id": str(line[b]), "amount_cents": 500}]}  # fmt: skip
    first = client.post(f"/admin/orders/{oid}/refunds", json=body, headers={**admin.headers, **key})
    assert first.status_code == 201 and first.json()["status"] == "pending", first.text
    again = client.post(f"/admin/orders/{oid}/refunds", json=body, headers={**admin.headers, **key})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    too_much = {"amount_cents": 3001, "reason": "x"}
    _error(
        client.post(f"/admin/orders/{oid}/refunds", json=too_much, headers=admin.headers),
        409,
        "refund_exceeds_remaining",
    )
    wait_for(_settled(shop, oid))
    assert _money(shop, oid) == {"paid": 3500, "reserved": 500, "refunded": 500, "pending": 0}
    _error(
        client.post(
            f"/orders/{oid}/returns",
            json={"lines": [{"order_item_id": str(line[a]), "quantity": 1}], "reason": "damaged"},
            headers=headers,
        ),
        409,
        "order_not_returnable",
    )
    _deliver(shop, oid)
    ask = {"lines": [{"order_item_id": str(line[a]), "quantity": 4}], "reason": "damaged"}
    _error(client.post(f"/orders/{oid}/returns", json=ask, headers=headers), 409,
           "return_quantity_exceeded")  # fmt: skip
    ask["lines"][0]["quantity"] = 1  # type: ignore[index]
    asked = client.post(f"/orders/{oid}/returns", json=ask, headers=headers)
    assert asked.status_code == 201 and asked.json()["status"] == "requested", asked.text
    rid = asked.json()["id"]
    sku_a_before = shop.stock(a)
    for step in ("approve",):
        assert client.post(f"/admin/returns/{rid}/{step}", headers=admin.headers).is_success
    tracked = client.post(
        f"/returns/{rid}/tracking", json={"tracking_number": "RB123"}, headers=headers
    )
    assert tracked.status_code == 200 and tracked.json()["status"] == "shipped_back", tracked.text
    got = client.post(f"/admin/returns/{rid}/receive", headers=admin.headers)
    assert got.status_code == 200 and got.json()["refund_cents"] == 1000, got.text
    assert shop.stock(a)["available"] == sku_a_before["available"] + 1
    wait_for(_settled(shop, oid))
    assert _money(shop, oid) == {"paid": 3500, "reserved": 1500, "refunded": 1500, "pending": 0}
    view = client.get(f"/returns/{rid}", headers=headers).json()
    assert view["status"] == "refunded"
    assert [e["to_status"] for e in view["history"]] == [
        "requested", "approved", "shipped_back", "received", "refunded"
    ]  # fmt: skip
    mine = client.get(f"/orders/{oid}/returns", headers=headers).json()["items"]
    assert [r["id"] for r in mine] == [rid]
    kinds = wait_for(
        lambda: (
            {
                k
                for (k,) in shop.rows("SELECT kind FROM notifications WHERE user_id = :u", u=uid)
                if k.startswith(("refund_", "return_"))
            }
            >= {"refund_succeeded", "return_requested", "return_approved", "return_received"}
        )
    )
    assert kinds


def _available_is(shop: Shop, sku: int, units: int) -> bool:
    return shop.stock(sku)["available"] == units


def _race(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_the_races_of_money_back_each_have_exactly_one_outcome(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    a = _sku(shop, client, admin, price=1000, units=30)
    # 1. a refund racing a return receipt: the line is paid back once, the units come back once
    for _ in range(2):
        _, headers = shop.customer()
        oid, _ = _paid_order(client, headers, {a: 2})  # 2000
        item = _line_ids(shop, oid)[a]
        _deliver(shop, oid)
        ask = {"lines": [{"order_item_id": str(item), "quantity": 2}], "reason": "defective"}
        rid = client.post(f"/orders/{oid}/returns", json=ask, headers=headers).json()["id"]
        assert client.post(f"/admin/returns/{rid}/approve", headers=admin.headers).is_success
        before = shop.stock(a)["available"]
        refund = {"amount_cents": 2000, "reason": "goodwill",
                  "lines": [{"order_item_id": str(item), "amount_cents": 2000}]}  # fmt: skip
        got, paid_back = _race(
            partial(client.post, f"/admin/returns/{rid}/receive", headers=admin.headers),
            partial(
                client.post, f"/admin/orders/{oid}/refunds", json=refund, headers=admin.headers
            ),
        )
        assert got.status_code == 200, got.text  # the receipt always restocks
        if paid_back.status_code == 201:  # the refund first: nothing left for the return
            assert got.json()["refund_cents"] == 0
        else:
            _error(paid_back, 409, "refund_exceeds_remaining")
            assert got.json()["refund_cents"] == 2000
        wait_for(_settled(shop, oid))
        assert _money(shop, oid)["refunded"] == 2000
        assert shop.stock(a)["available"] == before + 2
        assert (
            shop.scalar(
                "SELECT SUM(delta) FROM inventory_adjustments WHERE `key` LIKE :k",
                k=f"return:{rid}:%",
            )
            == 2
        )

    # 2. two refunds of the same return: one refund, paid once
    _, headers = shop.customer()
    oid, _ = _paid_order(client, headers, {a: 1})
    item = _line_ids(shop, oid)[a]
    _deliver(shop, oid)
    ask = {"lines": [{"order_item_id": str(item), "quantity": 1}], "reason": "wrong_item"}
    rid = client.post(f"/orders/{oid}/returns", json=ask, headers=headers).json()["id"]
    assert client.post(f"/admin/returns/{rid}/approve", headers=admin.headers).is_success
    outcomes = _race(
        partial(client.post, f"/admin/returns/{rid}/receive", headers=admin.headers),
        partial(client.post, f"/admin/returns/{rid}/refund", headers=admin.headers),
        partial(client.post, f"/admin/returns/{rid}/refund", headers=admin.headers),
    )
    assert outcomes[0].status_code == 200, outcomes[0].text
    for resp in outcomes[1:]:  # before the receipt: 409; after: the receipt's own refund
        assert resp.status_code in (200, 409), resp.text
    wait_for(_settled(shop, oid))
    assert shop.scalar("SELECT COUNT(*) FROM refunds WHERE return_id = :r", r=int(rid)) == 1
    assert _money(shop, oid)["refunded"] == 1000

    # 3. a customer's cancel racing the shipment: one winner, money and stock follow it
    winners = set()
    for _ in range(3):
        _, headers = shop.customer()
        before = shop.stock(a)
        oid, _ = _paid_order(client, headers, {a: 2})
        cancel, ship = _race(
            partial(client.post, f"/orders/{oid}/cancel", headers=headers),
            partial(client.post, f"/admin/orders/{oid}/ship", headers=admin.headers),
        )
        assert sorted([cancel.status_code, ship.status_code]) == [200, 409], (
            cancel.text,
            ship.text,
        )
        status = shop.scalar("SELECT status FROM orders WHERE id = :o", o=int(oid))
        winners.add(status)
        refunds = shop.rows("SELECT `key` FROM refunds WHERE order_id = :o", o=int(oid))
        if status == "cancelled":
            assert refunds == [(f"cancel:{oid}",)]
            wait_for(_settled(shop, oid))
            assert _money(shop, oid)["refunded"] == 2000
            wait_for(partial(_available_is, shop, a, before["available"]))
        else:
            assert status == "shipped" and refunds == []
            assert shop.stock(a)["available"] == before["available"] - 2
    assert winners <= {"cancelled", "shipped"}
