"""The flash-sale acceptance run: 10,000 users make one purchase attempt each plus 1,000
duplicate attempts (same user, same Idempotency-Key) at 64 concurrency against 1,000
units; then the same with the owning inventory shard killed twice mid-run. Both must end
exactly: 1,000 successes and orders, nobody over the limit, remaining 0 and sold 1,000,
every order with its purchase record, conservation of the SKU in the database."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import pytest
import ray

from actors.inventory_client import shard_name
from raymall.hashing import shard_for
from tests.auth_helpers import TestUser
from tests.flash_helpers import Job, bulk_users, check_sale, create_sale, drive
from tests.order_helpers import Shop, restock

pytestmark = pytest.mark.e2e

USERS = 10_000
DUPLICATES = 1_000
QUANTITY = 1_000
CONCURRENCY = 64


def run_sale(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop, *, kills: tuple[int, ...] = ()
) -> None:
    sku = shop.sku(price_cents=5000)
    restock(client, admin.headers, sku, QUANTITY + 500)
    sale = create_sale(
        client, admin.headers, sku, quantity=QUANTITY, price_cents=990, payment_timeout_s=3600
    )
    users = bulk_users(shop, USERS)
    rng = random.Random(sale["id"])
    jobs = [Job(uid, token, f"buy-{uid}") for uid, token in users]
    jobs += [Job(uid, token, f"buy-{uid}") for uid, token in rng.sample(users, DUPLICATES)]
    rng.shuffle(jobs)
    shard = shard_for(sku, app.settings.inventory_shards)
    pending_kills = sorted(kills)
    killed: list[int] = []

    def started_ms() -> int:
        handle = ray.get_actor(shard_name(shard), namespace=app.settings.namespace)
        return int(ray.get(handle.check_alive.remote(), timeout=120)["started_ms"])

    first_start = started_ms()

    async def maybe_kill(done: int) -> None:
        if pending_kills and done >= pending_kills[0]:
            pending_kills.pop(0)
            handle = ray.get_actor(shard_name(shard), namespace=app.settings.namespace)
            ray.kill(handle, no_restart=False)
            killed.append(done)

    started = time.monotonic()
    outcomes = asyncio.run(
        drive(app.url, sale["id"], jobs, concurrency=CONCURRENCY, on_progress=maybe_kill)
    )
    elapsed = time.monotonic() - started
    retried = sum(o.tries > 1 for o in outcomes)
    print(f"{len(outcomes)} purchases in {elapsed:.1f} s, {retried} retried after a 503/429")
    assert len(killed) == len(kills)
    assert (started_ms() != first_start) == bool(kills)  # the shard really restarted
    assert len(outcomes) == USERS + DUPLICATES
    statuses = {o.status for o in outcomes}
    assert statuses <= {201, 409}, sorted(statuses)
    refusals = {o.body["error"]["code"] for o in outcomes if o.status == 409}
    assert refusals <= {"sold_out"}, refusals
    by_user: dict[int, set[str]] = {}
    for o in outcomes:
        if o.status == 201:
            by_user.setdefault(o.job.user_id, set()).add(o.body["order_id"])
    # a duplicate answers the first attempt's order, so each winner has exactly one order
    assert all(len(ids) == 1 for ids in by_user.values())
    order_ids = {oid for ids in by_user.values() for oid in ids}
    assert len(order_ids) == QUANTITY and len(by_user) == QUANTITY
    view = client.get(f"/flash-sales/{sale['id']}").json()
    assert view["remaining"] == 0 and view["sold"] == QUANTITY, view
    facts = check_sale(shop, sale["id"], sku)
    assert facts["orders"] == QUANTITY and facts["sold"] == QUANTITY
    assert facts["reserved"] == QUANTITY and facts["available"] == 500
    stored = {
        str(r[0])
        for r in shop.rows("SELECT order_id FROM flash_purchases WHERE sale_id = :s", s=sale["id"])
    }
    assert stored == order_ids


def test_ten_thousand_buyers_for_a_thousand_units_end_exactly(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    run_sale(app, client, admin, shop)


def test_the_same_sale_with_the_shard_killed_twice_ends_exactly(
    app: Any, client: httpx.Client, admin: TestUser, shop: Shop
) -> None:
    run_sale(app, client, admin, shop, kills=(300, 700))
