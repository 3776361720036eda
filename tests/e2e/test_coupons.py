"""Coupons end to end: the claim storm (2,000 users x 2 attempts + 200 keyed repeats at 64
concurrency on 500 coupons, limit 1), again with the owning shard killed twice; two orders
racing for one coupon; cancel and timeout give a coupon back, payment uses it; the wallet
and the database agree; bad input answers in the one error shape with its own code."""

from __future__ import annotations

import asyncio
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import ray

from actors.inventory_client import shard_name
from raymall.coupons.service import campaign_shard
from raymall.ids import now_ms
from tests.auth_helpers import TestUser
from tests.coupon_helpers import check_campaign, claim_storm, create_campaign
from tests.flash_helpers import Job, bulk_users
from tests.order_helpers import Shop, restock, wait_for

pytestmark = pytest.mark.e2e

USERS = 2_000
REPEATS = 200
TOTAL = 500
CONCURRENCY = 64


@pytest.fixture(scope="module")
def crowd(shop: Shop) -> list[tuple[int, str]]:
    return bulk_users(shop, USERS)


def storm(
    app: Any,
    client: httpx.Client,
    admin: TestUser,
    shop: Shop,
    crowd: list[tuple[int, str]],
    kills: tuple[int, ...] = (),
) -> None:
    campaign = create_campaign(client, admin.headers, total=TOTAL, per_user_limit=1)
    cid = campaign["id"]
    rng = random.Random(cid)
    jobs = [Job(uid, token, f"{tag}-{cid}-{uid}") for uid, token in crowd for tag in "ab"]
    rng.shuffle(jobs)
    repeats = rng.sample(jobs, REPEATS)
    shard = campaign_shard(cid, app.settings.inventory_shards)
    pending = sorted(kills)
    killed: list[int] = []

    def started_ms() -> int:
        handle = ray.get_actor(shard_name(shard), namespace=app.settings.namespace)
        return int(ray.get(handle.check_alive.remote(), timeout=120)["started_ms"])

    first_start = started_ms()

    async def maybe_kill(done: int) -> None:
        if pending and done >= pending[0]:
            pending.pop(0)
            handle = ray.get_actor(shard_name(shard), namespace=app.settings.namespace)
            ray.kill(handle, no_restart=False)
            killed.append(done)

    began = time.monotonic()
    first = asyncio.run(
        claim_storm(app.url, cid, jobs, concurrency=CONCURRENCY, on_progress=maybe_kill)
    )
    again = asyncio.run(claim_storm(app.url, cid, repeats, concurrency=CONCURRENCY))
    elapsed = time.monotonic() - began
    retried = sum(o.tries > 1 for o in first + again)
    print(f"{len(first) + len(again)} claims in {elapsed:.1f} s, {retried} retried after a 503")
    assert len(killed) == len(kills)
    assert (started_ms() != first_start) == bool(kills)

    assert {o.status for o in first + again} <= {201, 409}
    refusals = {o.body["error"]["code"] for o in first + again if o.status == 409}
    assert refusals <= {"coupons_sold_out", "coupon_limit_reached"}, refusals
    won = {(o.job.user_id, o.job.key): o.body["coupon_id"] for o in first if o.status == 201}
    assert len(won) == TOTAL
    assert len({uid for uid, _ in won}) == TOTAL  # nobody holds two
    # every repeat gets its first answer: the same coupon, or the same refusal
    answers = {(o.job.user_id, o.job.key): o for o in first}
    for o in again:
        was = answers[(o.job.user_id, o.job.key)]
        assert o.status == was.status, (o.body, was.body)
        if o.status == 201:
            assert o.body["coupon_id"] == was.body["coupon_id"] and o.body["replayed"]
        else:
            assert o.body["error"]["code"] == was.body["error"]["code"]
    facts = check_campaign(shop, cid)
    assert facts == {"coupons": TOTAL, "claimed": TOTAL, "users": TOTAL}
    stored = {
        str(r[0]) for r in shop.rows("SELECT id FROM user_coupons WHERE campaign_id = :c", c=cid)
    }
    assert stored == set(won.values())
    view = client.get(f"/admin/coupon-campaigns/{cid}", headers=admin.headers).json()
    assert view["claimed"] == TOTAL and view["remaining"] == 0
    assert view["coupons"]["available"] == TOTAL


