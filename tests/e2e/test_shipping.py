"""Shipping over HTTP against the running app: a shipping method's fee in the quote, the
order and the payment; a shipment of the simulated carrier whose signed tracking events
take the order to delivered; and duplicate or tampered carrier callbacks (bad signature,
another order, stale timestamp, unknown shipment), each with exactly one effect, checked
in the database."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx
import pytest

from raymall.orders.signing import signed_headers
from tests.auth_helpers import TestUser
from tests.e2e.test_orders_flow import _error, buyer, product
from tests.order_helpers import Shop, wait_for

pytestmark = pytest.mark.e2e


def method(client: httpx.Client, admin: TestUser, **terms: Any) -> dict[str, Any]:
    body = {"code": f"std-{secrets.token_hex(4)}", "name": "Standard", **terms}
    resp = client.post("/admin/shipping-methods", json=body, headers=admin.headers)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def paid_order(
    client: httpx.Client, admin: TestUser, user: TestUser, sku: int, qty: int, method_id: int
) -> dict[str, Any]:
    placed = client.post(
        "/orders",
        json={"items": [{"sku_id": sku, "quantity": qty}], "shipping_method_id": method_id},
        headers=user.headers,
    )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert client.post(f"/orders/{order['id']}/pay", headers=user.headers).status_code == 202
    wait_for(
        lambda: (
            client.get(f"/orders/{order['id']}", headers=user.headers).json()["status"] == "paid"
        )
    )
    return dict(order)


def callback(
    app: Any, body: dict[str, Any], *, timestamp: int | None = None, secret: str | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body, separators=(",", ":")).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    return raw, signed_headers(secret or app.settings.secret("carrier_secret"), ts, raw)


def test_a_shipment_with_carrier_events_reaches_delivered_and_the_fee_is_paid(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = product(client, admin, price_cents=2000, stock=5)["sku_id"]
    user = buyer(client)  # an address in the US, no region
    m = method(client, admin, fee_cents=499, free_over_cents=10_000, region_fees={"US": 699})
    listed = client.get("/shipping-methods").json()["items"]
    assert m["id"] in [x["id"] for x in listed]
    quote = client.post(
        "/orders/quote",
        json={"items": [{"sku_id": sku, "quantity": 2}], "shipping_method_id": m["id"]},
        headers=user.headers,
    )
    assert quote.status_code == 200, quote.text
    assert (quote.json()["shipping_cents"], quote.json()["total_cents"]) == (699, 4699)
    order = paid_order(client, admin, user, sku, 2, m["id"])
    oid = order["id"]
    assert (order["shipping_cents"], order["total_cents"]) == (699, 4699)
    assert shop.scalar("SELECT amount_cents FROM payments WHERE order_id = :o", o=oid) == 4699
    detail = client.get(f"/admin/orders/{oid}", headers=admin.headers).json()
    item_id = detail["items"][0]["id"]
    # one unit now (partially shipped) by another carrier, the rest by the simulated one
    first = client.post(
        f"/admin/orders/{oid}/shipments",
        json={
            "carrier": "ups",
            "tracking_number": f"1Z{secrets.token_hex(6)}",
            "lines": [{"order_item_id": item_id, "quantity": 1}],
        },
        headers=admin.headers,
    )
    assert first.status_code == 201, first.text
    assert first.json()["order"]["status"] == "partially_shipped"
    _error(
        client.post(
            f"/admin/orders/{oid}/shipments",
            json={
                "carrier": "ups",
                "tracking_number": f"1Z{secrets.token_hex(6)}",
                "lines": [{"order_item_id": item_id, "quantity": 2}],
            },
            headers=admin.headers,
        ),
        409,
        "ship_quantity_exceeded",
    )
    body = {"carrier": app.settings.carrier_name, "tracking_number": f"RC{secrets.token_hex(6)}"}
    rest = client.post(f"/admin/orders/{oid}/shipments", json=body, headers=admin.headers)
    assert rest.status_code == 201, rest.text
    assert rest.json()["order"]["status"] == "shipped"
    replay = client.post(f"/admin/orders/{oid}/shipments", json=body, headers=admin.headers)
    assert replay.status_code == 200 and replay.json()["created"] is False, replay.text
    sim = rest.json()["shipment"]["id"]
    # the simulated carrier delivers its shipment; the other carrier's is still en route
    wait_for(
        lambda: (
            shop.scalar("SELECT status FROM shipments WHERE id = :s", s=int(sim)) == "delivered"
        ),
        timeout_s=60,
    )
    assert shop.scalar("SELECT status FROM orders WHERE id = :o", o=oid) == "shipped"
    # the other carrier's events, signed, complete the delivery
    ups = first.json()["shipment"]
    for step in ("picked_up", "delivered"):
        raw, headers = callback(
            app,
            {
                "event_id": f"ups-{ups['id']}-{step}",
                "shipment_id": ups["id"],
                "order_id": oid,
                "tracking_number": ups["tracking_number"],
                "status": step,
                "location": "hub",
                "occurred_ms": int(time.time() * 1000),
            },
        )
        resp = client.post("/carrier/callback", content=raw, headers=headers)
        assert resp.status_code == 200, resp.text
    view = client.get(f"/orders/{oid}", headers=user.headers).json()
    assert view["status"] == "delivered" and view["delivered_ms"] is not None
    days = app.settings.auto_complete_days
    assert view["expires_ms"] == view["delivered_ms"] + int(days * 86_400_000)
    by_id = {s["id"]: s for s in view["shipments"]}
    assert [e["status"] for e in by_id[sim]["events"]] == [
        "picked_up", "in_transit", "out_for_delivery", "delivered",
    ]  # fmt: skip
    assert [e["status"] for e in by_id[ups["id"]]["events"]] == ["picked_up", "delivered"]
    assert [i["shipped_quantity"] for i in view["items"]] == [2]
    history = [
        e["to_status"]
        for e in client.get(f"/orders/{oid}/history", headers=user.headers).json()["items"]
    ]
    assert history == [
        "pending_payment", "paid", "partially_shipped", "shipped", "delivered",
    ]  # fmt: skip
    done = client.post(f"/orders/{oid}/confirm-receipt", headers=user.headers)
    assert done.status_code == 200 and done.json()["status"] == "completed", done.text
    kinds = wait_for(
        lambda: (
            {
                n["kind"]
                for n in client.get("/me/notifications", headers=user.headers).json()["items"]
            }
            >= {"order_partially_shipped", "order_shipped", "order_delivered", "order_completed"}
        )
    )
    assert kinds


def test_duplicate_and_tampered_carrier_callbacks_each_have_exactly_one_effect(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = product(client, admin, price_cents=1500, stock=3)["sku_id"]
    user = buyer(client)
    m = method(client, admin, fee_cents=300)
    order = paid_order(client, admin, user, sku, 1, m["id"])
    oid = order["id"]
    other = paid_order(client, admin, user, sku, 1, m["id"])["id"]
    shipped = client.post(
        f"/admin/orders/{oid}/ship",
        json={"carrier": "fedex", "tracking_number": f"FX{secrets.token_hex(6)}"},
        headers=admin.headers,
    )
    assert shipped.status_code == 200 and shipped.json()["status"] == "shipped", shipped.text
    shipment = client.get(f"/orders/{oid}", headers=user.headers).json()["shipments"][0]
    sid = shipment["id"]
    event = {
        "event_id": f"fx-{secrets.token_hex(6)}",
        "shipment_id": sid,
        "order_id": oid,
        "tracking_number": shipment["tracking_number"],
        "status": "in_transit",
        "location": "Memphis",
        "occurred_ms": int(time.time() * 1000),
    }

    def audits() -> int:
        return int(shop.scalar("SELECT COUNT(*) FROM carrier_audit WHERE shipment_id = :s", s=sid))

    def events() -> int:
        return int(
            shop.scalar("SELECT COUNT(*) FROM shipment_events WHERE shipment_id = :s", s=int(sid))
        )

    # the genuine event, twice: one row, one move
    raw, headers = callback(app, event)
    first = client.post("/carrier/callback", content=raw, headers=headers)
    assert first.status_code == 200 and first.json()["duplicate"] is False, first.text
    again = client.post("/carrier/callback", content=raw, headers=headers)
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    assert (events(), audits()) == (1, 0)
    assert shop.scalar("SELECT status FROM shipments WHERE id = :s", s=int(sid)) == "in_transit"
    # tampered: each refused, audited once, and nothing else changes
    delivered = {**event, "event_id": f"fx-{secrets.token_hex(6)}", "status": "delivered"}
    raw, headers = callback(app, delivered, secret="not-the-carrier-secret-" + "x" * 20)
    _error(client.post("/carrier/callback", content=raw, headers=headers), 401, "bad_signature")
    assert (events(), audits()) == (1, 1)
    raw, headers = callback(app, {**delivered, "order_id": other})
    _error(
        client.post("/carrier/callback", content=raw, headers=headers),
        400,
        "carrier_event_mismatch",
    )
    assert (events(), audits()) == (1, 2)
    raw, headers = callback(app, delivered, timestamp=int(time.time()) - 3600)
    _error(client.post("/carrier/callback", content=raw, headers=headers), 401, "bad_signature")
    assert (events(), audits()) == (1, 3)
    unknown = {**delivered, "shipment_id": str(int(sid) + 1_000_000_007)}
    raw, headers = callback(app, unknown)
    _error(
        client.post("/carrier/callback", content=raw, headers=headers), 404, "shipment_not_found"
    )
    assert (
        shop.scalar(
            "SELECT reason FROM carrier_audit WHERE shipment_id = :s", s=unknown["shipment_id"]
        )
        == "shipment_not_found"
    )
    # the body was altered after signing: refused as a bad signature
    raw, headers = callback(app, delivered)
    _error(
        client.post(
            "/carrier/callback", content=raw.replace(b"Memphis", b"Nowhere"), headers=headers
        ),
        401,
        "bad_signature",
    )
    assert (events(), audits()) == (1, 4)
    reasons = sorted(
        r[0] for r in shop.rows("SELECT reason FROM carrier_audit WHERE shipment_id = :s", s=sid)
    )
    assert reasons == [
        "bad_signature", "bad_signature", "carrier_event_mismatch", "stale_timestamp",
    ]  # fmt: skip
    for oid_ in (oid, other):
        assert shop.scalar("SELECT status FROM orders WHERE id = :o", o=oid_) in ("shipped", "paid")
    assert shop.scalar("SELECT status FROM orders WHERE id = :o", o=oid) == "shipped"
    assert shop.scalar("SELECT delivered_ms FROM orders WHERE id = :o", o=oid) is None
    assert shop.scalar("SELECT status FROM shipments WHERE id = :s", s=int(sid)) == "in_transit"
