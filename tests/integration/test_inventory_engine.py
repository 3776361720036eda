"""The inventory engine on MariaDB with real Ray shards: hot-SKU contention, shard kills
during load, multi-shard rollback, expiry across restarts, replays after restarts,
rollback of a failed group commit, low-stock events and audited adjustments.

Every test ends by checking that the database agrees with the shards' memory.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import ray
import redis.asyncio as aioredis
from sqlalchemy import Engine, create_engine, text

from actors.inventory_client import InventoryClient, shard_name
from actors.inventory_shard import InventoryShard
from actors.registry import actor_options
from raymall.catalog.availability import CHANNEL, AvailabilityMirror, hash_key
from raymall.domain.shard_ops import Reserve
from raymall.errors import InvalidTransition, OutOfStock, Unavailable
from raymall.feed import Feed, scoped_channel
from raymall.hashing import shard_for
from raymall.ids import now_ms
from raymall.settings import Settings
from tests.conftest import SERVER_DB, make_mysql_database, needs_servers

pytestmark = [pytest.mark.integration, needs_servers]
SHARDS = 4


@dataclass
class Env:
    settings: Settings
    engine: Engine

    def handle(self, shard: int) -> Any:
        return ray.get_actor(shard_name(shard), namespace=self.settings.namespace)

    def client(self, **overrides: Any) -> InventoryClient:
        return InventoryClient(self.settings.model_copy(update=overrides))


@pytest.fixture(scope="module")
def env(ray_session: Settings) -> Iterator[Env]:
    assert SERVER_DB
    url, drop = make_mysql_database(SERVER_DB)
    settings = ray_session.model_copy(
        update={
            "database_url": url,
            "namespace": f"inv-it-{secrets.token_hex(3)}",
            "inventory_shards": SHARDS,
            "inventory_sweep_interval_s": 0.2,
            "inventory_retry_s": 60.0,
        }
    )
    cls = ray.remote(InventoryShard)
    handles = [
        cls.options(**actor_options(settings, shard_name(i))).remote(settings, i)
        for i in range(SHARDS)
    ]
    ray.get([h.check_alive.remote() for h in handles], timeout=120)
    engine = create_engine(url, isolation_level="READ COMMITTED")
    yield Env(settings, engine)
    for h in handles:
        ray.kill(h, no_restart=True)
    engine.dispose()
    drop()


def make_skus(env: Env, stocks: list[int], threshold: int = 0) -> list[int]:
    """Create SKUs with inventory rows holding ``stocks`` units, as the offline seed does."""
    tag = secrets.token_hex(4)
    now = now_ms()
    ids = []
    with env.engine.begin() as conn:
        cat = conn.execute(
            text(
                "INSERT INTO categories (name, slug, sort_order, created_ms, updated_ms) "
                "VALUES (:n, :s, 0, :t, :t)"
            ),
            {"n": tag, "s": f"c-{tag}", "t": now},
        ).lastrowid
        prod = conn.execute(
            text(
                "INSERT INTO products (title, description, category_id, attributes, images, "
                "status, min_price_cents, max_price_cents, sales_count, search_text, "
                "created_ms, updated_ms) VALUES (:n, '', :c, '{}', '[]', 'published', 100, "
                "100, 0, '', :t, :t)"
            ),
            {"n": tag, "c": cat, "t": now},
        ).lastrowid
        for i, qty in enumerate(stocks):
            sku = conn.execute(
                text(
                    "INSERT INTO skus (product_id, code, specs, price_cents, "
                    "low_stock_threshold, created_ms, updated_ms) "
                    "VALUES (:p, :c, '{}', 100, :th, :t, :t)"
                ),
                {"p": prod, "c": f"{tag}-{i}", "th": threshold, "t": now},
            ).lastrowid
            conn.execute(
                text(
                    "INSERT INTO inventory (sku_id, shard, total, available, reserved, sold, "
                    "version, updated_ms) VALUES (:s, :sh, :q, :q, 0, 0, 0, :t)"
                ),
                {"s": sku, "sh": shard_for(sku, SHARDS), "q": qty, "t": now},
            )
            ids.append(int(sku))
    return ids


def skus_on_distinct_shards(env: Env, stocks: list[int]) -> list[int]:
    """One SKU per shard 0..len(stocks)-1, with the given stock each."""
    wanted: dict[int, int] = {}
    while not all(i in wanted for i in range(len(stocks))):
        for sku in make_skus(env, [0] * 8):
            wanted.setdefault(shard_for(sku, SHARDS), sku)
    picked = [wanted[i] for i in range(len(stocks))]
    with env.engine.begin() as conn:
        for sku, qty in zip(picked, stocks, strict=True):
            conn.execute(
                text("UPDATE inventory SET total = :q, available = :q WHERE sku_id = :s"),
                {"q": qty, "s": sku},
            )
    return picked


def db_row(env: Env, sku: int) -> dict[str, int]:
    with env.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT total, available, reserved, sold, version FROM inventory WHERE sku_id = :s"
            ),
            {"s": sku},
        ).one()
    return dict(row._mapping)


def db_ops(env: Env, like: str) -> dict[str, tuple[str, dict[int, int]]]:
    with env.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT `key`, state, items FROM inventory_ops WHERE `key` LIKE :k"),
            {"k": like},
        ).all()
    return {k: (st, {int(a): b for a, b in json.loads(it).items()}) for k, st, it in rows}


def open_units(env: Env, sku: int) -> int:
    """Sum of the open reservations' units of ``sku`` in the ledger table."""
    shard = shard_for(sku, SHARDS)
    with env.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT items FROM inventory_ops WHERE shard = :sh AND state = 'reserved'"),
            {"sh": shard},
        ).all()
    return sum(json.loads(r[0]).get(str(sku), 0) for r in rows)