def test_a_claim_storm_hands_out_exactly_the_total(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop, crowd: list[tuple[int, str]]
) -> None:
    storm(app, client, admin, shop, crowd)


def test_the_claim_storm_with_the_shard_killed_twice_is_just_as_exact(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop, crowd: list[tuple[int, str]]
) -> None:
    storm(app, client, admin, shop, crowd, kills=(800, 2_400))


# ---- coupons on orders ------------------------------------------------------------------------
def stocked(shop: Shop, client: httpx.Client, admin: TestUser, units: int, price: int) -> int:
    sku = shop.sku(price_cents=price)
    restock(client, admin.headers, sku, units)
    return sku


def claimed(client: httpx.Client, headers: dict[str, str], cid: int) -> str:
    resp = client.post(f"/coupon-campaigns/{cid}/claim", headers=headers)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["coupon_id"])


def order(
    client: httpx.Client, headers: dict[str, str], sku: int, coupon: str | None, qty: int = 1
) -> httpx.Response:
    body: dict[str, Any] = {"items": [{"sku_id": sku, "quantity": qty}]}
    if coupon is not None:
        body["coupon_id"] = coupon
    return client.post("/orders", json=body, headers=headers)


def coupon_state(shop: Shop, coupon: str) -> tuple[str, Any]:
    state, order_id = shop.rows(
        "SELECT state, order_id FROM user_coupons WHERE id = :c", c=int(coupon)
    )[0]
    return str(state), None if order_id is None else str(order_id)


def wallet_state(client: httpx.Client, headers: dict[str, str], coupon: str) -> str:
    items = client.get("/me/coupons", headers=headers).json()["items"]
    return str(next(i["state"] for i in items if i["id"] == coupon))


def test_two_orders_racing_for_one_coupon_exactly_one_gets_it_and_cancel_gives_it_back(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked(shop, client, admin, units=10, price=3_000)
    cid = create_campaign(client, admin.headers, total=5)["id"]
    _, headers = shop.customer()
    coupon = claimed(client, headers, cid)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: order(client, headers, sku, coupon), range(2)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409], [r.text for r in results]
    loser = next(r for r in results if r.status_code == 409)
    assert loser.json()["error"]["code"] == "coupon_unavailable"
    winner = next(r for r in results if r.status_code == 201).json()
    assert winner["total_cents"] == 2_500 and winner["discount_cents"] == 500
    assert winner["items"][0]["discount_cents"] == 500
    assert coupon_state(shop, coupon) == ("locked", winner["id"])
    held = client.get(f"/orders/{winner['id']}", headers=headers).json()
    assert held["coupon_ids"] == [coupon] and held["discount_cents"] == 500
    assert wallet_state(client, headers, coupon) == "locked"
    stock = shop.stock(sku)
    assert stock["reserved"] == 1 and stock["available"] == 9  # the loser's stock went back

    resp = client.post(f"/orders/{winner['id']}/cancel", headers=headers)
    assert resp.status_code == 200, resp.text
    assert coupon_state(shop, coupon) == ("available", None)
    assert wallet_state(client, headers, coupon) == "available"
    returned = shop.scalar(
        "SELECT COUNT(*) FROM outbox WHERE topic = 'coupon.returned' AND aggregate_id = :c",
        c=coupon,
    )
    assert returned == 1
    # usable again, and an order that pays uses it
    again = order(client, headers, sku, coupon)
    assert again.status_code == 201, again.text
    paid = again.json()
    pay = client.post(f"/orders/{paid['id']}/pay", json={}, headers=headers)
    assert pay.status_code in (200, 201, 202), pay.text
    wait_for(lambda: coupon_state(shop, coupon)[0] == "used", timeout_s=30)
    assert wallet_state(client, headers, coupon) == "used"
    assert order(client, headers, sku, coupon).json()["error"]["code"] == "coupon_unavailable"
    stats = client.get(f"/admin/coupon-campaigns/{cid}", headers=admin.headers).json()
    assert stats["coupons"]["used"] == 1 and stats["claimed"] == 1


