"""The replica's availability mirror: sequence order, gaps, epochs, trust, the owner."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from raymall.catalog.availability import (
    BEAT,
    CHANGE,
    EPOCH_FIELD,
    RESET,
    SEQ_FIELD,
    AvailabilityMirror,
    Message,
    hash_key,
)
from raymall.hashing import shard_for

SHARDS = 2


class FakeRedis:
    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def hgetall(self, key: str) -> dict[str, str]:
        self.loads += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("down")
        return dict(self.hashes.get(key, {}))

    def put(self, shard: int, epoch: str, seq: int, values: Mapping[int, int]) -> None:
        h = self.hashes.setdefault(hash_key(shard), {})
        h.update({str(k): str(v) for k, v in values.items()})
        h[EPOCH_FIELD], h[SEQ_FIELD] = epoch, str(seq)


class Owner:
    def __init__(self) -> None:
        self.asked: list[list[int]] = []

    async def availability(self, sku_ids: list[int]) -> dict[int, int]:
        self.asked.append(sorted(sku_ids))
        return {s: 1000 + s for s in sku_ids}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def skus_of(shard: int, n: int = 3) -> list[int]:
    return [s for s in range(1, 500) if shard_for(s, SHARDS) == shard][:n]


def msg(
    shard: int, seq: int, kind: int = CHANGE, epoch: str = "e1", pairs: dict[int, int] | None = None
) -> bytes:
    return Message(shard, epoch, seq, kind, 0, tuple((pairs or {}).items())).encode()


def make(connected: bool = True) -> tuple[AvailabilityMirror, FakeRedis, Owner, Clock]:
    redis, owner, clock = FakeRedis(), Owner(), Clock()
    state = {"up": connected}
    mirror = AvailabilityMirror(
        redis, SHARDS, trust_s=1.0, owner=owner, connected=lambda: state["up"], clock=clock
    )
    return mirror, redis, owner, clock


async def test_loaded_values_are_served_without_the_owner() -> None:
    mirror, redis, owner, _ = make()
    a, b = skus_of(0, 2)
    redis.put(0, "e1", 5, {a: 3, b: 0})
    redis.put(1, "e9", 1, {})
    await mirror.resync()
    assert await mirror.availability([a, b]) == {a: 3, b: 0}
    assert owner.asked == []


async def test_changes_apply_in_order_and_a_gap_reloads() -> None:
    mirror, redis, owner, _ = make()
    (a,) = skus_of(0, 1)
    redis.put(0, "e1", 5, {a: 3})
    await mirror.resync()
    mirror.on_message(msg(0, 6, pairs={a: 2}))
    assert mirror.local([a]) == ({a: 2}, [])
    mirror.on_message(msg(0, 6, pairs={a: 2}))  # a re-sent change: harmless
    mirror.on_message(msg(0, 5, pairs={a: 9}))  # older: ignored
    assert mirror.local([a]) == ({a: 2}, [])
    loads = redis.loads
    redis.put(0, "e1", 8, {a: 7})
    mirror.on_message(msg(0, 8, pairs={a: 7}))  # 7 was missed: reload the shard
    assert mirror.local([a]) == ({}, [a])  # not trusted while it reloads
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert redis.loads == loads + 1
    assert mirror.local([a]) == ({a: 7}, [])
    assert owner.asked == []


async def test_messages_during_a_reload_apply_after_it() -> None:
    mirror, redis, _, _ = make()
    (a,) = skus_of(0, 1)
    redis.put(0, "e1", 1, {a: 5})
    redis.gate = asyncio.Event()
    task = asyncio.ensure_future(mirror.resync())
    await asyncio.sleep(0)
    mirror.on_message(msg(0, 1, pairs={a: 5}))  # already in the hash: skipped by seq
    mirror.on_message(msg(0, 2, pairs={a: 4}))  # after the hash: applied
    redis.gate.set()
    await task
    assert mirror.local([a]) == ({a: 4}, [])


async def test_a_new_epoch_or_a_reset_reloads() -> None:
    mirror, redis, _, _ = make()
    (a,) = skus_of(0, 1)
    redis.put(0, "e1", 3, {a: 5})
    await mirror.resync()
    redis.hashes.clear()
    redis.put(0, "e2", 1, {a: 1})
    mirror.on_message(msg(0, 1, epoch="e2", pairs={a: 1}))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert mirror.local([a]) == ({a: 1}, [])
    redis.put(0, "e2", 2, {a: 0})
    mirror.on_message(msg(0, 2, RESET, epoch="e2"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert mirror.local([a]) == ({a: 0}, [])


async def test_silence_disconnection_and_unknown_skus_go_to_the_owner() -> None:
    mirror, redis, owner, clock = make()
    a, b = skus_of(0, 2)
    redis.put(0, "e1", 1, {a: 5})
    await mirror.resync()
    # a SKU the shard never published: asked of its owner
    assert await mirror.availability([a, b]) == {a: 5, b: 1000 + b}
    assert owner.asked == [[b]]
    # silent past the trust window: the owner answers for the whole shard
    clock.t += 1.5
    assert mirror.local([a]) == ({}, [a])
    mirror.on_message(msg(0, 1, BEAT))  # a heartbeat at the current sequence
    assert mirror.local([a]) == ({a: 5}, [])
    # a heartbeat ahead of the mirror is a gap
    mirror.on_message(msg(0, 4, BEAT))
    assert mirror.local([a]) == ({}, [a])


async def test_a_disconnected_feed_trusts_nothing() -> None:
    mirror, redis, _, _ = make(connected=False)
    (a,) = skus_of(0, 1)
    redis.put(0, "e1", 1, {a: 5})
    await mirror.resync()
    assert mirror.local([a]) == ({}, [a])


async def test_a_failed_load_is_untrusted_and_retried_by_the_next_message() -> None:
    mirror, redis, _, _ = make()
    (a,) = skus_of(0, 1)
    redis.put(0, "e1", 1, {a: 5})
    redis.fail = True
    await mirror.resync()
    assert mirror.local([a]) == ({}, [a])
    redis.fail = False
    mirror.on_message(msg(0, 1, BEAT))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert mirror.local([a]) == ({a: 5}, [])


async def test_malformed_messages_and_foreign_shards_are_ignored() -> None:
    mirror, redis, _, _ = make()
    (a,) = skus_of(0, 1)
    redis.put(0, "e1", 1, {a: 5})
    await mirror.resync()
    mirror.on_message(b"\xc1garbage")
    mirror.on_message(msg(7, 1, pairs={a: 0}))
    assert mirror.local([a]) == ({a: 5}, [])


@pytest.mark.parametrize("values", [{}, {1: 2}])
def test_message_round_trip(values: dict[int, int]) -> None:
    m = Message(1, "e", 3, CHANGE, 123, tuple(values.items()))
    assert Message.decode(m.encode()) == m


async def test_in_stock_view_says_yes_no_or_cannot_tell() -> None:
    mirror, redis, _, clock = make()
    a, b = skus_of(0, 2)
    (c,) = skus_of(1, 1)
    redis.put(0, "e1", 1, {a: 0, b: 2})
    redis.put(1, "e1", 1, {c: 0})
    await mirror.resync()
    view = mirror.in_stock_view()
    assert view([a, b]) is True
    assert view([a, c]) is False
    assert view([a, 10_000_019]) is None  # a SKU the mirror has not seen
    clock.t += 2  # shard 1 silent past the trust window; shard 0 too
    view = mirror.in_stock_view()
    assert view([a, b]) is None and view([c]) is None
