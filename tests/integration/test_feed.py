"""raymall.feed against real Redis servers: the shared server (unique channel names) for
delivery, order and handler faults; a throw-away redis-server of the test's own for a
server that dies and comes back."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest
import redis

from raymall.feed import Feed, scoped_channel
from tests.conftest import needs_servers
from tests.redis_process import RedisProcess

pytestmark = pytest.mark.integration


def unique(name: str) -> str:
    return f"test:feed:{name}:{secrets.token_hex(4)}"


@pytest.fixture()
def own_redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    yield server
    server.stop()


async def eventually(check: object, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_scoped_channels_differ_by_database_index() -> None:
    assert scoped_channel("redis://h:6379/3", "auth") == "raymall:3:auth"
    assert scoped_channel("redis://h:6379", "auth") == "raymall:0:auth"
    assert scoped_channel("redis://h:6379/3", "auth") != scoped_channel("redis://h/4", "auth")


@needs_servers
async def test_delivers_every_message_in_order_after_the_resync(redis_url: str) -> None:
    a, b = unique("a"), unique("b")
    got: list[tuple[str, bytes]] = []
    resynced: list[int] = []
    feed = Feed(redis_url, name="test")

    async def on_resync() -> None:
        resynced.append(len(got))

    feed.subscribe(a, lambda m: got.append((a, m)), on_resync)
    feed.subscribe(b, lambda m: got.append((b, m)))
    assert not feed.connected and feed.down_since_ms() is not None
    pub = redis.Redis.from_url(redis_url)
    try:
        await feed.start()
        assert await feed.wait_connected(5)
        assert feed.connected and feed.down_since_ms() is None
        assert resynced == [0]
        for i in range(100):
            pub.publish(a if i % 2 else b, str(i))
        await eventually(lambda: len(got) == 100)
        assert [int(m) for _, m in got] == list(range(100))
        assert all(ch == (a if int(m) % 2 else b) for ch, m in got)
    finally:
        await feed.stop()
        pub.close()
    assert not feed.connected


@needs_servers
async def test_a_failing_handler_is_counted_and_the_feed_goes_on(redis_url: str) -> None:
    ch = unique("faulty")
    got: list[bytes] = []

    def handler(message: bytes) -> None:
        if message == b"boom":
            raise ValueError("bad message")
        got.append(message)

    feed = Feed(redis_url, name="test")
    feed.subscribe(ch, handler)
    pub = redis.Redis.from_url(redis_url)
    try:
        await feed.start()
        assert await feed.wait_connected(5)
        for m in ("one", "boom", "two"):
            pub.publish(ch, m)
        await eventually(lambda: got == [b"one", b"two"])
        assert feed.connected
    finally:
        await feed.stop()
        pub.close()


@needs_servers
async def test_subscribing_after_start_resubscribes_and_resyncs_everyone(redis_url: str) -> None:
    first, second = unique("first"), unique("second")
    got: list[bytes] = []
    resyncs: list[str] = []

    async def resync_first() -> None:
        resyncs.append("first")

    async def resync_second() -> None:
        resyncs.append("second")

    feed = Feed(redis_url, name="test")
    feed.subscribe(first, got.append, resync_first)
    pub = redis.Redis.from_url(redis_url)
    try:
        await feed.start()
        assert await feed.wait_connected(5)
        feed.subscribe(second, got.append, resync_second)
        await eventually(lambda: "second" in resyncs and feed.connected)
        assert resyncs == ["first", "first", "second"]
        pub.publish(second, "x")
        pub.publish(first, "y")
        await eventually(lambda: got == [b"x", b"y"])
    finally:
        await feed.stop()
        pub.close()


async def test_a_killed_server_is_noticed_and_a_restart_resyncs(own_redis: RedisProcess) -> None:
    ch = unique("restart")
    got: list[bytes] = []
    snapshots = 0
    fail_next_resync = False

    async def on_resync() -> None:
        nonlocal snapshots, fail_next_resync
        if fail_next_resync:
            fail_next_resync = False
            raise RuntimeError("snapshot unreadable")
        snapshots += 1

    feed = Feed(own_redis.url, name="test", reconnect_max_s=0.2)
    feed.subscribe(ch, got.append, on_resync)
    try:
        await feed.start()
        assert await feed.wait_connected(5)
        assert snapshots == 1
        own_redis.kill()
        await eventually(lambda: not feed.connected)
        down = feed.down_since_ms()
        assert down is not None
        await asyncio.sleep(0.5)
        assert feed.down_since_ms() == down  # since the loss, not since the last retry
        fail_next_resync = True  # the first resync after the restart fails: retried
        own_redis.start()
        assert await feed.wait_connected(5)
        assert snapshots == 2 and not fail_next_resync
        pub = redis.Redis.from_url(own_redis.url)
        pub.publish(ch, "after")
        pub.close()
        await eventually(lambda: got == [b"after"])
    finally:
        await feed.stop()


async def test_a_silent_server_is_dropped_after_the_dead_bound(own_redis: RedisProcess) -> None:
    ch = unique("silent")
    feed = Feed(own_redis.url, name="test", ping_s=0.1, dead_after_s=0.4, reconnect_max_s=0.1)
    feed.subscribe(ch, lambda m: None)
    try:
        await feed.start()
        assert await feed.wait_connected(5)
        own_redis.pause()  # SIGSTOP: the socket stays open, nothing answers
        try:
            await eventually(lambda: not feed.connected, timeout_s=3)
        finally:
            own_redis.resume()
        assert await feed.wait_connected(5)
    finally:
        await feed.stop()


async def test_start_with_no_server_stays_down_and_connects_when_it_appears(
    own_redis: RedisProcess,
) -> None:
    own_redis.kill()
    feed = Feed(own_redis.url, name="test", reconnect_max_s=0.1)
    feed.subscribe(unique("late"), lambda m: None)
    try:
        await feed.start()
        assert not await feed.wait_connected(0.5)
        assert feed.down_since_ms() is not None
        own_redis.start()
        assert await feed.wait_connected(5)
    finally:
        await feed.stop()
