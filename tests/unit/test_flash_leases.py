"""Sold-out leases between FlashService (the replica side) and the shard's desk, with no Ray:
the shard's own core runs in-process (``ShardBook`` committed by ``GroupCommitter``, each
batch written to SQLite through the shard's own store before it is answered: durable before
ack), and batches travel in the shard's wire format, as ``InventoryShard`` receives them.

What is checked: under a lease the replica refuses by itself and answers retries of the
purchases made (``Idempotency-Key``) from one snapshot of the sale's records, with no shard
call and no per-key lookup; a lease runs from the moment its request was sent; units
given back under a lease are held until every replica's lease has lapsed, and a purchase
made afterwards through another replica is replayed to its retry."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import pytest

from actors import flash_store
from actors.group_commit import GroupCommitter
from actors.inventory_store import InventoryStore
from actors.shard_book import ShardBook, load_ledger
from actors.wire import pack_batch, pack_results, unpack_batch, unpack_results
from raymall.db import make_engine, session_factory
from raymall.domain.flash_desk import FlashDesk
from raymall.domain.outcomes import raise_for
from raymall.domain.shard_ops import FlashReturn, Op, Release, Result
from raymall.errors import IdempotencyMismatch, SoldOut
from raymall.flash import service as service_module
from raymall.flash.returns import hold_key
from raymall.flash.service import FlashService
from raymall.ids import now_ms
from raymall.settings import Settings
from tests.flash_helpers import ManualClock
from tests.order_helpers import Shop

LEASE_S = 1.0


class InProcessShard:
    """An ``InventoryClient`` stand-in for shard 0: the shard's ``ShardBook`` over its
    ``InventoryStore`` (SQLite), committed by its ``GroupCommitter``; each call is packed
    and unpacked as on the wire."""

    def __init__(self, url: str, settings: Settings, clock: ManualClock) -> None:
        self.settings = settings
        self.store = InventoryStore(url, 0)
        self.book = ShardBook(
            settings, 0, self.store, load_ledger(self.store), run=asyncio.to_thread, clock=clock
        )
        self._committer: GroupCommitter[Op, Result] | None = None
        self.calls = 0

    @property
    def desk(self) -> FlashDesk:
        return self.book.desk

    def committer(self) -> GroupCommitter[Op, Result]:
        if self._committer is None:  # needs the test's running loop
            self._committer = GroupCommitter(
                self.book,
                lambda statements, fail: self.store.write_statements(statements, fail=fail),
                window_s=self.settings.group_commit_window_ms / 1000,
                max_ops=self.settings.group_commit_max_ops,
            )
        return self._committer

    def shard_of(self, sku_id: int) -> int:
        return 0

    async def send_batch(self, shard: int, ops: list[Op]) -> list[Result]:
        self.calls += 1
        results = await self.committer().submit(unpack_batch(pack_batch(ops)))
        return unpack_results(pack_results(results))

    async def submit(self, shard: int, op: Op) -> Result:
        return (await self.send_batch(shard, [op]))[0]

    async def release(self, key: str, sku_ids: Iterable[int]) -> None:
        code = await self.submit(0, Release(f"{key}@0"))
        raise_for(str(code), key=key)

    def close(self) -> None:
        if self._committer is not None:
            self._committer.task.cancel()
        self.store.dispose()


@pytest.fixture()
def world(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    settings = Settings(
        database_url=sqlite_url,
        redis_url="redis://unused",
        inventory_shards=1,
        flash_sold_out_ttl_s=LEASE_S,
        flash_batch_window_ms=0,
        flash_rate_user_per_s=0,
        flash_rate_ip_per_s=0,
        flash_rate_event_per_s=0,
    )
    clock = ManualClock()
    monkeypatch.setattr(service_module, "time", SimpleNamespace(monotonic=clock))
    engine = make_engine(sqlite_url, pool_size=2)
    shop = Shop(settings, engine=engine)
    shard = InProcessShard(sqlite_url, settings, clock)
    sessions = session_factory(engine)

    async def no_limits(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("every rate limit is off here")

    redis = SimpleNamespace(register_script=lambda source: no_limits)

    def replica() -> FlashService:
        flash = FlashService(settings, sessions, redis, shard)  # type: ignore[arg-type]
        lookups: list[Any] = []
        real = flash._lookup_batch

        async def counted(keys: Any) -> Any:
            lookups.append(list(keys))
            return await real(keys)

        flash._lookup_batch = counted  # type: ignore[method-assign]
        flash._lookups.fn = counted
        flash.lookups = lookups  # type: ignore[attr-defined]
        return flash

    yield SimpleNamespace(shop=shop, shard=shard, clock=clock, replica=replica)
    shard.close()
    engine.dispose()


async def make_sale(world: Any, flash: FlashService, quantity: int, limit: int = 1) -> int:
    sku = world.shop.sku(stock=quantity + 5)
    now = now_ms()
    sale = await flash.create(
        sku_id=sku,
        title="lease test",
        price_cents=990,
        quantity=quantity,
        per_user_limit=limit,
        starts_ms=now - 1_000,
        ends_ms=now + 600_000,
    )
    return int(sale["id"])


async def outcome(flash: FlashService, user: int, sale: int, key: str | None) -> Any:
    try:
        return (await flash.purchase(user, sale, key, None))["order_id"]
    except SoldOut:
        return "sold_out"


async def test_under_a_lease_retries_are_answered_from_one_snapshot_with_no_call(
    world: Any,
) -> None:
    flash = world.replica()
    sale = await make_sale(world, flash, 2)
    users = [world.shop.user() for _ in range(6)]
    first = await outcome(flash, users[0], sale, "a")
    last = await outcome(flash, users[1], sale, "b")  # the last unit: a lease comes with it
    assert "sold_out" not in (first, last)
    calls = world.shard.calls
    world.clock.t += LEASE_S * 0.9  # still within the lease

    jobs = [(users[0], "a"), (users[1], "b"), (users[2], "c"), (users[3], None)] * 5
    answers = await asyncio.gather(*(outcome(flash, u, sale, k) for u, k in jobs))
    assert answers == [first, last, "sold_out", "sold_out"] * 5
    assert world.shard.calls == calls  # no shard call
    assert flash.snapshot_loads == 1 and flash.lookups == []  # one read, no per-key lookup

    world.clock.t += LEASE_S * 0.2  # the lease has lapsed: the shard is asked again
    assert await outcome(flash, users[4], sale, "e") == "sold_out"
    assert world.shard.calls == calls + 1
    assert await outcome(flash, users[0], sale, "a") == first  # same records: same snapshot
    assert flash.snapshot_loads == 1


async def test_a_lease_runs_from_the_sending_of_its_request(world: Any) -> None:
    flash = world.replica()
    sale = await make_sale(world, flash, 1)
    buyer, other = world.shop.user(), world.shop.user()
    real = world.shard.send_batch

    async def slow(shard: int, ops: list[Any]) -> list[Any]:
        world.clock.t += 0.4  # the call takes 0.4 s before the shard decides
        return await real(shard, ops)

    world.shard.send_batch = slow
    sent_at = world.clock.t
    await outcome(flash, buyer, sale, "a")
    margin = service_module.LEASE_MARGIN_S + LEASE_S * service_module.LEASE_MARGIN_RATE
    assert flash._leases[sale][0] == pytest.approx(sent_at + LEASE_S - margin)
    assert world.shard.desk.books[sale].lease_until == pytest.approx(sent_at + 0.4 + LEASE_S)
    world.clock.t = sent_at + LEASE_S  # the replica's lease is over, the desk's is not
    calls = world.shard.calls
    assert await outcome(flash, other, sale, "b") == "sold_out"
    assert world.shard.calls == calls + 1


async def test_units_given_back_under_leases_sell_after_they_lapse_and_replay_anywhere(
    world: Any,
) -> None:
    one, two = world.replica(), world.replica()
    sale = await make_sale(world, one, 1)
    a, b, c = (world.shop.user() for _ in range(3))
    order = await outcome(one, a, sale, "a")  # the only unit: replica one holds a lease
    assert await outcome(two, b, sale, "b") == "sold_out"  # replica two gets one too
    lease_two = two._leases[sale][0]
    world.clock.t += 0.3
    hold = f"{hold_key(sale)}@0"
    op = FlashReturn(f"order:{order}@0", hold, sale, int(order))
    back = await world.shard.submit(0, op)
    assert back == "ok"
    # the unit is back in the hold, but leases run: a request that reaches the shard is
    # refused with no new lease, and the replicas' leases stay as they were
    world.clock.t = lease_two - 0.1
    assert await outcome(one, c, sale, "c") == "sold_out"  # (one's own lease: local)
    one._leases.pop(sale)
    assert await outcome(one, c, sale, "c") == "sold_out"  # asked the shard: held
    assert sale not in one._leases
    # every lease has lapsed: the unit sells, through replica one
    world.clock.t = lease_two + 0.01
    bought = await outcome(one, c, sale, "c")
    assert bought not in ("sold_out", order)
    # replica one read a snapshot of one record under its first lease; its new lease says
    # two, so a retry there reads the records again and finds the new purchase
    assert one.snapshot_loads == 1
    assert await outcome(one, c, sale, "c") == bought
    assert one.snapshot_loads == 2 and one.lookups == []
    # a retry of it through replica two (whose lease lapsed) finds it, and so does a retry
    # under the new lease replica two then holds, from a snapshot of the new records
    assert await outcome(two, c, sale, "c") == bought
    assert two._leases[sale][0] > world.clock.t
    assert await outcome(two, c, sale, "c") == bought
    assert await outcome(two, a, sale, "a") == order  # the given-back one replays too
    assert two.snapshot_loads == 1
    sold = world.shop.scalar("SELECT sold FROM flash_sales WHERE id = :s", s=sale)
    assert sold == 1


async def test_no_client_key_of_an_ordinary_order_can_collide_with_a_flash_order(
    world: Any,
) -> None:
    flash = world.replica()
    sale = await make_sale(world, flash, 3)
    buyer = world.shop.user()
    # An ordinary order whose client key is what a flash order's key could look like
    # (printable ASCII, as the order route accepts): it shares orders' unique (user, key).
    clashing = [f"flash:{sale}:k:x", f"flash{sale}k:x", f"flash_{sale}_k:x"]
    now = now_ms()
    with world.shop.engine.begin() as conn:
        for n, key in enumerate(clashing):
            conn.exec_driver_sql(
                "INSERT INTO orders (id, user_id, shard, kind, status, total_cents, currency,"
                " address, reservation_key, idempotency_key, created_ms, updated_ms)"
                " VALUES (?, ?, 0, 'normal', 'cancelled', 100, 'USD', '{}', ?, ?, ?, ?)",
                (900_000 + n, buyer, f"order:{900_000 + n}", key, now, now),
            )
    order_id = await outcome(flash, buyer, sale, "x")
    assert order_id != "sold_out"
    stored = world.shop.rows(
        "SELECT o.idempotency_key, p.idempotency_key FROM orders o"
        " JOIN flash_purchases p ON p.order_id = o.id WHERE o.id = :id",
        id=order_id,
    )
    assert stored == [(flash_store.order_key(sale, "k:x"), "k:x")]
    assert not re.fullmatch(r"[\x21-\x7e]+", stored[0][0])  # never a client's key
    long_key = "k:" + "~" * 100
    assert len(flash_store.order_key(2**63 - 1, long_key)) <= 128


async def test_a_key_retried_with_another_quantity_is_refused_under_a_lease_as_after_it(
    world: Any,
) -> None:
    flash = world.replica()
    sale = await make_sale(world, flash, 2, limit=2)
    buyer, other = world.shop.user(), world.shop.user()
    first = await outcome(flash, buyer, sale, "a")
    await outcome(flash, other, sale, "b")  # the last unit: a lease comes with it
    calls = world.shard.calls
    with pytest.raises(IdempotencyMismatch) as under_lease:
        await flash.purchase(buyer, sale, "a", None, 2)
    assert world.shard.calls == calls  # answered by the replica
    assert await outcome(flash, buyer, sale, "a") == first  # the same quantity: a replay
    world.clock.t += LEASE_S * 1.1  # the lease has lapsed: the shard answers
    with pytest.raises(IdempotencyMismatch) as from_shard:
        await flash.purchase(buyer, sale, "a", None, 2)
    assert world.shard.calls == calls + 1
    assert under_lease.value.details == from_shard.value.details == {"order_id": str(first)}


async def test_snapshots_are_dropped_with_their_lease_and_kept_only_under_one(
    world: Any,
) -> None:
    flash = world.replica()
    sale = await make_sale(world, flash, 1)
    buyer = world.shop.user()
    first = await outcome(flash, buyer, sale, "a")  # the last unit: a lease
    assert await outcome(flash, buyer, sale, "a") == first  # from the snapshot
    assert sale in flash._snapshots
    world.clock.t += LEASE_S + service_module.SNAPSHOT_KEEP_S + 1
    other = await make_sale(world, flash, 1)
    await outcome(flash, world.shop.user(), other, "b")  # another lease: old ones pruned
    assert sale not in flash._leases and sale not in flash._snapshots
    assert other in flash._leases
    loads = flash.snapshot_loads
    flash._leases.pop(other)  # a snapshot read whose lease was dropped meanwhile
    await flash._snapshot(other, 1)
    assert flash.snapshot_loads == loads + 1 and other not in flash._snapshots
