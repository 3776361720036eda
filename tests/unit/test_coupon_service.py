"""The replica's coupon service over a real shard book on SQLite (no Ray): claims go to the
shard in batches, a sold-out lease makes the replica refuse on its own, and a keyed repeat
refused locally still gets its first answer (its coupon, or the limit) from one snapshot of
the campaign's claims."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import sessionmaker

from actors.shard_book import ShardBook
from raymall.coupons.service import RENEW_S, CouponService
from raymall.domain.shard_ops import CouponUpdate
from raymall.errors import (
    ClaimNotStarted,
    CouponLimitReached,
    CouponsSoldOut,
)
from raymall.ids import now_ms
from tests.unit.test_coupon_book import new_campaign
from tests.unit.test_shard_book import World


class Shards:
    """One in-process shard (the book), as the inventory client reaches it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.book: ShardBook = world.book()
        self.calls = 0

    def shard_of(self, sku_id: int) -> int:
        return 0

    async def send_batch(self, shard: int, ops: list[Any]) -> list[Any]:
        self.calls += 1
        return await self.world.commit(self.book, ops)

    async def submit(self, shard: int, op: Any) -> Any:
        return (await self.send_batch(shard, [op]))[0]


class Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def world(sqlite_url: str) -> Iterator[World]:
    w = World(sqlite_url)
    yield w
    w.store.dispose()
    w.engine.dispose()


async def active(world: World, shards: Shards, total: int, limit: int, **kw: Any) -> int:
    cid = new_campaign(world, total=total, limit=limit)
    now = now_ms()
    starts = kw.get("starts", now - 1_000)
    await shards.submit(0, CouponUpdate(cid, total, limit, starts, now + 600_000, True))
    return cid


