"""Flash sales over HTTP: events, refusals before the start and after the end, the local
sold-out flag, unpaid orders giving their unit back to the event, payment, rate limits and
bad input. Every purchase test checks the database (tests.flash_helpers.check_sale)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.auth_helpers import TestUser
from tests.flash_helpers import bulk_users, check_sale, create_sale
from tests.order_helpers import Shop, restock, wait_for

pytestmark = pytest.mark.e2e


def stocked(shop: Shop, client: httpx.Client, admin: TestUser, units: int) -> int:
    sku = shop.sku(price_cents=5000)
    restock(client, admin.headers, sku, units)
    return sku


def bearer(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def buy(client: httpx.Client, sale_id: int, token: str, key: str | None = None) -> httpx.Response:
    return client.post(f"/flash-sales/{sale_id}/purchase", headers=bearer(token, key))


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """Sum of a counter's samples whose labels include ``labels``."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_an_event_sets_its_quantity_aside_and_sells_at_the_flash_price(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked(shop, client, admin, 10)
    sale = create_sale(client, admin.headers, sku, quantity=4, price_cents=777)
    assert sale["remaining"] == 4 and sale["status"] == "active"
    assert shop.stock(sku) == {"total": 10, "available": 6, "reserved": 4, "sold": 0}
    # ordinary orders cannot take the event's units
    _, headers = shop.customer()
    too_many = client.post(
        "/orders", json={"items": [{"sku_id": sku, "quantity": 7}]}, headers=headers
    )
    assert too_many.status_code == 409, too_many.text
    (_, token), (_, other) = bulk_users(shop, 2)
    first = buy(client, sale["id"], token, "k1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["status"] == "pending_payment" and body["total_cents"] == 777
    again = buy(client, sale["id"], token, "k1")
    assert again.status_code == 201 and again.json()["order_id"] == body["order_id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    limited = buy(client, sale["id"], token, "k2")
    assert limited.status_code == 409
    assert limited.json()["error"]["code"] == "purchase_limit_exceeded"
    order = client.get(f"/orders/{body['order_id']}", headers=bearer(token)).json()
    assert order["kind"] == "flash" and order["total_cents"] == 777
    assert order["items"][0]["sku_id"] == sku and order["items"][0]["unit_price_cents"] == 777
    mine = client.get(f"/flash-sales/{sale['id']}/purchases/me", headers=bearer(token)).json()
    assert [p["order_id"] for p in mine["items"]] == [body["order_id"]]
    assert (
        client.get(f"/flash-sales/{sale['id']}/purchases/me", headers=bearer(other)).json()["items"]
        == []
    )
    view = client.get(f"/flash-sales/{sale['id']}").json()  # public
    assert view["sold"] == 1 and view["remaining"] == 3
    assert check_sale(shop, sale["id"], sku)["orders"] == 1
    listed = client.get("/admin/flash-sales", headers=admin.headers).json()["items"]
    assert any(s["id"] == sale["id"] for s in listed)


def test_refused_before_the_start_and_after_an_early_end_which_returns_the_rest(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked(shop, client, admin, 10)
    sale = create_sale(client, admin.headers, sku, quantity=5, starts_in_ms=3_600_000)
    assert sale["status"] == "scheduled"
    ((_, token),) = bulk_users(shop, 1)
    early = buy(client, sale["id"], token, "k")
    assert early.status_code == 409 and early.json()["error"]["code"] == "sale_not_started"
    ended = client.post(f"/admin/flash-sales/{sale['id']}/end", headers=admin.headers)
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "ended" and ended.json()["remaining"] == 0
    assert shop.stock(sku) == {"total": 10, "available": 10, "reserved": 0, "sold": 0}
    # a running sale ended early: its buyers keep their orders, the rest goes back
    running = create_sale(client, admin.headers, sku, quantity=5)
    ((_, buyer),) = bulk_users(shop, 1)
    assert buy(client, running["id"], buyer, "k").status_code == 201
    client.post(f"/admin/flash-sales/{running['id']}/end", headers=admin.headers)
    after = buy(client, running["id"], token, "k")
    assert after.status_code == 409 and after.json()["error"]["code"] == "sale_ended"
    assert shop.stock(sku) == {"total": 10, "available": 9, "reserved": 1, "sold": 0}
    check_sale(shop, running["id"], sku)
    # an event larger than the available stock is refused and leaves nothing behind
    now = client.post(
        "/admin/flash-sales",
        json={
            "sku_id": sku,
            "price_cents": 1,
            "quantity": 50,
            "starts_at_ms": 0,
            "ends_at_ms": 4 * 10**12,
        },
        headers=admin.headers,
    )
    assert now.status_code == 409 and now.json()["error"]["code"] == "out_of_stock"
    assert shop.stock(sku)["available"] == 9


def test_sold_out_is_answered_from_the_local_flag_without_a_shard_call(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked(shop, client, admin, 3)
    sale = create_sale(client, admin.headers, sku, quantity=3)
    users = bulk_users(shop, 33)
    for _, token in users[:3]:
        assert buy(client, sale["id"], token).status_code == 201
    shard_before = metric(client, "raymall_inventory_ops_total", kind="flash_buy")
    local_before = metric(client, "raymall_flash_sale_outcomes_total", outcome="sold_out_local")

    def attempt(user: tuple[int, str]) -> httpx.Response:
        return buy(client, sale["id"], user[1])

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(attempt, users[3:]))
    assert all(r.status_code == 409 for r in answers), [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers} == {"sold_out"}
    shard_calls = metric(client, "raymall_inventory_ops_total", kind="flash_buy") - shard_before
    local = metric(client, "raymall_flash_sale_outcomes_total", outcome="sold_out_local")
    local -= local_before
    # every refusal was either decided locally or seen by the shard, never both
    assert local >= 1 and local + shard_calls == 30, (local, shard_calls)
    assert check_sale(shop, sale["id"], sku)["sold"] == 3


def test_an_unpaid_flash_order_times_out_and_its_unit_returns_to_the_event(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked(shop, client, admin, 5)
    sale = create_sale(client, admin.headers, sku, quantity=1)
    (_, first), (_, second) = bulk_users(shop, 2)
    bought = buy(client, sale["id"], first, "k")
    assert bought.status_code == 201
    order_id = bought.json()["order_id"]
    assert buy(client, sale["id"], second, "k").json()["error"]["code"] == "sold_out"
    wait_for(
        lambda: (
            client.get(f"/orders/{order_id}", headers=bearer(first)).json()["status"] == "cancelled"
        ),
        timeout_s=60,
    )
    assert client.get(f"/flash-sales/{sale['id']}").json()["remaining"] == 1
    assert shop.stock(sku) == {"total": 5, "available": 4, "reserved": 1, "sold": 0}
    check_sale(shop, sale["id"], sku)
    # once the local sold-out flag lapses the returned unit sells again
    retry = wait_for(
        lambda: (r := buy(client, sale["id"], second, "k2")).status_code == 201 and r, 30
    )
    assert retry.json()["order_id"] != order_id
    assert check_sale(shop, sale["id"], sku)["live"] == 1


def test_paying_a_flash_order_sells_the_unit(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked(shop, client, admin, 2)
    sale = create_sale(client, admin.headers, sku, quantity=2, price_cents=1234)
    ((_, token),) = bulk_users(shop, 1)
    order_id = buy(client, sale["id"], token, "k").json()["order_id"]
    paying = client.post(f"/orders/{order_id}/pay", json={}, headers=bearer(token))
    assert paying.status_code == 202, paying.text
    wait_for(
        lambda: client.get(f"/orders/{order_id}", headers=bearer(token)).json()["status"] == "paid"
    )
    assert shop.stock(sku) == {"total": 2, "available": 0, "reserved": 1, "sold": 1}
    assert check_sale(shop, sale["id"], sku)["sku_sold"] == 1


def test_rate_limits_answer_429_with_retry_after_and_are_counted(
    client: httpx.Client, admin: TestUser, shop: Shop, app: Any
) -> None:
    sku = stocked(shop, client, admin, 100)
    sale = create_sale(client, admin.headers, sku, quantity=100, per_user_limit=100)
    ((_, token),) = bulk_users(shop, 1)
    denied_before = metric(
        client, "raymall_rate_limit_decisions_total", rule="flash_user", decision="denied"
    )
    burst = app.settings.flash_rate_user_burst

    def attempt(i: int) -> httpx.Response:
        return buy(client, sale["id"], token, f"r{i}")

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(attempt, range(burst + 20)))
    limited = [r for r in answers if r.status_code == 429]
    assert limited, [r.status_code for r in answers]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert {r.json()["error"]["code"] for r in limited} == {"rate_limited"}
    assert {r.status_code for r in answers} <= {201, 429}
    denied = metric(
        client, "raymall_rate_limit_decisions_total", rule="flash_user", decision="denied"
    )
    assert denied - denied_before == len(limited)
    assert check_sale(shop, sale["id"], sku)["orders"] == len(answers) - len(limited)


def test_bad_input_gets_clear_4xx(client: httpx.Client, admin: TestUser, shop: Shop) -> None:
    sku = stocked(shop, client, admin, 5)
    ((_, token),) = bulk_users(shop, 1)
    base = {"sku_id": sku, "price_cents": 100, "quantity": 1, "starts_at_ms": 0}
    for body, status in (
        ({**base, "ends_at_ms": 0}, 422),
        ({**base, "ends_at_ms": 10}, 422),  # in the past
        ({**base, "ends_at_ms": 4 * 10**12, "quantity": 0}, 422),
        ({**base, "ends_at_ms": 4 * 10**12, "sku_id": 2**62}, 404),
        ({**base, "ends_at_ms": 4 * 10**12, "price_cents": "1"}, 422),
    ):
        resp = client.post("/admin/flash-sales", json=body, headers=admin.headers)
        assert resp.status_code == status, (body, resp.text)
        assert "error" in resp.json()
    user_create = client.post(
        "/admin/flash-sales", json={**base, "ends_at_ms": 4 * 10**12}, headers=bearer(token)
    )
    assert user_create.status_code == 403
    assert buy(client, 2**62, token).status_code == 404
    assert client.post("/flash-sales/1/purchase").status_code == 401
    sale = create_sale(client, admin.headers, sku, quantity=1)
    bad_key = buy(client, sale["id"], token, "x" * 101)
    assert bad_key.status_code == 422
    bad_body = client.post(
        f"/flash-sales/{sale['id']}/purchase", json={"quantity": -1}, headers=bearer(token)
    )
    assert bad_body.status_code == 422
    assert client.get("/flash-sales/0").status_code == 422
    assert client.get(f"/flash-sales/{2**62}").status_code == 404
    check_sale(shop, sale["id"], sku)
