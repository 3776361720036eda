"""Rate limits through a Redis outage, on a throw-away redis-server: the shared limits
while it answers, the replica's share of them in memory while it is gone (decided at
once, not after a connect timeout), the shared limits again once it is back."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from raymall.feed import Feed, RedisHealth
from raymall.flash.limits import BatchLimiter
from raymall.ratelimit import Limit, LimitFallback, RateLimiter
from tests.redis_process import RedisProcess

pytestmark = pytest.mark.integration


@pytest.fixture()
def own_redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    yield server
    server.stop()


@pytest.fixture()
async def client(own_redis: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    pool = aioredis.BlockingConnectionPool.from_url(
        own_redis.url, max_connections=8, decode_responses=True, socket_connect_timeout=2
    )
    r = aioredis.Redis.from_pool(pool)
    yield r
    await r.aclose()


async def shared_within(fallback: LimitFallback, timeout_s: float) -> bool:
    """Whether the shared limits are back within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while fallback.local():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_a_limiter_goes_local_while_redis_is_down_and_shared_when_back(
    own_redis: RedisProcess, client: aioredis.Redis
) -> None:
    feed = Feed(own_redis.url, name="test", reconnect_max_s=0.2)
    fallback = LimitFallback(RedisHealth(feed), replicas=2)
    limiter = RateLimiter(client, prefix=f"t{secrets.token_hex(3)}", fallback=fallback)
    rule = Limit("outage", limit=10, period_s=60)  # 5 per replica while local
    await feed.start()
    try:
        assert await feed.wait_connected(5)
        shared = [(await limiter.check((rule, "u"))).allowed for _ in range(10)]
        assert all(shared) and fallback.mode == "shared"
        own_redis.kill()
        # the first decision after the kill may meet the dead connection: it falls back too
        started = time.monotonic()
        local = [(await limiter.check((rule, "u"))).allowed for _ in range(6)]
        assert time.monotonic() - started < 0.5
        assert local == [True] * 5 + [False] and fallback.mode == "local"
        assert not (await limiter.check((rule, "u"))).allowed
        own_redis.start()  # empty: the shared bucket starts full again
        assert await shared_within(fallback, 2.0)
        assert (await limiter.check((rule, "u"))).allowed and fallback.mode == "shared"
        assert await client.exists(limiter.key(rule, "u"))
    finally:
        await feed.stop()


async def test_a_failed_command_alone_switches_to_local_for_the_cool_down(
    own_redis: RedisProcess, client: aioredis.Redis
) -> None:
    health = RedisHealth(None, cool_down_s=0.3)  # no feed: only failures count
    fallback = LimitFallback(health, replicas=1)
    limiter = RateLimiter(client, prefix=f"t{secrets.token_hex(3)}", fallback=fallback)
    rule = Limit("cool", limit=100, period_s=1)
    assert (await limiter.check((rule, "u"))).allowed
    own_redis.kill()
    assert (await limiter.check((rule, "u"))).allowed and fallback.mode == "local"
    own_redis.start()
    await asyncio.sleep(0.35)
    assert (await limiter.check((rule, "u"))).allowed and fallback.mode == "shared"


async def test_without_a_fallback_a_limiter_fails_with_redis(
    own_redis: RedisProcess, client: aioredis.Redis
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    limiter = RateLimiter(client, prefix="strict")
    own_redis.kill()
    with pytest.raises(RedisConnectionError):
        await limiter.check((Limit("strict", 1, 1), "u"))


async def test_flash_batches_are_decided_locally_through_an_outage(
    own_redis: RedisProcess, client: aioredis.Redis
) -> None:
    feed = Feed(own_redis.url, name="test", reconnect_max_s=0.2)
    fallback = LimitFallback(RedisHealth(feed), replicas=2)
    batch = BatchLimiter(client, prefix=f"t{secrets.token_hex(3)}", fallback=fallback)
    per_user = Limit("flash_user", limit=2, period_s=60)  # 1 per replica while local
    event = Limit("flash_event", limit=1000, period_s=1)
    await feed.start()
    try:
        assert await feed.wait_connected(5)
        own_redis.kill()
        requests = [[(per_user, f"s:{u}"), (event, "s")] for u in (1, 2, 1, 3, 2)]
        decisions = await batch.check(requests)
        assert [d.allowed for d in decisions] == [True, True, False, True, False]
        assert decisions[2].refused_by == "flash_user" and decisions[2].retry_after_s > 0
        assert fallback.mode == "local"
        assert [d.allowed for d in await batch.check([[], [(per_user, "s:9")]])] == [True, True]
        own_redis.start()
        assert await shared_within(fallback, 2.0)
        decisions = await batch.check(requests)
        assert [d.allowed for d in decisions] == [True, True, True, True, True]
        assert fallback.mode == "shared"
    finally:
        await feed.stop()
