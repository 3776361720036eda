"""The after-sales journey of issue #25, end to end over HTTP against the running app, with
money and stock checked at every step in the database and in the API:

order 2 lines with a shipping fee -> pay -> ship -> the carrier's tracking events ->
delivered -> return 1 unit of 1 line -> approve -> received (restocked) -> a partial refund
of exactly that unit's paid amount -> review the other line.

Money (integer cents): the order's total is its lines plus the shipping fee; the payment
takes exactly that; after the return the payment, the order and the returned line each show
the one unit's price refunded, and nothing else moved. Stock (per SKU): ``total =
available + reserved + sold`` at every step; the sale moves units from reserved to sold, and
the received return puts the one unit back on sale."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from tests.auth_helpers import TestUser
from tests.e2e.test_orders_flow import buyer, product, status
from tests.order_helpers import Shop, wait_for

pytestmark = pytest.mark.e2e

KETTLE, MUG, FEE = 2_500, 1_200, 700  # unit prices and the shipping fee, cents
CARRIER_STEPS = ["picked_up", "in_transit", "out_for_delivery", "delivered"]


def error(resp: httpx.Response, status_code: int, code: str) -> None:
    assert resp.status_code == status_code, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body


def stock(shop: Shop, sku: int) -> dict[str, int]:
    s = shop.stock(sku)
    assert s["total"] == s["available"] + s["reserved"] + s["sold"], s  # conservation
    return s


def money(shop: Shop, oid: str) -> dict[str, Any]:
    """The order's money as the database holds it."""
    order = shop.rows(
        "SELECT status, total_cents, shipping_cents, refunded_cents FROM orders WHERE id = :o",
        o=int(oid),
    )[0]
    payments = shop.rows(
        "SELECT status, amount_cents, refunded_cents FROM payments WHERE order_id = :o",
        o=int(oid),
    )
    lines = shop.rows(
        "SELECT id, quantity, line_total_cents, discount_cents, shipped_quantity,"
        " returned_quantity, refunded_cents FROM order_items WHERE order_id = :o ORDER BY id",
        o=int(oid),
    )
    refunds = shop.rows(
        "SELECT status, amount_cents FROM refunds WHERE order_id = :o ORDER BY created_ms",
        o=int(oid),
    )
    return {
        "status": order[0],
        "total": int(order[1]),
        "shipping": int(order[2]),
        "refunded": int(order[3]),
        "payments": [(p[0], int(p[1]), int(p[2])) for p in payments],
        "lines": {int(r[0]): tuple(int(x) for x in r[1:]) for r in lines},
        "refunds": [(r[0], int(r[1])) for r in refunds],
    }