async def assert_memory_matches_database(env: Env, client: InventoryClient, sku: int) -> None:
    deadline = time.monotonic() + 60
    while True:  # a shard killed just before may still be restarting
        try:
            await env.handle(client.shard_of(sku)).drain.remote()
            break
        except ray.exceptions.ActorUnavailableError:
            assert time.monotonic() < deadline, "the shard did not come back within 60 s"
            await asyncio.sleep(0.2)
    memory = (await client.snapshot([sku]))[sku]
    row = db_row(env, sku)
    assert {k: memory[k] for k in row} == row
    assert row["total"] == row["available"] + row["reserved"] + row["sold"]
    assert min(row.values()) >= 0
    assert row["reserved"] == open_units(env, sku)


async def hot_sku_run(env: Env, kills: int) -> None:
    """64 callers, 20,000 reserve attempts of 1 unit on one SKU holding 10,000."""
    (sku,) = make_skus(env, [10_000])
    client = env.client()
    shard = client.shard_of(sku)
    tag = secrets.token_hex(3)
    keys = [f"hot-{tag}-{i}" for i in range(20_000)]
    outcome: dict[str, str] = {}
    todo = iter(keys)
    kill_at = [4_000, 11_000][:kills]
    killed: list[int] = []

    async def caller() -> None:
        for key in todo:
            while True:
                try:
                    await client.reserve(key, {sku: 1}, ttl_s=3600)
                    outcome[key] = "ok"
                except OutOfStock:
                    outcome[key] = "out"
                except Unavailable:  # not acked: retry with the same key
                    await asyncio.sleep(0.05)
                    continue
                break
            if kill_at and len(outcome) >= kill_at[0]:
                kill_at.pop(0)
                ray.kill(env.handle(shard), no_restart=False)
                killed.append(len(outcome))

    batches_before = (await env.handle(shard).stats.remote())["batches"]
    await asyncio.gather(*(caller() for _ in range(64)))
    assert len(killed) == kills
    if not kills:  # concurrent callers share group commits (loose bound: no timing)
        batches = (await env.handle(shard).stats.remote())["batches"] - batches_before
        assert 0 < batches <= 20_000 // 4
    acked = [k for k, v in outcome.items() if v == "ok"]
    assert len(outcome) == 20_000
    assert len(acked) == 10_000
    await assert_memory_matches_database(env, client, sku)
    assert db_row(env, sku) | {"version": 0} == {
        "total": 10_000,
        "available": 0,
        "reserved": 10_000,
        "sold": 0,
        "version": 0,
    }
    stored = db_ops(env, f"hot-{tag}-%")
    held = {k.rsplit("@", 1)[0] for k, (state, _) in stored.items() if state == "reserved"}
    assert held == set(acked), "every acked reservation is in the database, nothing else"
    assert all(items == {sku: 1} for _, items in stored.values())
    refused = {k.rsplit("@", 1)[0] for k, (state, _) in stored.items() if state == "rejected"}
    assert refused == {k for k, v in outcome.items() if v == "out"}


