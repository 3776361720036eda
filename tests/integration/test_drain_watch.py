"""A replica's drain watch sees the flag raised by ``raymall serve`` within one poll."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
import redis.asyncio as aioredis

from deployments.drain import POLL_S, DrainWatch, drain_key, set_draining
from raymall.settings import Settings
from tests.conftest import needs_servers

pytestmark = [pytest.mark.integration, needs_servers]


async def seconds_until(check: object, want: bool, timeout_s: float = 5.0) -> float:
    start = time.monotonic()
    while check() is not want:  # type: ignore[operator]
        assert time.monotonic() - start < timeout_s, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_the_watch_follows_the_flag_within_one_poll(redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, namespace=f"drain-{secrets.token_hex(3)}")
    client = aioredis.Redis.from_url(redis_url)
    watch = DrainWatch(client, drain_key(settings))
    watch.start()
    try:
        await asyncio.sleep(0.05)
        assert not watch.is_draining()
        await asyncio.to_thread(set_draining, settings, True)
        assert await seconds_until(watch.is_draining, True) <= POLL_S + 0.3
        await asyncio.to_thread(set_draining, settings, False)
        assert await seconds_until(watch.is_draining, False) <= POLL_S + 0.3
    finally:
        assert watch._task is not None
        watch._task.cancel()
        await asyncio.gather(watch._task, return_exceptions=True)
        await client.aclose()