def view(client: httpx.Client, user: TestUser, oid: str) -> dict[str, Any]:
    resp = client.get(f"/orders/{oid}", headers=user.headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_order_ship_deliver_return_refund_and_review(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    tag = secrets.token_hex(3)
    method = client.post(
        "/admin/shipping-methods",
        json={"code": f"std-{tag}", "name": f"Standard {tag}", "fee_cents": FEE},
        headers=admin.headers,
    )
    assert method.status_code == 201, method.text
    kettle = product(client, admin, price_cents=KETTLE, stock=5)
    mug = product(client, admin, price_cents=MUG, stock=4)
    k, m = kettle["sku_id"], mug["sku_id"]
    alice = buyer(client)

    # ---- order 2 lines (2 kettles, 1 mug) with the shipping fee ----------------------------
    goods = 2 * KETTLE + MUG
    placed = client.post(
        "/orders",
        json={
            "items": [{"sku_id": k, "quantity": 2}, {"sku_id": m, "quantity": 1}],
            "address_id": alice.extra["address_id"],
            "shipping_method_id": method.json()["id"],
        },
        headers={**alice.headers, "Idempotency-Key": f"journey-{tag}"},
    )
    assert placed.status_code == 201, placed.text
    oid = placed.json()["id"]
    assert (placed.json()["total_cents"], placed.json()["shipping_cents"]) == (goods + FEE, FEE)
    order = view(client, alice, oid)
    by_sku = {item["sku_id"]: item for item in order["items"]}
    k_line, m_line = by_sku[k]["id"], by_sku[m]["id"]
    db = money(shop, oid)
    assert (db["status"], db["total"], db["shipping"], db["refunded"]) == (
        "pending_payment", goods + FEE, FEE, 0
    )  # fmt: skip
    assert db["lines"][k_line][:3] == (2, 2 * KETTLE, 0)
    assert db["lines"][m_line][:3] == (1, MUG, 0)
    assert stock(shop, k) == {"total": 5, "available": 3, "reserved": 2, "sold": 0}
    assert stock(shop, m) == {"total": 4, "available": 3, "reserved": 1, "sold": 0}

    # ---- pay: the provider takes exactly the total ----------------------------------------
    paying = client.post(f"/orders/{oid}/pay", json={}, headers=alice.headers)
    assert paying.status_code == 202 and paying.json()["amount_cents"] == goods + FEE
    wait_for(lambda: status(client, alice, oid) == "paid")
    db = money(shop, oid)
    assert db["payments"] == [("succeeded", goods + FEE, 0)] and db["refunded"] == 0
    assert stock(shop, k) == {"total": 5, "available": 3, "reserved": 0, "sold": 2}
    assert stock(shop, m) == {"total": 4, "available": 3, "reserved": 0, "sold": 1}

    # ---- ship every line with the (simulated) carrier -----------------------------------
    carrier = app.settings.carrier_name
    tracking = f"TRK{tag.upper()}{secrets.token_hex(4).upper()}"
    shipped = client.post(
        f"/admin/orders/{oid}/shipments",
        json={"carrier": carrier, "tracking_number": tracking},
        headers=admin.headers,
    )
    assert shipped.status_code == 201, shipped.text
    assert shipped.json()["order"]["status"] == "shipped"
    db = money(shop, oid)
    assert {line: row[3] for line, row in db["lines"].items()} == {k_line: 2, m_line: 1}
    assert db["payments"] == [("succeeded", goods + FEE, 0)]
    assert stock(shop, k)["sold"] == 2 and stock(shop, m)["sold"] == 1

    # ---- the carrier's signed tracking events, then delivered ---------------------------
    wait_for(lambda: status(client, alice, oid) == "delivered", timeout_s=60)
    order = view(client, alice, oid)
    assert order["delivered_ms"] and order["shipping_cents"] == FEE
    (shipment,) = order["shipments"]
    assert (shipment["carrier"], shipment["tracking_number"]) == (carrier, tracking)
    assert [e["status"] for e in shipment["events"]] == CARRIER_STEPS
    assert shop.scalar(
        "SELECT COUNT(*) FROM shipment_events e JOIN shipments s ON s.id = e.shipment_id"
        " WHERE s.order_id = :o",
        o=int(oid),
    ) == len(CARRIER_STEPS)
    db = money(shop, oid)
    assert (db["status"], db["total"], db["refunded"]) == ("delivered", goods + FEE, 0)
    assert stock(shop, k) == {"total": 5, "available": 3, "reserved": 0, "sold": 2}

    # ---- return 1 of the 2 kettles (asking for 2 more than bought is refused) -------------
    too_many = client.post(
        f"/orders/{oid}/returns",
        json={"lines": [{"order_item_id": str(k_line), "quantity": 3}], "reason": "damaged"},
        headers=alice.headers,
    )
    error(too_many, 409, "return_quantity_exceeded")
    asked = client.post(
        f"/orders/{oid}/returns",
        json={
            "lines": [{"order_item_id": str(k_line), "quantity": 1}],
            "reason": "damaged",
            "note": "the lid is cracked",
        },
        headers={**alice.headers, "Idempotency-Key": f"rma-{tag}"},
    )
    assert asked.status_code == 201, asked.text
    rma = asked.json()
    assert rma["status"] == "requested"
    assert [(i["order_item_id"], i["quantity"]) for i in rma["items"]] == [(str(k_line), 1)]
    approved = client.post(f"/admin/returns/{rma['id']}/approve", headers=admin.headers)
    assert approved.status_code == 200 and approved.json()["status"] == "approved", approved.text
    # nothing moved yet: no refund, no stock back
    assert money(shop, oid)["refunds"] == [] and stock(shop, k)["available"] == 3

    # ---- received: the unit goes back on sale, and exactly its paid amount is refunded ----
    received = client.post(f"/admin/returns/{rma['id']}/receive", headers=admin.headers)
    assert received.status_code == 200, received.text
    wait_for(
        lambda: (
            client.get(f"/returns/{rma['id']}", headers=alice.headers).json()["status"]
            == "refunded"
        )
    )
    assert stock(shop, k) == {"total": 6, "available": 4, "reserved": 0, "sold": 2}
    assert stock(shop, m) == {"total": 4, "available": 3, "reserved": 0, "sold": 1}
    db = money(shop, oid)
    assert db["refunds"] == [("succeeded", KETTLE)]
    assert db["payments"] == [("succeeded", goods + FEE, KETTLE)]
    assert (db["status"], db["total"], db["refunded"]) == ("delivered", goods + FEE, KETTLE)
    # (quantity, line total, discount, shipped, returned, refunded) per line
    assert db["lines"][k_line] == (2, 2 * KETTLE, 0, 2, 1, KETTLE)
    assert db["lines"][m_line] == (1, MUG, 0, 1, 0, 0)
    refunds = client.get(f"/orders/{oid}/refunds", headers=alice.headers)
    assert refunds.status_code == 200, refunds.text
    assert refunds.json()["refunded_cents"] == KETTLE
    assert refunds.json()["left_cents"] == goods + FEE - KETTLE
    rma = client.get(f"/returns/{rma['id']}", headers=alice.headers).json()
    assert rma["refund_cents"] == KETTLE and rma["items"][0]["refund_cents"] == KETTLE
    assert [h["to_status"] for h in rma["history"]] == [
        "requested", "approved", "received", "refunded"
    ]  # fmt: skip
    # a refund larger than what is left is refused, and changes nothing
    error(
        client.post(
            f"/admin/orders/{oid}/refunds",
            json={"amount_cents": goods + FEE - KETTLE + 1, "reason": "goodwill"},
            headers={**admin.headers, "Idempotency-Key": f"too-much-{tag}"},
        ),
        409,
        "refund_exceeds_remaining",
    )
    assert money(shop, oid)["payments"] == [("succeeded", goods + FEE, KETTLE)]

    # ---- review the other line --------------------------------------------------------
    reviewed = client.post(
        f"/orders/{oid}/items/{m_line}/review",
        json={"rating": 5, "text": "Holds a whole pot of tea."},
        headers=alice.headers,
    )
    assert reviewed.status_code == 201, reviewed.text
    error(
        client.post(
            f"/orders/{oid}/items/{m_line}/review", json={"rating": 1}, headers=alice.headers
        ),
        409,
        "already_reviewed",
    )
    detail = client.get(f"/products/{mug['product_id']}").json()
    assert (detail["rating_count"], detail["rating_average"]) == (1, 5.0)
    # the review changed no money and no stock
    db = money(shop, oid)
    assert db["payments"] == [("succeeded", goods + FEE, KETTLE)] and db["refunded"] == KETTLE
    assert stock(shop, k) == {"total": 6, "available": 4, "reserved": 0, "sold": 2}
    assert stock(shop, m) == {"total": 4, "available": 3, "reserved": 0, "sold": 1}
