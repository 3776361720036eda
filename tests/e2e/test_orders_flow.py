"""Orders and payments over HTTP against the running app: the full shopping flow, the
declined payment, forged and duplicate callbacks, refunds, ownership and invalid moves.
Every step checks the order history and the stock in the database."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest

from tests.auth_helpers import TestUser, login, new_user
from tests.order_helpers import Shop, restock, signed_callback, wait_for

pytestmark = pytest.mark.e2e


def _error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert {"code", "message", "request_id"} <= set(body["error"])
    return dict(body["error"])


def product(client: httpx.Client, admin: TestUser, price_cents: int, stock: int) -> dict:
    """A published product with one SKU holding ``stock`` units (through the shard)."""
    word = secrets.token_hex(4)
    cat = client.post("/admin/categories", json={"name": f"Kitchen {word}"}, headers=admin.headers)
    assert cat.status_code == 201, cat.text
    body = {
        "title": f"Gooseneck kettle {word}",
        "category_id": cat.json()["id"],
        "skus": [{"code": f"KET-{word}", "specs": {"color": "steel"}, "price_cents": price_cents}],
    }
    created = client.post("/admin/products", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    doc = created.json()
    assert client.post(f"/admin/products/{doc['id']}/publish", headers=admin.headers).is_success
    sku_id = doc["skus"][0]["id"]
    if stock:
        restock(client, admin.headers, sku_id, stock)
    return {"product_id": doc["id"], "sku_id": sku_id}


def history(client: httpx.Client, user: TestUser, order_id: str) -> list[str]:
    resp = client.get(f"/orders/{order_id}/history", headers=user.headers)
    assert resp.status_code == 200, resp.text
    return [e["to_status"] for e in resp.json()["items"]]


def status(client: httpx.Client, user: TestUser, order_id: str) -> str:
    resp = client.get(f"/orders/{order_id}", headers=user.headers)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["status"])


def buyer(client: httpx.Client) -> TestUser:
    user = new_user(client)
    addr = {
        "recipient": "Grace Hopper",
        "phone": "+1 555 0100",
        "line1": "1 Navy Way",
        "city": "Arlington",
        "postal_code": "22202",
        "country": "US",
    }
    resp = client.post("/me/addresses", json=addr, headers=user.headers)
    assert resp.status_code == 201, resp.text
    user.extra["address_id"] = resp.json()["id"]
    return user


def test_the_full_flow_from_browsing_to_completed(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    item = product(client, admin, price_cents=4599, stock=5)
    sku = item["sku_id"]
    alice = buyer(client)
    # browse
    page = client.get(f"/products/{item['product_id']}")
    assert page.status_code == 200, page.text
    assert page.json()["skus"][0]["available"] == 5
    # add to cart
    added = client.post("/cart/items", json={"sku_id": sku, "quantity": 2}, headers=alice.headers)
    assert added.status_code == 200, added.text
    cart = added.json()
    assert cart["total_cents"] == 9198 and cart["items"][0]["available"] == 5
    # order from the cart
    placed = client.post(
        "/orders",
        json={"address_id": alice.extra["address_id"]},
        headers={**alice.headers, "Idempotency-Key": secrets.token_hex(8)},
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    oid = order["id"]
    assert order["status"] == "pending_payment" and order["total_cents"] == 9198
    assert order["address"]["city"] == "Arlington"
    assert order["expires_ms"] > order["created_ms"]
    assert client.get("/cart", headers=alice.headers).json()["items"] == []
    assert shop.stock(sku) == {"total": 5, "available": 3, "reserved": 2, "sold": 0}
    assert history(client, alice, oid) == ["pending_payment"]
    # pay: the provider calls back with a signed body
    paying = client.post(f"/orders/{oid}/pay", json={}, headers=alice.headers)
    assert paying.status_code == 202, paying.text
    payment = paying.json()
    assert payment["amount_cents"] == 9198 and payment["status"] == "pending"
    wait_for(lambda: status(client, alice, oid) == "paid")
    assert shop.stock(sku) == {"total": 5, "available": 3, "reserved": 0, "sold": 2}
    assert history(client, alice, oid) == ["pending_payment", "paid"]
    detail = client.get(f"/orders/{oid}", headers=alice.headers).json()
    assert [p["status"] for p in detail["payments"]] == ["succeeded"]
    assert detail["payments"][0]["callbacks"] >= 1
    # admin ships, the user confirms receipt
    shipped = client.post(f"/admin/orders/{oid}/ship", headers=admin.headers)
    assert shipped.status_code == 200 and shipped.json()["status"] == "shipped", shipped.text
    done = client.post(f"/orders/{oid}/confirm-receipt", headers=alice.headers)
    assert done.status_code == 200 and done.json()["status"] == "completed", done.text
    assert history(client, alice, oid) == ["pending_payment", "paid", "shipped", "completed"]
    assert shop.stock(sku) == {"total": 5, "available": 3, "reserved": 0, "sold": 2}
    # simulated e-mails for placed and paid (written by the outbox consumer)
    kinds = wait_for(
        lambda: (
            {
                n["kind"]
                for n in client.get("/me/notifications", headers=alice.headers).json()["items"]
            }
            >= {"order_placed", "order_paid", "order_shipped"}
        )
    )
    assert kinds
    events = shop.rows("SELECT topic FROM outbox WHERE aggregate_id = :a ORDER BY id", a=str(oid))
    assert [e[0] for e in events] == [
        "order.placed",
        "order.paid",
        "order.shipped",
        "shipment.created",  # /ship ships every unit as one shipment
        "order.completed",
    ]
    wait_for(
        lambda: (
            shop.scalar(
                "SELECT COUNT(*) FROM outbox WHERE aggregate_id = :a AND published_ms IS NULL",
                a=str(oid),
            )
            == 0
        )
    )
    # the transitions and the relay show in /metrics (merged across processes)
    text = client.get("/metrics").text
    assert 'raymall_order_transitions_total{from_status="pending_payment",reason="payment"' in text
    assert 'raymall_outbox_published_total{topic="order.placed"}' in text
    assert "raymall_outbox_lag_seconds" in text


def test_an_admin_completes_and_lists_orders_with_filters(
    client: httpx.Client, admin: TestUser
) -> None:
    sku = product(client, admin, price_cents=1000, stock=3)["sku_id"]
    bob = buyer(client)
    started = int(time.time() * 1000) - 1
    oid = client.post(
        "/orders", json={"items": [{"sku_id": sku, "quantity": 1}]}, headers=bob.headers
    ).json()["id"]
    client.post(f"/orders/{oid}/pay", headers=bob.headers)
    wait_for(lambda: status(client, bob, oid) == "paid")
    assert client.post(f"/admin/orders/{oid}/ship", headers=admin.headers).status_code == 200
    done = client.post(f"/admin/orders/{oid}/complete", headers=admin.headers)
    assert done.json()["status"] == "completed"
    listed = client.get(
        "/admin/orders",
        params={"user_id": bob.user_id, "status": "completed", "from_ms": started},
        headers=admin.headers,
    )
    assert listed.status_code == 200, listed.text
    assert [o["id"] for o in listed.json()["items"]] == [oid]
    none = client.get(
        "/admin/orders", params={"user_id": bob.user_id, "to_ms": started}, headers=admin.headers
    )
    assert none.json()["items"] == []
    one_page = client.get("/admin/orders", params={"limit": 1}, headers=admin.headers).json()
    assert len(one_page["items"]) == 1 and one_page["next_cursor"]
    nxt = client.get(
        "/admin/orders",
        params={"limit": 1, "cursor": one_page["next_cursor"]},
        headers=admin.headers,
    ).json()
    assert int(nxt["items"][0]["id"]) < int(one_page["items"][0]["id"])
    _error(client.get("/admin/orders", headers=bob.headers), 403, "forbidden")
    full = client.get(f"/admin/orders/{oid}", headers=admin.headers).json()
    assert [h["to_status"] for h in full["history"]][-1] == "completed"


def test_a_declined_payment_keeps_the_order_payable(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = product(client, admin, price_cents=2500, stock=2)["sku_id"]
    carol = buyer(client)
    oid = client.post(
        "/orders", json={"items": [{"sku_id": sku, "quantity": 1}]}, headers=carol.headers
    ).json()["id"]
    declined = client.post(f"/orders/{oid}/pay", json={"outcome": "fail"}, headers=carol.headers)
    assert declined.status_code == 202, declined.text
    wait_for(
        lambda: (
            [
                p["status"]
                for p in client.get(f"/orders/{oid}", headers=carol.headers).json()["payments"]
            ]
            == ["failed"]
        )
    )
    assert status(client, carol, oid) == "pending_payment"
    assert shop.stock(sku)["reserved"] == 1
    client.post(f"/orders/{oid}/pay", headers=carol.headers)
    wait_for(lambda: status(client, carol, oid) == "paid")
    assert shop.stock(sku) == {"total": 2, "available": 1, "reserved": 0, "sold": 1}


def test_forged_stale_and_wrong_amount_callbacks_change_nothing(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = product(client, admin, price_cents=700, stock=1)["sku_id"]
    dave = buyer(client)
    oid = client.post(
        "/orders", json={"items": [{"sku_id": sku, "quantity": 1}]}, headers=dave.headers
    ).json()["id"]
    pid = shop.rows("SELECT 1")  # placeholder to keep the connection warm
    assert pid
    # a payment the provider never hears about: create it like /pay would, without a charge
    from raymall.ids import now_ms

    pay_id = f"pay_{secrets.token_hex(12)}"
    with shop.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(
            text(
                "INSERT INTO payments (id, order_id, amount_cents, status, outcome, callbacks, "
                "created_ms, updated_ms) VALUES (:i, :o, 700, 'pending', 'succeed', 0, :n, :n)"
            ),
            {"i": pay_id, "o": int(oid), "n": now_ms()},
        )
    body = {"payment_id": pay_id, "order_id": oid, "amount_cents": 700, "status": "succeeded"}
    audits = shop.scalar("SELECT COUNT(*) FROM payment_audit")
    raw, headers = signed_callback(app.settings, body)
    tampered = raw.replace(b'"amount_cents":700', b'"amount_cents":7')
    _error(
        client.post("/payments/callback", content=tampered, headers=headers), 401, "bad_signature"
    )
    forged = {**headers, "X-Signature": "0" * 64}
    _error(client.post("/payments/callback", content=raw, headers=forged), 401, "bad_signature")
    nosig = {"Content-Type": "application/json"}
    _error(client.post("/payments/callback", content=raw, headers=nosig), 401, "bad_signature")
    old_raw, old_headers = signed_callback(
        app.settings, body, timestamp=int(time.time()) - app.settings.payment_callback_window_s - 5
    )
    _error(
        client.post("/payments/callback", content=old_raw, headers=old_headers),
        401,
        "bad_signature",
    )
    wrong_raw, wrong_headers = signed_callback(app.settings, {**body, "amount_cents": 1})
    _error(
        client.post("/payments/callback", content=wrong_raw, headers=wrong_headers),
        400,
        "amount_mismatch",
    )
    reasons = [
        r[0]
        for r in shop.rows(
            "SELECT reason FROM payment_audit WHERE payment_id = :p ORDER BY id", p=pay_id
        )
    ]
    assert reasons == [
        "bad_signature",
        "bad_signature",
        "missing_signature",
        "stale_timestamp",
        "amount_mismatch",
    ]
    assert shop.scalar("SELECT COUNT(*) FROM payment_audit") == audits + 5
    assert status(client, dave, oid) == "pending_payment"
    assert shop.scalar("SELECT status FROM payments WHERE id = :p", p=pay_id) == "pending"
    assert shop.stock(sku) == {"total": 1, "available": 0, "reserved": 1, "sold": 0}
    # the genuine callback, twice: the second is a harmless duplicate
    first = client.post("/payments/callback", content=raw, headers=headers)
    assert first.status_code == 200 and first.json()["order"] == "paid", first.text
    again = client.post("/payments/callback", content=raw, headers=headers)
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    assert history(client, dave, oid) == ["pending_payment", "paid"]
    assert shop.stock(sku) == {"total": 1, "available": 0, "reserved": 0, "sold": 1}
    assert shop.scalar("SELECT callbacks FROM payments WHERE id = :p", p=pay_id) == 2


def test_a_refund_returns_the_units_to_stock(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = product(client, admin, price_cents=1500, stock=4)["sku_id"]
    erin = buyer(client)
    oid = client.post(
        "/orders", json={"items": [{"sku_id": sku, "quantity": 3}]}, headers=erin.headers
    ).json()["id"]
    client.post(f"/orders/{oid}/pay", headers=erin.headers)
    wait_for(lambda: status(client, erin, oid) == "paid")
    assert shop.stock(sku) == {"total": 4, "available": 1, "reserved": 0, "sold": 3}
    refunded = client.post(f"/admin/orders/{oid}/refund", headers=admin.headers)
    assert refunded.status_code == 200 and refunded.json()["status"] == "refunded", refunded.text
    # the units are back for sale (an audited restock: sold keeps the history)
    stock = shop.stock(sku)
    assert stock["available"] == 4 and stock["reserved"] == 0
    assert stock["total"] == stock["available"] + stock["reserved"] + stock["sold"]
    assert (
        shop.scalar(
            "SELECT SUM(delta) FROM inventory_adjustments WHERE `key` LIKE :k", k=f"refund:{oid}:%"
        )
        == 3
    )
    # the money goes back through the provider's signed refund callback
    refunds = wait_for(
        lambda: [
            r
            for r in client.get(f"/orders/{oid}/refunds", headers=erin.headers).json()["items"]
            if r["status"] == "succeeded"
        ]
    )
    assert [(r["amount_cents"], r["reason"]) for r in refunds] == [(4500, "refund")]
    detail = client.get(f"/orders/{oid}", headers=erin.headers).json()
    assert [(p["status"], p["refunded_cents"]) for p in detail["payments"]] == [("succeeded", 4500)]
    _error(
        client.post(f"/admin/orders/{oid}/refund", headers=admin.headers), 409, "invalid_transition"
    )
    assert shop.stock(sku)["available"] == 4


def test_orders_are_private_and_invalid_moves_are_409_with_the_state(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = product(client, admin, price_cents=990, stock=2)["sku_id"]
    frank, grace = buyer(client), buyer(client)
    oid = client.post(
        "/orders", json={"items": [{"sku_id": sku, "quantity": 1}]}, headers=frank.headers
    ).json()["id"]
    _error(client.get(f"/orders/{oid}", headers=grace.headers), 404, "not_found")
    _error(client.get(f"/orders/{oid}/history", headers=grace.headers), 404, "not_found")
    _error(client.post(f"/orders/{oid}/cancel", headers=grace.headers), 404, "not_found")
    _error(client.post(f"/orders/{oid}/pay", headers=grace.headers), 404, "not_found")
    err = _error(
        client.post(f"/admin/orders/{oid}/ship", headers=admin.headers), 409, "invalid_transition"
    )
    assert err["details"]["status"] == "pending_payment"
    _error(client.post(f"/admin/orders/{oid}/ship", headers=frank.headers), 403, "forbidden")
    cancelled = client.post(f"/orders/{oid}/cancel", headers=frank.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancel_reason"] == "user"
    assert shop.stock(sku) == {"total": 2, "available": 2, "reserved": 0, "sold": 0}
    err = _error(
        client.post(f"/orders/{oid}/pay", headers=frank.headers), 409, "invalid_transition"
    )
    assert err["details"]["status"] == "cancelled"
    err = _error(
        client.post(f"/orders/{oid}/cancel", headers=frank.headers), 409, "invalid_transition"
    )
    assert err["details"]["status"] == "cancelled"
    assert history(client, frank, oid) == ["pending_payment", "cancelled"]
    _error(client.get("/orders/123", headers=frank.headers), 404, "not_found")
    _error(client.get("/orders/0", headers=frank.headers), 422, "validation_error")


def test_bad_order_requests_get_clear_codes(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = product(client, admin, price_cents=100, stock=1)["sku_id"]
    hidden = product(client, admin, price_cents=100, stock=1)["sku_id"]
    shop.set_published(hidden, False)
    henry = buyer(client)
    h = henry.headers

    def order(body: dict) -> httpx.Response:
        return client.post("/orders", json=body, headers=h)

    _error(order({"items": [{"sku_id": 2**62, "quantity": 1}]}), 404, "unknown_sku")
    _error(order({"items": [{"sku_id": hidden, "quantity": 1}]}), 409, "sku_not_for_sale")
    _error(order({"items": [{"sku_id": sku, "quantity": 2}]}), 409, "out_of_stock")
    _error(order({"items": [{"sku_id": sku, "quantity": 0}]}), 422, "validation_error")
    _error(
        order({"items": [{"sku_id": sku, "quantity": 1, "unit_price_cents": 1}]}),
        422,
        "validation_error",
    )
    _error(
        order({"items": [{"sku_id": sku, "quantity": 1}], "address_id": 2**62}), 404, "not_found"
    )
    _error(order({}), 422, "validation_error")  # the cart is empty
    _error(
        order({"items": [{"sku_id": sku, "quantity": 1}], "cart_sku_ids": [sku]}),
        422,
        "validation_error",
    )
    no_address = new_user(client)
    _error(
        client.post(
            "/orders", json={"items": [{"sku_id": sku, "quantity": 1}]}, headers=no_address.headers
        ),
        422,
        "validation_error",
    )
    assert shop.stock(sku) == {"total": 1, "available": 1, "reserved": 0, "sold": 0}
    # a client price is never used: the order costs what the catalog says
    placed = order({"items": [{"sku_id": sku, "quantity": 1}]})
    assert placed.status_code == 201 and placed.json()["total_cents"] == 100
    _error(
        client.post("/orders", json={"items": [{"sku_id": sku, "quantity": 1}]}),
        401,
        "unauthorized",
    )
    assert login(client, henry)