async def test_claims_sell_out_then_the_replica_answers_alone(world: World) -> None:
    shards, clock = Shards(world), Clock()
    svc = CouponService(sessionmaker(world.engine), shards, 1, window_s=0, clock=clock)
    cid = await active(world, shards, total=2, limit=1)
    first = await svc.claim(1, cid, "k")
    assert first["replayed"] is False and first["coupon_id"]
    again = await svc.claim(1, cid, "k")
    assert again["coupon_id"] == first["coupon_id"] and again["replayed"]
    with pytest.raises(CouponLimitReached):
        await svc.claim(1, cid, "other")
    results = await asyncio.gather(
        svc.claim(2, cid, "k"), svc.claim(3, cid, "k"), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["CouponsSoldOut", "dict"]
    calls = shards.calls
    # under the lease: no shard call; a repeat gets its coupon, a user at the limit the limit
    assert (await svc.claim(1, cid, "k"))["coupon_id"] == first["coupon_id"]
    with pytest.raises(CouponLimitReached):
        await svc.claim(1, cid, "third")
    with pytest.raises(CouponsSoldOut):
        await svc.claim(9, cid, "k")
    with pytest.raises(CouponsSoldOut):
        await svc.claim(9, cid, None)
    assert shards.calls == calls and svc.snapshot_loads == 1
    clock.t += 5  # the lease has ended: the shard decides again (and renews it)
    with pytest.raises(CouponsSoldOut):
        await svc.claim(9, cid, "k")
    assert shards.calls == calls + 1
    wallet = await svc.wallet(1)
    assert [c["id"] for c in wallet] == [first["coupon_id"]]
    assert wallet[0]["state"] == "available"


async def test_one_claim_renews_a_lease_before_it_ends_while_the_rest_stay_local(
    world: World,
) -> None:
    shards, clock = Shards(world), Clock()
    svc = CouponService(sessionmaker(world.engine), shards, 1, window_s=0, clock=clock)
    cid = await active(world, shards, total=1, limit=1)
    await svc.claim(1, cid, "k")  # the last coupon: its answer carries the lease
    calls = shards.calls
    with pytest.raises(CouponsSoldOut):
        await svc.claim(2, cid, "k")
    assert shards.calls == calls  # refused here
    clock.t += 1.0 - RENEW_S + 0.05  # the lease ends soon: one claim renews it
    results = await asyncio.gather(
        *(svc.claim(u, cid, "k") for u in (3, 4, 5, 1)), return_exceptions=True
    )
    assert shards.calls == calls + 1
    assert [type(r).__name__ for r in results[:3]] == ["CouponsSoldOut"] * 3
    assert isinstance(results[3], dict) and results[3]["replayed"]  # a repeat: its coupon
    clock.t += RENEW_S  # past the first lease, within the renewed one
    with pytest.raises(CouponsSoldOut):
        await svc.claim(6, cid, None)
    assert shards.calls == calls + 1
    clock.t += 5  # every lease has ended: the shard decides again
    with pytest.raises(CouponsSoldOut):
        await svc.claim(6, cid, None)
    assert shards.calls == calls + 2


async def test_a_claim_before_the_window_is_refused_without_the_shard(world: World) -> None:
    shards = Shards(world)
    svc = CouponService(sessionmaker(world.engine), shards, 1, window_s=0)
    cid = new_campaign(world, total=2, limit=1)  # opened 1 s ago, but inactive
    campaign = await svc.campaign(cid)
    campaign.claim_starts_ms = now_ms() + 60_000  # as a later window would be cached
    with pytest.raises(ClaimNotStarted):
        await svc.claim(1, cid, None)
    assert shards.calls == 0


class GatedShards(Shards):
    """Shard calls wait for ``gate``, then run one at a time, in the order they were made."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.gate = asyncio.Event()
        self.lock = asyncio.Lock()
        self.sent: list[list[Any]] = []

    async def send_batch(self, shard: int, ops: list[Any]) -> list[Any]:
        self.sent.append([getattr(op, "user_id", None) for op in ops])
        await self.gate.wait()
        async with self.lock:
            return await super().send_batch(shard, ops)


async def test_claims_queued_when_the_lease_arrives_are_answered_here(world: World) -> None:
    shards = GatedShards(world)
    svc = CouponService(sessionmaker(world.engine), shards, 1, window_s=0)
    shards.gate.set()
    cid = await active(world, shards, total=1, limit=1)
    shards.gate.clear()
    await svc.campaign(cid)  # the replica's copy, so that each claim below queues at once
    first = asyncio.create_task(svc.claim(1, cid, "k"))  # the last coupon: it earns the lease
    await asyncio.sleep(0.01)
    second = asyncio.create_task(svc.claim(2, cid, "k"))  # the second call in flight
    await asyncio.sleep(0.01)
    queued = [
        asyncio.create_task(svc.claim(3, cid, "k")),  # sold out
        asyncio.create_task(svc.claim(1, cid, "k")),  # a repeat of the first: its coupon
        asyncio.create_task(svc.claim(1, cid, "other")),  # the user is at the limit
    ]
    await asyncio.sleep(0.01)
    assert shards.sent[1:] == [[1], [2]]  # at most two calls in flight: the rest wait
    shards.gate.set()
    won = await first
    with pytest.raises(CouponsSoldOut):
        await second
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert shards.sent[1:] == [[1], [2]]  # the queued claims were not sent
    assert type(results[0]) is CouponsSoldOut
    assert isinstance(results[1], dict) and results[1]["replayed"]
    assert results[1]["coupon_id"] == won["coupon_id"]
    assert type(results[2]) is CouponLimitReached
    shards.gate.clear()  # no more shard calls: the lease answers on its own
    assert (await svc.claim(1, cid, "k"))["coupon_id"] == won["coupon_id"]
    assert shards.sent[1:] == [[1], [2]]


async def test_a_repeat_of_a_claim_made_here_is_answered_without_the_shard(world: World) -> None:
    shards = Shards(world)
    svc = CouponService(sessionmaker(world.engine), shards, 1, window_s=0)
    other = CouponService(sessionmaker(world.engine), shards, 1, window_s=0)  # another replica
    cid = await active(world, shards, total=5, limit=1)
    first = await svc.claim(1, cid, "k")
    calls = shards.calls
    assert await svc.claim(1, cid, "k") == {**first, "replayed": True}
    assert shards.calls == calls
    with pytest.raises(CouponLimitReached):  # another key: the shard rules on it
        await svc.claim(1, cid, "other")
    assert shards.calls == calls + 1
    assert await other.claim(1, cid, "k") == {**first, "replayed": True}  # from the shard
    assert shards.calls == calls + 2
    assert await other.claim(1, cid, "k") == {**first, "replayed": True}  # now from memory
    assert shards.calls == calls + 2