async def test_64_callers_on_a_hot_sku_take_exactly_its_stock(env: Env) -> None:
    await hot_sku_run(env, kills=0)


async def test_killing_the_shard_twice_during_the_load_keeps_every_invariant(env: Env) -> None:
    await hot_sku_run(env, kills=2)


async def test_a_failed_later_shard_leaks_no_reservation(env: Env) -> None:
    a, b, c = skus_on_distinct_shards(env, [5, 5, 5])
    client = env.client(inventory_retry_s=0.5)
    await env.handle(2).inject_commit_failures.remote(1_000)
    try:
        with pytest.raises(Unavailable):
            await client.reserve("multi-fail", {a: 1, b: 2, c: 1}, ttl_s=3600)
    finally:
        await env.handle(2).inject_commit_failures.remote(0)
    assert await client.availability([a, b, c]) == {a: 5, b: 5, c: 5}
    for sku in (a, b, c):
        await assert_memory_matches_database(env, client, sku)
    stored = db_ops(env, "multi-fail@%")
    assert {k: s for k, (s, _) in stored.items()} == {
        "multi-fail@0": "released",
        "multi-fail@1": "released",
    }  # shard 2 never committed anything (its release failed too, and had nothing to do)
    with pytest.raises(InvalidTransition):
        await client.reserve("multi-fail", {a: 1, b: 2, c: 1}, ttl_s=3600)


async def test_a_refusing_later_shard_releases_the_earlier_ones(env: Env) -> None:
    a, b, c = skus_on_distinct_shards(env, [5, 5, 0])
    client = env.client()
    with pytest.raises(OutOfStock) as err:
        await client.reserve("multi-out", {a: 1, b: 1, c: 1}, ttl_s=3600)
    assert err.value.details["sku_ids"] == [c]
    assert await client.availability([a, b, c]) == {a: 5, b: 5, c: 0}
    await client.reserve("multi-ok", {a: 2, b: 3}, ttl_s=3600)
    await client.confirm("multi-ok", [a, b])
    assert await client.availability([a, b]) == {a: 3, b: 2}
    for sku in (a, b, c):
        await assert_memory_matches_database(env, client, sku)


async def test_expiry_releases_reservations_after_a_restart(env: Env) -> None:
    (sku,) = make_skus(env, [10])
    client = env.client()
    await client.reserve("exp-1", {sku: 4}, ttl_s=1.5)
    await client.reserve("exp-keep", {sku: 1}, ttl_s=3600)
    assert (await client.availability([sku]))[sku] == 5
    ray.kill(env.handle(client.shard_of(sku)), no_restart=False)
    deadline = time.monotonic() + 30
    while True:
        try:
            if (await client.availability([sku]))[sku] == 9:
                break
        except Unavailable:  # reads give up quickly while the shard restarts
            pass
        assert time.monotonic() < deadline, "the expired reservation was never released"
        await asyncio.sleep(0.2)
    await assert_memory_matches_database(env, client, sku)
    stored = db_ops(env, "exp-%")
    assert {k: s for k, (s, _) in stored.items()} == {
        f"exp-1@{client.shard_of(sku)}": "released",
        f"exp-keep@{client.shard_of(sku)}": "reserved",
    }


