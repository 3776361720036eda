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
