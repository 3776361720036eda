"""Changing the shard counts of the running app (stop-the-world, raymall.launcher.reshard):
4 -> 6 -> 3 inventory shards and 2 -> 3 -> 2 order shards between bursts of a flash sale,
with orders, holds, coupons and idempotency keys from before each change still working
after it, and every count checked exactly (in the database and in the shards' memory).

One scenario on the shared server, which it leaves as it found it (4 and 2 shards)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
import pytest

from raymall.hashing import shard_for
from raymall.launcher.reshard import reshard_app
from tests.auth_helpers import TestUser
from tests.coupon_helpers import check_campaign, create_campaign
from tests.flash_helpers import Job, bulk_users, check_sale, create_sale, drive
from tests.order_helpers import Shop, restock, wait_for

pytestmark = pytest.mark.e2e

FLASH_STOCK, QUANTITY = 120, 100
FIRST, SECOND, THIRD = 70, 60, 10  # buyers per burst: the second sells the sale out


def bearer(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def reshard(app: Any, shop: Shop, inventory: int, orders: int) -> None:
    reshard_app(app, inventory_shards=inventory, order_shards=orders)
    shop.settings = app.settings  # SKUs made from here on go to the new owners
    with httpx.Client(base_url=app.url, timeout=10) as probe:
        wait_for(lambda: probe.get("/readyz").status_code == 200, 60)


def burst(app: Any, sale_id: int, users: list[tuple[int, str]]) -> list[Any]:
    jobs = [Job(uid, token, f"b{secrets.token_hex(4)}") for uid, token in users]
    return asyncio.run(drive(app.url, sale_id, jobs, concurrency=32))


def check_owned(client: httpx.Client, admin: TestUser, shop: Shop, skus: list[int]) -> None:
    """Every SKU on its new shard, memory equal to the database and conserved; every
    order with the owner of its user. Sweepers may be settling orders that fell due
    during the change: the check waits (up to 30 s) for a moment with nothing in flight."""
    deadline = time.monotonic() + 30
    while (found := owned_problems(client, admin, shop, skus)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not found, found


def owned_problems(client: httpx.Client, admin: TestUser, shop: Shop, skus: list[int]) -> list:
    n, m = shop.settings.inventory_shards, shop.settings.order_shards
    found: list[Any] = []
    for sku in skus:
        resp = client.get(f"/admin/inventory/{sku}", headers=admin.headers)
        if resp.status_code != 200:
            found.append(resp.text)
            continue
        view = resp.json()
        mem = view["memory"]
        sums = shop.ledger_sums(sku)
        if not (
            view["shard"] == shard_for(sku, n)
            and view["in_sync"]
            and mem["total"] == mem["available"] + mem["reserved"] + mem["sold"]
            and (sums["reserved"], sums["confirmed"]) == (mem["reserved"], mem["sold"])
        ):
            found.append((view, sums))
    found += [
        (u, s)
        for u, s in shop.rows("SELECT DISTINCT user_id, shard FROM orders")
        if shard_for(int(u), m) != int(s)
    ]
    return found


def status(client: httpx.Client, token: str, order_id: str) -> str:
    return order_status(client, bearer(token), order_id)


def order_status(client: httpx.Client, headers: dict[str, str], order_id: str) -> str:
    return str(client.get(f"/orders/{order_id}", headers=headers).json()["status"])


def pay(client: httpx.Client, token: str, order_id: str) -> None:
    resp = client.post(f"/orders/{order_id}/pay", json={}, headers=bearer(token))
    assert resp.status_code == 202, resp.text
    wait_for(lambda: status(client, token, order_id) == "paid", 30)


def sale_counts(client: httpx.Client, sale_id: int) -> tuple[int, int]:
    view = client.get(f"/flash-sales/{sale_id}").json()
    return int(view["sold"]), int(view["remaining"])


def pick(skus: list[int], test: Any) -> int:
    return next(s for s in skus if test(s))


def test_resharding_4_6_3_between_flash_bursts_keeps_every_count_exact(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    assert (app.settings.inventory_shards, app.settings.order_shards) == (4, 2)
    try:
        _scenario(app, client, admin, shop)
    finally:
        if (app.settings.inventory_shards, app.settings.order_shards) != (4, 2):
            reshard(app, shop, 4, 2)
        shop.settings = app.settings


def _scenario(app: Any, client: httpx.Client, admin: TestUser, shop: Shop) -> None:
    made = [shop.sku(price_cents=2500) for _ in range(16)]
    moving = [s for s in made if len({shard_for(s, 4), shard_for(s, 6), shard_for(s, 3)}) == 3]
    flash = moving[0]  # its owner changes at each step
    slow = moving[1]  # a sale whose unpaid orders time out after the first change
    # an ordinary order of two SKUs on one shard that the change to 6 splits
    line_a = pick(made, lambda s: s not in (flash, slow))
    line_b = pick(
        made,
        lambda s: (
            s not in (flash, slow, line_a)
            and shard_for(s, 4) == shard_for(line_a, 4)
            and shard_for(s, 6) != shard_for(line_a, 6)
        ),
    )
    skus = [flash, slow, line_a, line_b]
    restock(client, admin.headers, flash, FLASH_STOCK)
    restock(client, admin.headers, slow, 10)
    restock(client, admin.headers, line_a, 5)
    restock(client, admin.headers, line_b, 5)
    sale = create_sale(client, admin.headers, flash, quantity=QUANTITY, payment_timeout_s=600)
    short = create_sale(client, admin.headers, slow, quantity=4, payment_timeout_s=12)
    campaign = create_campaign(client, admin.headers, total=3)

    # ---- 4 inventory shards, 2 order shards: the first burst -----------------------------
    first_users = bulk_users(shop, FIRST)
    first = burst(app, sale["id"], first_users)
    assert [o.status for o in first] == [201] * FIRST, {o.status for o in first}
    unpaid = [bulk_users(shop, 1)[0] for _ in range(2)]
    short_orders = []
    for _, token in unpaid:
        resp = client.post(f"/flash-sales/{short['id']}/purchase", headers=bearer(token, "s"))
        assert resp.status_code == 201, resp.text
        short_orders.append(resp.json()["order_id"])
    (_, claim_token), (_, late_token) = bulk_users(shop, 2)
    claim = client.post(
        f"/coupon-campaigns/{campaign['id']}/claim", headers=bearer(claim_token, "c1")
    )
    assert claim.status_code == 201, claim.text
    assert check_sale(shop, sale["id"], flash)["live"] == FIRST
    check_owned(client, admin, shop, skus)
    _, buyer_headers = shop.customer()  # its order times out after the change
    two_lines = client.post(
        "/orders",
        json={"items": [{"sku_id": line_a, "quantity": 2}, {"sku_id": line_b, "quantity": 3}]},
        headers=buyer_headers,
    )
    assert two_lines.status_code == 201, two_lines.text

    # ---- 6 and 3 ----------------------------------------------------------------------------
    reshard(app, shop, 6, 3)
    check_owned(client, admin, shop, skus)
    assert check_sale(shop, sale["id"], flash)["live"] == FIRST
    # orders placed before the change: paid, or timed out and given back
    for outcome in first[:3]:
        pay(client, outcome.job.token, outcome.body["order_id"])
    for (_, token), order_id in zip(unpaid, short_orders, strict=True):
        wait_for(lambda t=token, o=order_id: status(client, t, o) == "cancelled", 60)
    wait_for(lambda: sale_counts(client, short["id"]) == (0, 4), 30)
    check_sale(shop, short["id"], slow)
    two_id = two_lines.json()["id"]
    wait_for(lambda: order_status(client, buyer_headers, two_id) == "cancelled", 60)
    for sku in (line_a, line_b):
        assert shop.stock(sku) == {"total": 5, "available": 5, "reserved": 0, "sold": 0}
    # its reservation was split between the two new owners, and each part released
    parts = shop.rows(
        "SELECT `key`, state FROM inventory_ops WHERE `key` LIKE :k", k=f"order:{two_id}@%"
    )
    assert dict(parts) == {
        f"order:{two_id}@{shard_for(line_a, 6)}": "released",
        f"order:{two_id}@{shard_for(line_b, 6)}": "released",
    }, parts
    # idempotency keys from before: the same purchase, the same coupon
    again = first[3]
    replay = client.post(
        f"/flash-sales/{sale['id']}/purchase", headers=bearer(again.job.token, again.job.key)
    )
    assert replay.status_code == 201 and replay.json()["order_id"] == again.body["order_id"]
    claim_again = client.post(
        f"/coupon-campaigns/{campaign['id']}/claim", headers=bearer(claim_token, "c1")
    )
    assert claim_again.json()["coupon_id"] == claim.json()["coupon_id"], claim_again.text
    # the second burst sells the rest exactly
    second = burst(app, sale["id"], bulk_users(shop, SECOND))
    won = [o for o in second if o.status == 201]
    assert len(won) == QUANTITY - FIRST, sorted({o.status for o in second})
    assert {o.body["error"]["code"] for o in second if o.status != 201} == {"sold_out"}
    assert sale_counts(client, sale["id"]) == (QUANTITY, 0)
    # an order of a user on order shard 2, which the next change removes
    owner2 = next(u for u in (shop.customer() for _ in range(40)) if shard_for(u[0], 3) == 2)
    doomed = client.post(
        "/orders", json={"items": [{"sku_id": line_a, "quantity": 1}]}, headers=owner2[1]
    )
    assert doomed.status_code == 201, doomed.text

    # ---- 3 and 2 ----------------------------------------------------------------------------
    reshard(app, shop, 3, 2)
    check_owned(client, admin, shop, skus)
    doomed_id = doomed.json()["id"]
    wait_for(lambda: order_status(client, owner2[1], doomed_id) == "cancelled", 60)
    for outcome in won[:3]:
        pay(client, outcome.job.token, outcome.body["order_id"])
    third = burst(app, sale["id"], bulk_users(shop, THIRD))
    assert {o.body["error"]["code"] for o in third} == {"sold_out"}
    more = [
        client.post(f"/coupon-campaigns/{campaign['id']}/claim", headers=bearer(t, "c"))
        for t in (late_token, *(t for _, t in bulk_users(shop, 3)))
    ]
    assert [r.status_code for r in more].count(201) == 2, [r.text for r in more]
    assert check_campaign(shop, campaign["id"])["claimed"] == 3
    # the counts, exactly: 100 acknowledged purchases, 100 orders, 6 of them paid
    result = check_sale(shop, sale["id"], flash)
    assert result["orders"] == result["live"] == result["sold"] == QUANTITY, result
    assert result["sku_sold"] == 6, result
    assert shop.stock(flash) == {
        "total": FLASH_STOCK,
        "available": FLASH_STOCK - QUANTITY,
        "reserved": QUANTITY - 6,
        "sold": 6,
    }
    assert sale_counts(client, sale["id"]) == (QUANTITY, 0)
    acked = {o.body["order_id"] for o in first + won}
    assert len(acked) == QUANTITY and all(
        shop.scalar("SELECT COUNT(*) FROM orders WHERE id = :o", o=int(oid)) == 1 for oid in acked
    )
    assert shop.stock(line_a) == {"total": 5, "available": 5, "reserved": 0, "sold": 0}
    check_owned(client, admin, shop, skus)