async def test_replays_after_a_restart_answer_the_first_result(env: Env) -> None:
    (sku,) = make_skus(env, [1])
    client = env.client()
    await client.reserve("rp-win", {sku: 1}, ttl_s=3600)
    with pytest.raises(OutOfStock):
        await client.reserve("rp-lose", {sku: 1}, ttl_s=3600)
    await client.confirm("rp-win", [sku])
    ray.kill(env.handle(client.shard_of(sku)), no_restart=False)
    await client.adjust(f"rp-restock-{sku}", sku, 5, "restock")
    with pytest.raises(OutOfStock):  # refused the first time: refused again
        await client.reserve("rp-lose", {sku: 1}, ttl_s=3600)
    await client.reserve("rp-win", {sku: 1}, ttl_s=3600)  # no second unit taken
    await client.confirm("rp-win", [sku])
    with pytest.raises(InvalidTransition):
        await client.release("rp-win", [sku])
    await client.adjust(f"rp-restock-{sku}", sku, 5, "restock")  # no second restock
    row = db_row(env, sku)
    assert (row["total"], row["available"], row["reserved"], row["sold"]) == (6, 5, 0, 1)
    await assert_memory_matches_database(env, client, sku)


async def test_a_failed_group_commit_rolls_memory_back_and_acks_nothing(env: Env) -> None:
    (sku,) = make_skus(env, [3])
    client = env.client()
    shard = env.handle(client.shard_of(sku))
    before = await client.snapshot([sku])
    await shard.inject_commit_failures.remote(1)
    op = Reserve(f"fail-1@{client.shard_of(sku)}", {sku: 2}, None)
    with pytest.raises(Unavailable):
        await shard.submit.remote([op])
    assert await client.snapshot([sku]) == before
    assert db_ops(env, "fail-1@%") == {}
    assert await shard.submit.remote([op]) == ["ok"]
    await assert_memory_matches_database(env, client, sku)


async def test_a_batch_staged_on_a_failing_one_is_undone_then_committed(env: Env) -> None:
    """Two batches deep: a batch is applied on top of the one whose transaction is in
    flight. When that one fails, the batch on top is undone with it, queued again and
    committed on its own. (Repeated until the second call did arrive during the first's
    transaction, which the shard counts as a requeue.)"""
    client = env.client()
    requeued = False
    for attempt in range(20):
        (sku,) = make_skus(env, [5])
        index = client.shard_of(sku)
        shard = env.handle(index)
        before = (await shard.stats.remote())["requeued"]
        await shard.inject_commit_failures.remote(1)
        tag = f"pipe{attempt}-"
        first = [Reserve(f"{tag}a{i}@{index}", {sku: 1}, None) for i in range(3)]
        second = [Reserve(f"{tag}b{i}@{index}", {sku: 1}, None) for i in range(3)]
        results = await asyncio.gather(
            shard.submit.remote(first), shard.submit.remote(second), return_exceptions=True
        )
        assert isinstance(results[0], Exception) and "injected" in str(results[0])
        if isinstance(results[1], Exception):  # both calls were in the one failed batch
            assert "injected" in str(results[1]) and db_ops(env, f"{tag}%") == {}
            assert (await client.snapshot([sku]))[sku]["available"] == 5
            continue
        # on top of the first (2 units left) b2 would be refused; alone, all 3 fit
        assert results[1] == ["ok", "ok", "ok"]
        assert set(db_ops(env, f"{tag}%")) == {f"{tag}b{i}@{index}" for i in range(3)}
        assert (await client.snapshot([sku]))[sku]["reserved"] == 3
        await assert_memory_matches_database(env, client, sku)
        if (await shard.stats.remote())["requeued"] > before:
            requeued = True
            break
    assert requeued, "the second batch never arrived while the first was in flight"


async def test_stock_crossing_its_threshold_writes_one_low_stock_event(env: Env) -> None:
    (sku,) = make_skus(env, [12], threshold=10)
    client = env.client()
    await client.reserve("low-1", {sku: 1}, ttl_s=60)  # 11: above
    await client.reserve("low-2", {sku: 2}, ttl_s=60)  # 9: crosses
    await client.reserve("low-3", {sku: 1}, ttl_s=60)  # 8: already below
    with env.engine.connect() as conn:
        events = conn.execute(
            text("SELECT topic, payload FROM outbox WHERE aggregate_id = :s"), {"s": str(sku)}
        ).all()
    assert [(t, json.loads(p)["available"]) for t, p in events] == [("inventory.low_stock", 9)]


