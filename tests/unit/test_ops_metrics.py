"""The operations metrics: low-stock SKUs, restarts outside an actor, the group-commit
queue depth hook, consumer retries and dead letters."""

from __future__ import annotations

import asyncio
import json

from actors.group_commit import GroupCommitter
from actors.observe import LowStock, count_restart
from raymall import metrics
from raymall.orders.stream import StreamConsumer
from tests.unit.test_group_commit import Book, Writer


def _value(metric: object, **labels: str) -> float:
    return metric.labels(**labels)._value.get()  # type: ignore[attr-defined]  # noqa: SLF001


def test_low_stock_counts_skus_at_or_below_the_threshold_from_commits() -> None:
    low = LowStock("t-low", units=5)
    low.reset({1: 100, 2: 5, 3: 0})
    assert low.low == {2, 3} and _value(metrics.LOW_STOCK_SKUS, shard="t-low") == 2
    low.update({1: 4, 3: 50})  # 1 runs low, 3 was restocked
    assert low.low == {1, 2} and _value(metrics.LOW_STOCK_SKUS, shard="t-low") == 2
    low.update({2: 6})
    assert low.low == {1} and _value(metrics.LOW_STOCK_SKUS, shard="t-low") == 1


def test_a_first_start_outside_a_restarted_actor_is_not_a_restart() -> None:
    assert count_restart("inventory-test") is False


async def test_the_committer_reports_its_queue_depth_when_it_takes_a_batch() -> None:
    depths: list[int] = []
    book, writer = Book(), Writer()
    writer.auto = True
    committer: GroupCommitter = GroupCommitter(
        book, writer, window_s=0.01, max_ops=100, queue_depth=depths.append
    )
    await asyncio.gather(*(committer.submit([f"op{i}"]) for i in range(7)))
    committer.task.cancel()
    assert depths and max(depths) == 7


class _Redis:
    """Just enough of a Redis client for StreamConsumer's retry and burial paths."""

    def __init__(self, pending: list[dict], entries: dict[str, dict[str, str]]) -> None:
        self.pending, self.entries = pending, entries
        self.dead: list[dict] = []

    async def xpending_range(self, *a: object, **kw: object) -> list[dict]:
        return self.pending

    async def xclaim(self, stream: str, group: str, consumer: str, idle: int, ids: list[str]):
        return [(i, self.entries[i]) for i in ids]

    async def xrange(self, stream: str, min: str, max: str, count: int):
        return [(min, self.entries[min])]

    async def mget(self, keys: list[str]) -> list[None]:
        return [None] * len(keys)

    def pipeline(self, transaction: bool = False) -> _Redis:
        return self

    def xadd(self, stream: str, fields: dict, **kw: object) -> None:
        self.dead.append(fields)

    def xack(self, *a: object) -> None: ...

    def set(self, *a: object, **kw: object) -> None: ...

    async def execute(self) -> None: ...


async def test_consumer_retries_and_dead_letters_are_counted() -> None:
    fields = {"event_id": "e1", "topic": "t", "payload": json.dumps({}), "created_ms": "1"}
    redis = _Redis(
        [
            {"message_id": "1-0", "times_delivered": 2},
            {"message_id": "2-0", "times_delivered": 5},
        ],
        {"1-0": fields, "2-0": {**fields, "event_id": "e2"}},
    )

    async def handler(event: object) -> None:
        raise RuntimeError("still failing")

    group = "t-ops-metrics"
    consumer = StreamConsumer(redis, "s", group, handler, max_deliveries=5)
    retries = _value(metrics.CONSUMER_RETRIES, group=group)
    dead = _value(metrics.CONSUMER_DEAD_LETTERS, group=group)
    await consumer._retry_pending()  # noqa: SLF001
    assert _value(metrics.CONSUMER_RETRIES, group=group) == retries + 1
    assert _value(metrics.CONSUMER_DEAD_LETTERS, group=group) == dead + 1
    assert [d["event_id"] for d in redis.dead] == ["e2"]