def test_a_timed_out_order_gives_its_coupon_back(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked(shop, client, admin, units=3, price=2_000)
    cid = create_campaign(client, admin.headers, total=5)["id"]
    _, headers = shop.customer()
    coupon = claimed(client, headers, cid)
    placed = order(client, headers, sku, coupon)
    assert placed.status_code == 201, placed.text
    assert coupon_state(shop, coupon) == ("locked", placed.json()["id"])
    wait_for(lambda: coupon_state(shop, coupon) == ("available", None), timeout_s=60)
    final = client.get(f"/orders/{placed.json()['id']}", headers=headers).json()
    assert final["status"] == "cancelled" and final["cancel_reason"] == "timeout"
    assert wallet_state(client, headers, coupon) == "available"


def test_bad_coupon_input_answers_with_its_own_code(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    sku = stocked(shop, client, admin, units=5, price=1_000)
    _, headers = shop.customer()
    _, other = shop.customer()

    def code(resp: httpx.Response) -> str:
        body = resp.json()
        assert set(body["error"]) >= {"code", "message", "request_id"}, body
        return str(body["error"]["code"])

    assert code(client.post("/coupon-campaigns/999999999/claim", headers=headers)) == (
        "campaign_not_found"
    )
    early = create_campaign(client, admin.headers, total=5, starts_in_ms=600_000)["id"]
    assert code(client.post(f"/coupon-campaigns/{early}/claim", headers=headers)) == (
        "claim_not_started"
    )
    plain = create_campaign(client, admin.headers, total=5)["id"]
    foreign = claimed(client, other, plain)
    assert code(order(client, headers, sku, foreign)) == "coupon_not_owned"
    assert code(order(client, headers, sku, "123456789012")) == "coupon_not_found"
    later = create_campaign(
        client, admin.headers, total=5, valid_days=None, valid_from_ms=now_ms() + 600_000,
        valid_until_ms=now_ms() + 900_000,
    )["id"]  # fmt: skip
    assert code(order(client, headers, sku, claimed(client, headers, later))) == (
        "coupon_not_yet_valid"
    )
    ended = create_campaign(
        client, admin.headers, total=5, valid_days=None, valid_until_ms=now_ms() + 1_500
    )["id"]
    expiring = claimed(client, headers, ended)
    time.sleep(1.6)
    assert code(order(client, headers, sku, expiring)) == "coupon_expired"
    scoped = create_campaign(
        client, admin.headers, total=5, scope={"shop": False, "sku_ids": [sku + 10**9]}
    )["id"]
    assert code(order(client, headers, sku, claimed(client, headers, scoped))) == (
        "coupon_out_of_scope"
    )
    rich = create_campaign(
        client,
        admin.headers,
        total=5,
        rule={"kind": "amount_off", "amount_cents": 500, "min_spend_cents": 50_000},
    )["id"]
    assert code(order(client, headers, sku, claimed(client, headers, rich))) == (
        "coupon_below_threshold"
    )
    claimed(client, headers, plain)  # the one that applies
    quote = client.post(
        "/orders/quote", json={"items": [{"sku_id": sku, "quantity": 2}]}, headers=headers
    )
    assert quote.status_code == 200, quote.text
    q = quote.json()
    assert q["subtotal_cents"] == 2_000 and q["discount_cents"] == 500, q
    assert q["total_cents"] == 1_500 and len(q["coupon_ids"]) == 1
    reasons = {s["reason"] for s in q["skipped"]}
    assert {"below_threshold", "out_of_scope"} <= reasons, q["skipped"]
    limited = create_campaign(client, admin.headers, total=5)["id"]
    claimed(client, headers, limited)
    assert code(client.post(f"/coupon-campaigns/{limited}/claim", headers=headers)) == (
        "coupon_limit_reached"
    )
    bad = client.post(
        "/admin/coupon-campaigns",
        json={"rule": {"kind": "percent_off", "percent": 0}, "total": 1,
              "claim_starts_at_ms": 0, "claim_ends_at_ms": 1, "valid_days": 1},
        headers=admin.headers,
    )  # fmt: skip
    assert bad.status_code == 422 and code(bad) == "validation_error"
    assert client.post(f"/coupon-campaigns/{limited}/claim").status_code == 401
    # the owner-decided fields change through the campaign's shard
    _, third = shop.customer()
    off = client.post(f"/admin/coupon-campaigns/{limited}/deactivate", headers=admin.headers)
    assert off.status_code == 200 and off.json()["status"] == "inactive"
    assert code(client.post(f"/coupon-campaigns/{limited}/claim", headers=third)) == (
        "campaign_inactive"
    )
    on = client.post(f"/admin/coupon-campaigns/{limited}/activate", headers=admin.headers)
    assert on.status_code == 200 and on.json()["status"] == "claiming"
    shrink = client.patch(
        f"/admin/coupon-campaigns/{limited}", json={"total": 1}, headers=admin.headers
    )
    assert shrink.status_code == 200 and shrink.json()["total"] == 1, shrink.text
    assert code(client.post(f"/coupon-campaigns/{limited}/claim", headers=third)) == (
        "coupons_sold_out"
    )
    below = client.patch(
        f"/admin/coupon-campaigns/{limited}", json={"total": 1, "per_user_limit": 0},
        headers=admin.headers,
    )  # fmt: skip
    assert below.status_code == 422
    listed = {c["id"] for c in client.get("/coupon-campaigns").json()["items"]}
    assert limited in listed and early in listed


def test_a_code_redeems_once_per_customer_and_promotions_price_the_cart(
    client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    code = f"SAVE{random.randrange(10**9)}"
    cid = create_campaign(client, admin.headers, total=3, per_user_limit=2, code=code)["id"]
    _, headers = shop.customer()
    first = client.post("/me/coupons/redeem", json={"code": code}, headers=headers)
    again = client.post("/me/coupons/redeem", json={"code": code}, headers=headers)
    assert first.status_code == 201 and again.status_code == 201, (first.text, again.text)
    assert again.json()["coupon_id"] == first.json()["coupon_id"] and again.json()["replayed"]
    assert client.post(f"/coupon-campaigns/{cid}/claim", headers=headers).status_code == 404
    wrong = client.post("/me/coupons/redeem", json={"code": "NOPE-123"}, headers=headers)
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "coupon_code_invalid"

    sku = stocked(shop, client, admin, units=5, price=10_000)
    now = now_ms()
    promo = client.post(
        "/admin/promotions",
        json={"title": "tiers", "rule": {"kind": "tiers", "tiers": [
            {"spend_cents": 15_000, "off_cents": 1_000}, {"spend_cents": 30_000, "off_cents": 4_000}
        ]}, "scope": {"shop": False, "sku_ids": [sku]}, "starts_at_ms": now - 1_000,
            "ends_at_ms": now + 600_000},
        headers=admin.headers,
    )  # fmt: skip
    assert promo.status_code == 201, promo.text
    time.sleep(2.5)  # the pricer's copy of the running promotions
    client.put(f"/cart/items/{sku}", json={"quantity": 3}, headers=headers)
    cart = client.get("/cart", headers=headers).json()
    pricing = cart["pricing"]
    # 30,000 - 4,000 (tier) - 500 (the best coupon, on what is left) = 25,500
    assert pricing["subtotal_cents"] == 30_000 and pricing["total_cents"] == 25_500, pricing
    assert [a["kind"] for a in pricing["applied"]] == ["promotion", "coupon"]
    assert pricing["lines"][0]["discount_cents"] == 4_500
    placed = client.post(
        "/orders",
        json={"cart_sku_ids": [sku], "coupon_id": first.json()["coupon_id"]},
        headers=headers,
    )
    assert placed.status_code == 201, placed.text
    assert placed.json()["total_cents"] == 25_500 and placed.json()["discount_cents"] == 4_500
    items = shop.rows(
        "SELECT line_total_cents, discount_cents FROM order_items WHERE order_id = :o",
        o=int(placed.json()["id"]),
    )
    assert [tuple(int(v) for v in r) for r in items] == [(30_000, 4_500)]
    off = client.post(f"/admin/promotions/{promo.json()['id']}/deactivate", headers=admin.headers)
    assert off.status_code == 200 and off.json()["active"] is False
    pid = promo.json()["id"]
    assert client.delete(f"/admin/promotions/{pid}", headers=admin.headers).status_code == 204
    listed = client.get("/admin/promotions", headers=admin.headers).json()["items"]
    assert pid not in {p["id"] for p in listed}
    assert client.delete(f"/admin/promotions/{pid}", headers=admin.headers).status_code == 404