async def test_adjustments_are_audited_once_per_key(env: Env) -> None:
    (sku,) = make_skus(env, [2])
    client = env.client()
    await client.adjust(f"adj-a-{sku}", sku, 10, "restock", actor_id=7)
    await client.adjust(f"adj-a-{sku}", sku, 10, "restock", actor_id=7)
    with pytest.raises(OutOfStock):
        await client.adjust(f"adj-b-{sku}", sku, -13, "write-off")
    with env.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT delta, reason, actor_id FROM inventory_adjustments WHERE sku_id = :s"),
            {"s": sku},
        ).all()
    assert [tuple(r) for r in rows] == [(10, "restock", 7)]
    await assert_memory_matches_database(env, client, sku)


# ---- the availability read model -------------------------------------------------------
@pytest.fixture()
async def mirror(env: Env) -> AsyncIterator[AvailabilityMirror]:
    """A replica's mirror of what the shards publish, fed as a replica feeds it."""
    url = env.settings.redis_url
    assert url
    feed = Feed(url, name="availability-test")
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    mirror = AvailabilityMirror(
        redis, SHARDS, trust_s=1.0, owner=env.client(), connected=lambda: feed.connected
    )
    feed.subscribe(scoped_channel(url, CHANNEL), mirror.on_message, mirror.resync)
    await feed.start()
    assert await feed.wait_connected(10)
    yield mirror
    await feed.stop()
    await redis.aclose()


async def published(mirror: AvailabilityMirror, sku: int, value: int, limit_s: float) -> float:
    """Seconds until the mirror serves ``value`` for ``sku`` (fails after ``limit_s``)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        if mirror.local([sku])[0].get(sku) == value:
            return time.perf_counter() - started
        await asyncio.sleep(0.0005)
    raise AssertionError(f"sku {sku}: {mirror.local([sku])} never showed {value}")


async def test_the_read_model_follows_each_commit_and_a_restart(
    env: Env, mirror: AvailabilityMirror
) -> None:
    (sku,) = make_skus(env, [4])
    client = env.client()
    # a SKU created after the shard started: its first read asks the owner, who publishes it
    assert await mirror.availability([sku]) == {sku: 4}
    await published(mirror, sku, 4, 2.0)
    lags = []
    for i in range(4):
        await client.reserve(f"rm-{sku}-{i}", {sku: 1}, ttl_s=3600)
        lags.append(await published(mirror, sku, 3 - i, 1.0))
    with pytest.raises(OutOfStock):
        await client.reserve(f"rm-{sku}-x", {sku: 1}, ttl_s=3600)
    assert mirror.local([sku]) == ({sku: 0}, [])  # sold out shows at once, without the owner
    await client.release(f"rm-{sku}-0", [sku])
    lags.append(await published(mirror, sku, 1, 1.0))
    print(f"read model lag after ack: max {max(lags) * 1000:.1f} ms over {len(lags)} commits")
    # a restarted shard publishes its state again under a new epoch; the mirror reloads
    ray.kill(env.handle(client.shard_of(sku)), no_restart=False)
    await client.adjust(f"rm-adj-{sku}", sku, 5, "restock")
    await published(mirror, sku, 6, 5.0)
    await assert_memory_matches_database(env, client, sku)
    assert db_row(env, sku)["available"] == 6
    # the hash the shard writes holds what the database holds
    raw = await mirror.redis.hget(hash_key(client.shard_of(sku)), str(sku))
    assert int(raw) == 6


async def test_without_the_read_model_reads_ask_the_owner(env: Env) -> None:
    """A mirror whose feed is down (a read-model outage) answers nothing itself: every
    read goes to the owning shard, so a sold-out SKU is never shown in stock."""
    (sku,) = make_skus(env, [1])
    client = env.client()
    owner_asked: list[list[int]] = []

    class Owner:
        async def availability(self, sku_ids: list[int]) -> dict[int, int]:
            owner_asked.append(list(sku_ids))
            return await client.availability(sku_ids)

    redis = aioredis.Redis.from_url(env.settings.redis_url or "", decode_responses=True)
    mirror = AvailabilityMirror(redis, SHARDS, trust_s=1.0, owner=Owner(), connected=lambda: False)
    await mirror.resync()  # loads the hashes, but an unsubscribed mirror trusts none of them
    await client.reserve(f"down-{sku}", {sku: 1}, ttl_s=60)
    assert await mirror.availability([sku]) == {sku: 0}
    assert owner_asked == [[sku]]
    await redis.aclose()
