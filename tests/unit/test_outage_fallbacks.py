"""What keeps a replica serving while Redis is away, without Redis: the local token
buckets and their mode switch (``raymall.ratelimit``), and the revocation mirror
(``raymall.auth.mirror``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from raymall import metrics
from raymall.auth.mirror import RevocationMirror
from raymall.auth.revocations import IndexView
from raymall.errors import Unavailable
from raymall.feed import STORE_RETRY_AFTER_S, RedisHealth
from raymall.ids import now_ms
from raymall.ratelimit import Limit, LimitFallback, LocalBuckets


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Health:
    def __init__(self) -> None:
        self.ok = True
        self.failures = 0

    def usable(self) -> bool:
        return self.ok

    def failed(self) -> None:
        self.failures += 1
        self.ok = False


def test_a_replica_admits_its_share_of_the_burst_and_refills_at_its_share_of_the_rate() -> None:
    clock = Clock()
    buckets = LocalBuckets(2, clock=clock)
    rule = Limit("r", limit=10, period_s=1, burst=10)  # a replica's share: 5/s, burst 5
    got = [buckets.decide(["k"], [rule], 1, True) for _ in range(6)]
    assert [g[0] for g in got] == [True] * 5 + [False]
    assert got[0][2] == 4 and got[4][2] == 0
    assert got[5][1] == 200 and got[5][3] == 1  # next token in 1/5 s
    clock.t += 0.2
    assert buckets.decide(["k"], [rule], 1, True)[0]
    assert not buckets.decide(["k"], [rule], 1, True)[0]
    assert buckets.decide(["other"], [rule], 1, True)[0]  # keys are independent


def test_local_limits_are_all_or_nothing_and_refunds_give_back() -> None:
    clock = Clock()
    buckets = LocalBuckets(1, clock=clock)
    tight, loose = Limit("tight", 1, 10), Limit("loose", 100, 10)
    assert buckets.decide(["t", "l"], [tight, loose], 1, True)[0]
    refused = buckets.decide(["t", "l2"], [tight, loose], 1, True)
    assert not refused[0] and refused[3] == 1
    assert "l2" not in buckets.tats  # the refused request charged no limit
    buckets.refund(["t"], [tight], 1)
    assert buckets.decide(["t"], [tight], 1, True)[0]
    buckets.reset(["t"])
    assert buckets.decide(["t"], [tight], 1, False)[0]  # a peek charges nothing
    assert buckets.decide(["t"], [tight], 1, True)[0]


def test_a_share_never_drops_below_one_event() -> None:
    buckets = LocalBuckets(8, clock=Clock())
    assert buckets.scaled(Limit("one", 1, 1)) == (8000.0, 1)
    assert buckets.decide(["k"], [Limit("one", 1, 1)], 1, True)[0]


def test_local_buckets_forget_the_oldest_keys_past_their_bound() -> None:
    clock = Clock()
    buckets = LocalBuckets(1, clock=clock, max_keys=100)
    rule = Limit("r", 1, 60)
    for i in range(250):
        buckets.decide([f"k{i}"], [rule], 1, True)
    assert len(buckets.tats) <= 100 and "k249" in buckets.tats


def _mode() -> dict[str, float]:
    return {
        mode: metrics.RATE_LIMIT_MODE.labels(mode)._value.get()  # type: ignore[attr-defined]
        for mode in ("shared", "local")
    }


def test_the_fallback_says_which_mode_is_in_force() -> None:
    health = Health()
    fallback = LimitFallback(health, 2)  # type: ignore[arg-type]
    assert not fallback.local() and _mode() == {"shared": 1, "local": 0}
    fallback.failed()
    assert health.failures == 1 and fallback.local()
    assert _mode() == {"shared": 0, "local": 1}
    health.ok = True
    assert not fallback.local() and _mode() == {"shared": 1, "local": 0}


# ---- the revocation mirror ----------------------------------------------------------------
class FakeIndex:
    family_flag_ttl_s = 60

    def __init__(self) -> None:
        self.view = IndexView({}, set())
        self.writes: list[str] = []
        self.snapshots = 0

    async def snapshot(self) -> IndexView:
        self.snapshots += 1
        return self.view


def _mirror(**kw: Any) -> tuple[RevocationMirror, FakeIndex]:
    index = FakeIndex()
    return RevocationMirror(index, **kw), index  # type: ignore[arg-type]


def test_a_mirror_never_loaded_refuses_instead_of_answering() -> None:
    mirror, _ = _mirror()
    with pytest.raises(Unavailable) as caught:
        mirror.status("fam", 1)
    assert caught.value.retry_after == 1


def test_the_mirror_answers_as_the_index_does() -> None:
    mirror, index = _mirror()
    later = now_ms() + 60_000
    index.view = IndexView({"dead": ("1", later), "rot": ("g3", later)}, {7})
    asyncio.run(mirror.resync())
    assert mirror.status("dead", 1) == "family_revoked"
    assert mirror.status("rot", 1, 2) == "superseded"
    assert mirror.status("rot", 1, 3) is None
    assert mirror.status("any", 7) == "user_blocked"
    assert mirror.status("fresh", 1) is None
    # messages carry state: a generation never goes back, a revocation beats it
    mirror.apply(b"g rot 2")
    assert mirror.status("rot", 1, 2) == "superseded"
    mirror.apply(b"g rot 5")
    assert mirror.status("rot", 1, 4) == "superseded"
    mirror.apply(b"r rot")
    mirror.apply(b"g rot 9")
    assert mirror.status("rot", 1, 9) == "family_revoked"
    mirror.apply(b"u 7")
    assert mirror.status("any", 7) is None
    mirror.apply(b"b 8")
    mirror.apply(b"b 8")
    assert mirror.status("any", 8) == "user_blocked"
    with pytest.raises(ValueError):
        mirror.apply(b"x 1")


def test_expired_family_flags_stop_counting_and_are_pruned() -> None:
    mirror, index = _mirror()
    index.view = IndexView({"old": ("1", now_ms() - 1)}, set())
    asyncio.run(mirror.resync())
    assert mirror.status("old", 1) is None
    mirror.prune()
    assert mirror.families == {}


def test_a_resync_writes_what_the_index_missed_before_loading() -> None:
    mirror, index = _mirror()
    order: list[str] = []

    async def missed(idx: Any) -> None:
        order.append(f"write (snapshots so far: {idx.snapshots})")

    mirror.pending.append(missed)
    asyncio.run(mirror.resync())
    assert order == ["write (snapshots so far: 0)"] and mirror.pending == []
    assert index.snapshots == 1 and mirror.loaded


def test_a_failed_pending_write_stays_for_the_next_resync() -> None:
    mirror, _ = _mirror()

    async def fails(idx: Any) -> None:
        raise ConnectionError("gone again")

    mirror.pending.append(fails)
    with pytest.raises(ConnectionError):
        asyncio.run(mirror.resync())
    assert len(mirror.pending) == 1 and not mirror.loaded


def test_a_bounded_mirror_refuses_once_the_feed_is_down_too_long() -> None:
    down: list[int | None] = [None]
    mirror, _ = _mirror(max_stale_s=5, down_since_ms=lambda: down[0])
    asyncio.run(mirror.resync())
    assert mirror.status("f", 1) is None
    down[0] = now_ms() - 1000
    assert mirror.status("f", 1) is None  # within the bound: the copy as of the loss
    down[0] = now_ms() - 6000
    with pytest.raises(Unavailable):
        mirror.status("f", 1)


# ---- when Redis counts as usable ----------------------------------------------------------
class FakeFeed:
    def __init__(self) -> None:
        self.connected = True
        self.since: int | None = None

    def down_since_ms(self) -> int | None:
        return None if self.connected else self.since


def test_redis_is_unusable_while_the_feed_is_down_or_just_after_a_fault() -> None:
    feed = FakeFeed()
    health = RedisHealth(feed, cool_down_s=0.05)  # type: ignore[arg-type]
    assert health.usable() and health.down_since_ms() is None
    feed.connected, feed.since = False, 1234
    assert not health.usable() and health.down_since_ms() == 1234
    with pytest.raises(Unavailable) as caught:
        health.require("sign-in")
    assert caught.value.retry_after == STORE_RETRY_AFTER_S
    feed.connected = True
    health.failed()
    assert not health.usable() and health.down_since_ms() is not None
    time.sleep(0.06)
    assert health.usable()


def test_a_connection_fault_in_a_guarded_block_is_a_clean_refusal() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError

    health = RedisHealth(None, cool_down_s=60)
    with pytest.raises(Unavailable), health.faults("the cart"):
        raise RedisConnectionError("refused")
    assert not health.usable()
    other = RedisHealth(None)
    with pytest.raises(ResponseError), other.faults("the cart"):  # an error reply is no outage
        raise ResponseError("WRONGTYPE")
    assert other.usable()
