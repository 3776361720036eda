"""The batch rate limiter on a real Redis: one call decides a whole batch, in order, each
request all-or-nothing across its limits, and a shared (event) key sees earlier charges."""

from __future__ import annotations

import asyncio
import secrets

import redis.asyncio as aioredis

from raymall.flash.limits import BatchLimiter
from raymall.ratelimit import Limit, RateLimiter


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_a_batch_is_decided_in_order_and_shares_the_event_bucket(redis_url: str) -> None:
    async def go() -> None:
        r = aioredis.Redis.from_url(redis_url, decode_responses=True)
        tag = secrets.token_hex(4)
        user = Limit(f"u{tag}", limit=2, period_s=60)
        event = Limit(f"e{tag}", limit=3, period_s=60)
        limiter = BatchLimiter(r)
        batch = [[(user, "alice"), (event, "s1")] for _ in range(3)]
        batch += [[(user, "bob"), (event, "s1")] for _ in range(2)]
        decisions = await limiter.check(batch)
        # alice: 2 admitted then her own limit refuses; bob: the event has 1 unit left
        assert [d.allowed for d in decisions] == [True, True, False, True, False]
        assert decisions[2].refused_by == user.name and decisions[4].refused_by == event.name
        assert all(d.retry_after_s > 0 for d in decisions if not d.allowed)
        # a refused request charged nothing: bob's own bucket still admits one more
        generic = RateLimiter(r)
        assert (await generic.peek((user, "bob"))).allowed
        assert not (await generic.peek((event, "s1"))).allowed  # same keys as the generic one
        empty = await limiter.check([[], [(user, "carol")]])
        assert [d.allowed for d in empty] == [True, True]
        await r.aclose()

    run(go())
