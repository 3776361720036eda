"""A replica's watch sees the drain flag raised by ``raymall serve``, and the sampling ratio
an operator stored, within one poll."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
import redis.asyncio as aioredis

from deployments.drain import POLL_S, ReplicaWatch, set_draining, trace_ratio_key
from raymall import tracing
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
    watch = ReplicaWatch(client, settings)
    watch.start()
    try:
        await asyncio.sleep(0.05)
        assert not watch.is_draining()
        await asyncio.to_thread(set_draining, settings, True)
        assert await seconds_until(watch.is_draining, True) <= POLL_S + 0.3
        await asyncio.to_thread(set_draining, settings, False)
        assert await seconds_until(watch.is_draining, False) <= POLL_S + 0.3
    finally:
        await watch.stop()
        await client.aclose()


async def test_the_watch_applies_the_stored_sampling_ratio_and_restores_the_settings(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(redis_url=redis_url, namespace=f"trace-{secrets.token_hex(3)}")
    monkeypatch.setattr(tracing, "configured_ratio", 0.25)
    monkeypatch.setattr(tracing, "sample_ratio", 0.25)
    client = aioredis.Redis.from_url(redis_url)
    watch = ReplicaWatch(client, settings)
    watch.start()
    try:
        await client.set(trace_ratio_key(settings), "0.75")

        def at(ratio: float) -> object:
            return lambda: tracing.sample_ratio == ratio

        assert await seconds_until(at(0.75), True) <= POLL_S + 0.3
        await client.delete(trace_ratio_key(settings))
        assert await seconds_until(at(0.25), True) <= POLL_S + 0.3
    finally:
        await watch.stop()
        await client.aclose()
