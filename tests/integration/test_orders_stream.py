"""Consumer groups on the event stream: dedupe by event id, retries, dead letters."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from raymall.orders.stream import Event, StreamConsumer, dead_stream
from tests.conftest import needs_servers

pytestmark = [pytest.mark.integration, needs_servers]


@pytest.fixture()
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def publish(redis: aioredis.Redis, stream: str, event_id: str, topic: str = "t") -> None:
    await redis.xadd(
        stream,
        {
            "event_id": event_id,
            "topic": topic,
            "aggregate_id": "1",
            "payload": json.dumps({"n": 1}),
            "created_ms": "1",
        },
    )


async def drain(consumer: StreamConsumer, rounds: int = 30, pause_s: float = 0.03) -> None:
    for _ in range(rounds):
        await consumer.step(block_ms=10)
        await asyncio.sleep(pause_s)


async def test_a_republished_event_is_handled_once(redis: aioredis.Redis) -> None:
    stream = f"test:events:{secrets.token_hex(4)}"
    seen: list[str] = []

    async def handler(event: Event) -> None:
        seen.append(event.event_id)

    consumer = StreamConsumer(redis, stream, "g", handler)
    await consumer.ensure_group()
    await publish(redis, stream, "e1")
    await publish(redis, stream, "e1")  # the relay is at least once
    await publish(redis, stream, "e2")
    await drain(consumer, rounds=3)
    assert seen == ["e1", "e2"]
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_a_failing_event_is_retried_then_dead_lettered_after_n_tries(
    redis: aioredis.Redis,
) -> None:
    stream = f"test:events:{secrets.token_hex(4)}"
    calls: dict[str, int] = {}

    async def handler(event: Event) -> None:
        calls[event.event_id] = calls.get(event.event_id, 0) + 1
        if event.topic == "poison":
            raise RuntimeError("cannot handle this")

    consumer = StreamConsumer(redis, stream, "g", handler, max_deliveries=3, retry_idle_ms=20)
    await consumer.ensure_group()
    await publish(redis, stream, "bad", topic="poison")
    await publish(redis, stream, "good")
    await drain(consumer)
    assert calls == {"bad": 3, "good": 1}
    dead = await redis.xrange(dead_stream(stream))
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields["event_id"] == "bad" and fields["group"] == "g" and fields["deliveries"] == "3"
    assert "cannot handle this" in fields["error"]
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_a_transient_failure_is_retried_and_then_succeeds(redis: aioredis.Redis) -> None:
    stream = f"test:events:{secrets.token_hex(4)}"
    attempts = []

    async def flaky(event: Event) -> None:
        attempts.append(event.event_id)
        if len(attempts) < 2:
            raise ConnectionError("database blip")

    consumer = StreamConsumer(redis, stream, "g", flaky, max_deliveries=5, retry_idle_ms=20)
    await consumer.ensure_group()
    await publish(redis, stream, "e1")
    await drain(consumer, rounds=10)
    assert attempts == ["e1", "e1"] and consumer.handled == 1
    assert await redis.xlen(dead_stream(stream)) == 0


async def test_groups_are_independent(redis: aioredis.Redis) -> None:
    stream = f"test:events:{secrets.token_hex(4)}"
    got: dict[str, list[str]] = {"a": [], "b": []}

    def recorder(name: str):  # noqa: ANN202
        async def handle(event: Event) -> None:
            got[name].append(event.event_id)

        return handle

    a = StreamConsumer(redis, stream, "a", recorder("a"))
    b = StreamConsumer(redis, stream, "b", recorder("b"))
    await a.ensure_group()
    await publish(redis, stream, "e1")
    await b.ensure_group()  # created later: still reads from the start
    await drain(a, rounds=2)
    await drain(b, rounds=2)
    assert got == {"a": ["e1"], "b": ["e1"]}


class CountingRedis:
    """The client, counting the round trips a consumer makes (a pipeline is one)."""

    def __init__(self, inner: aioredis.Redis) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str):  # noqa: ANN204
        attr = getattr(self.inner, name)
        if name == "pipeline":

            def pipeline(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                pipe = attr(*args, **kwargs)
                execute = pipe.execute

                async def counted() -> list:
                    self.calls.append("pipeline:" + ",".join(c[0][0] for c in pipe.command_stack))
                    return await execute()

                pipe.execute = counted
                return pipe

            return pipeline
        if not callable(attr):
            return attr

        async def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.calls.append(name)
            return await attr(*args, **kwargs)

        return call


async def test_entries_of_topics_the_handler_does_not_take_are_acked_in_bulk_unhandled(
    redis: aioredis.Redis,
) -> None:
    stream = f"test:events:{secrets.token_hex(4)}"
    seen: list[str] = []

    class Mine:
        topics = frozenset({"mine"})

        async def __call__(self, event: Event) -> None:
            seen.append(event.event_id)

    counting = CountingRedis(redis)
    consumer = StreamConsumer(counting, stream, "g", Mine())
    await consumer.ensure_group()
    for i in range(40):
        await publish(redis, stream, f"other-{i}", topic="other")
    await publish(redis, stream, "m1", topic="mine")
    await redis.xadd(stream, {"event_id": "bad", "topic": "other", "payload": "{not json"})
    counting.calls.clear()
    assert await consumer.step(block_ms=10) == 42
    assert seen == ["m1"]
    assert consumer.ignored == 41 and consumer.handled == 1 and consumer.dead == 0
    assert (await redis.xpending(stream, "g"))["pending"] == 0
    # no seen key for what was never handled; the handled one has its key
    assert await redis.exists(consumer.seen_key("other-0"), consumer.seen_key("bad")) == 0
    assert await redis.exists(consumer.seen_key("m1")) == 1
    # one read, one MGET for the handled event, one pipeline for the key and all 42 acks
    reads = [c for c in counting.calls if c not in ("xpending_range",)]
    assert reads == ["xreadgroup", "mget", "pipeline:SET,XACK"], counting.calls
    # a read of ignored topics only: no MGET, no SET, one XACK
    for i in range(30):
        await publish(redis, stream, f"later-{i}", topic="other")
    counting.calls.clear()
    assert await consumer.step(block_ms=10) == 30
    assert [c for c in counting.calls if c != "xpending_range"] == ["xreadgroup", "pipeline:XACK"]
    assert (await redis.xpending(stream, "g"))["pending"] == 0 and seen == ["m1"]


async def test_a_batch_handler_gets_each_event_of_a_read_once_and_fails_only_its_own(
    redis: aioredis.Redis,
) -> None:
    stream = f"test:events:{secrets.token_hex(4)}"
    batches: list[list[str]] = []
    failures = {"e2": 1}  # e2 fails on its first delivery

    class Batched:
        async def __call__(self, event: Event) -> None:  # not used: handle_batch is
            raise AssertionError("handle_batch expected")

        async def handle_batch(self, events: list[Event]) -> list[BaseException | None]:
            batches.append([e.event_id for e in events])
            out: list[BaseException | None] = []
            for e in events:
                if failures.get(e.event_id, 0) > 0:
                    failures[e.event_id] -= 1
                    out.append(RuntimeError("busy"))
                else:
                    out.append(None)
            return out

    consumer = StreamConsumer(redis, stream, "g", Batched(), retry_idle_ms=20)
    await consumer.ensure_group()
    for event_id in ("e1", "e2", "e1", "e3", "e2"):  # copies of e1 and e2 in the same read
        await publish(redis, stream, event_id)
    await consumer.step(block_ms=10)
    assert batches == [["e1", "e2", "e3"]]
    assert consumer.handled == 2
    # e2 and its copy stay pending, the rest is acknowledged
    assert (await redis.xpending(stream, "g"))["pending"] == 2
    await drain(consumer, rounds=5)
    assert batches == [["e1", "e2", "e3"], ["e2"]]  # both copies retried as one event
    assert consumer.handled == 3 and consumer.dead == 0
    assert (await redis.xpending(stream, "g"))["pending"] == 0
    await publish(redis, stream, "e3")  # republished later: acknowledged, not handled
    await drain(consumer, rounds=2)
    assert batches == [["e1", "e2", "e3"], ["e2"]]
    assert (await redis.xpending(stream, "g"))["pending"] == 0


async def test_a_batch_handler_that_raises_leaves_the_whole_read_pending_then_dead_letters(
    redis: aioredis.Redis,
) -> None:
    stream = f"test:events:{secrets.token_hex(4)}"
    calls = 0

    class Down:
        async def __call__(self, event: Event) -> None:
            raise AssertionError("handle_batch expected")

        async def handle_batch(self, events: list[Event]) -> list[BaseException | None]:
            nonlocal calls
            calls += 1
            raise ConnectionError("database down")

    consumer = StreamConsumer(redis, stream, "g", Down(), max_deliveries=2, retry_idle_ms=20)
    await consumer.ensure_group()
    await publish(redis, stream, "a")
    await publish(redis, stream, "b")
    await drain(consumer, rounds=10)
    assert calls == 2  # one read, one retry of both, then buried
    dead = await redis.xrange(dead_stream(stream))
    assert sorted(f["event_id"] for _, f in dead) == ["a", "b"]
    assert all("database down" in f["error"] for _, f in dead)
    assert (await redis.xpending(stream, "g"))["pending"] == 0
