"""The flash sales' live view: what a shard publishes (``live_value``), how a replica's
``SaleHub`` fans it out, and the event stream a client reads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from deployments.flash_live_routes import sale_stream
from raymall.catalog.availability import BEAT, CHANGE, Message
from raymall.domain.sale import Sale
from raymall.flash import live_model
from raymall.flash.live import SaleHub
from raymall.ids import now_ms


def sale(sale_id: int = 7, *, sold: int = 0, ended: bool = False, starts: int = 0) -> Sale:
    return Sale(
        id=sale_id,
        sku_id=3,
        price_cents=100,
        quantity=5,
        per_user_limit=1,
        starts_ms=starts,
        ends_ms=now_ms() + 3_600_000,
        ended=ended,
        sold=sold,
    )


class FakeRedis:
    def __init__(self, values: dict[tuple[str, int], str] | None = None) -> None:
        self.values = values or {}
        self.reads = 0

    async def hget(self, key: str, field: int) -> str | None:
        self.reads += 1
        return self.values.get((key, field))


class FakeCache:
    def __init__(self, *sales: Sale) -> None:
        self.sales = {s.id: s for s in sales}
        self.reads = 0

    async def get(self, sale_id: int) -> Sale:
        self.reads += 1
        return self.sales[sale_id]


def change(*pairs: tuple[int, int], seq: int = 1) -> bytes:
    return Message(0, "e", seq, CHANGE, now_ms(), tuple(pairs)).encode()


def test_live_value_is_the_units_left_or_ended() -> None:
    assert live_model.live_value(sale(sold=2), now_ms()) == 3
    assert live_model.live_value(sale(sold=5), now_ms()) == 0
    assert live_model.live_value(sale(sold=1, ended=True), now_ms()) == live_model.ENDED


async def test_many_watchers_cost_one_read_and_wake_on_one_message() -> None:
    redis = FakeRedis({(live_model.hash_key(1), 7): "4"})
    cache = FakeCache(sale())
    hub = SaleHub(redis, cache, lambda sku: 1, "redis://localhost:6379/2")  # type: ignore[arg-type]
    watches = await asyncio.gather(*[hub.watch(7) for _ in range(500)])
    assert redis.reads == 1 and cache.reads == 1
    assert hub.watchers == 500 and watches[0].state(now_ms())["remaining"] == 4
    events = [w.changed for w in watches]
    hub.on_message(change((7, 0)))
    assert all(e.is_set() for e in events)
    assert watches[0].state(now_ms())["status"] == "sold_out"


async def test_messages_of_unwatched_sales_and_heartbeats_are_ignored() -> None:
    hub = SaleHub(FakeRedis(), FakeCache(sale()), lambda sku: 0, "redis://localhost:6379/0")  # type: ignore[arg-type]
    watch = await hub.watch(7)
    event = watch.changed
    hub.on_message(Message(0, "e", 1, BEAT, now_ms()).encode())
    hub.on_message(change((99, 1)))
    assert not event.is_set() and 99 not in hub.watches
    hub.unwatch(watch)
    assert hub.watches == {}


async def test_without_a_published_value_the_row_says() -> None:
    hub = SaleHub(FakeRedis(), FakeCache(sale(sold=2)), lambda sku: 0, "redis://x:1/0")  # type: ignore[arg-type]
    watch = await hub.watch(7)
    assert watch.state(now_ms())["remaining"] == 3


async def test_stream_reports_sales_sold_out_returned_and_ended() -> None:
    hub = SaleHub(FakeRedis(), FakeCache(sale(sold=3)), lambda sku: 0, "redis://x:1/0")  # type: ignore[arg-type]
    stream = sale_stream(hub, 7)
    frames: list[tuple[str, dict[str, Any]]] = []

    async def read(n: int) -> None:
        while len(frames) < n:
            chunk = (await stream.__anext__()).decode()
            if chunk.startswith("event: "):
                head, data = chunk.split("\n")[:2]
                frames.append((head[7:], json.loads(data[6:])))

    await read(1)
    assert frames[0][0] == "sale" and frames[0][1]["remaining"] == 2
    hub.on_message(change((7, 1)))
    await read(2)
    hub.on_message(change((7, 0)))
    await read(3)
    hub.on_message(change((7, 2)))
    await read(4)
    hub.on_message(change((7, live_model.ENDED)))
    await read(5)
    assert [f[0] for f in frames] == ["sale", "remaining", "sold_out", "returned", "ended"]
    assert frames[3][1]["units"] == 2 and frames[4][1]["status"] == "ended"
    await stream.aclose()
    assert hub.watchers == 0
