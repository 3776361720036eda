"""The outbox relay and the notifications consumer: batched notification writes that
survive a duplicate (SQLite and MariaDB), idle back-off of the outbox poll and the way back
to fast polling, recovery from a killed database connection, and the end-to-end path from
an outbox row to a stored notification."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError

from actors.outbox_relay import OutboxRelay
from raymall.db import make_engine, session_factory
from raymall.ids import now_ms
from raymall.orders.consumers import write_notifications
from raymall.orders.stream import Event
from raymall.settings import Settings
from tests.conftest import needs_servers
from tests.order_helpers import Shop

pytestmark = [pytest.mark.integration, needs_servers]


def placed(user_id: int, event_id: str, topic: str = "order.placed") -> Event:
    payload = {"user_id": user_id, "order_id": 7, "total_cents": 1250}
    return Event("0-1", event_id, topic, "7", payload, now_ms())


@pytest.mark.parametrize("db", ["sqlite", "mysql"])
def test_a_batch_with_one_duplicate_notification_still_stores_the_others(
    db: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("sqlite_url" if db == "sqlite" else "mysql_url")
    engine = make_engine(url)
    shop = Shop(Settings(database_url=url, redis_url="redis://unused"), engine)
    sessions = session_factory(engine)
    try:
        uid = shop.user()
        first = placed(uid, f"ev-{secrets.token_hex(4)}")
        assert write_notifications(sessions, [first]) == [None]
        batch = [
            placed(uid, f"ev-{secrets.token_hex(4)}"),
            first,  # redelivered: its row exists
            placed(uid, f"ev-{secrets.token_hex(4)}", topic="order.paid"),
            placed(uid, f"ev-{secrets.token_hex(4)}", topic="inventory.low_stock"),  # no mail
        ]
        assert write_notifications(sessions, batch) == [None, None, None, None]
        rows = shop.rows(
            "SELECT event_id, kind FROM notifications WHERE user_id = :u ORDER BY id", u=uid
        )
        assert [(r[0], r[1]) for r in rows] == [
            (first.event_id, "order_placed"),
            (batch[0].event_id, "order_placed"),
            (batch[2].event_id, "order_paid"),
        ]
        (mail,) = shop.rows(
            "SELECT subject, body, created_ms FROM notifications WHERE event_id = :e",
            e=batch[0].event_id,
        )
        assert (mail[0], mail[2]) == ("Order received", batch[0].created_ms)
        assert mail[1] == "We received your order 7: $12.50 due within the payment window."
    finally:
        shop.dispose()


@pytest.fixture()
async def relay_env(mysql_url: str, redis_url: str) -> AsyncIterator[Callable[..., OutboxRelay]]:
    """Start relays in this event loop (fast poll 20 ms, idle poll at most 320 ms; at the
    test process's own priority)."""
    started: list[OutboxRelay] = []

    def start(**overrides: Any) -> OutboxRelay:
        settings = Settings(
            database_url=mysql_url,
            redis_url=redis_url,
            env="test",
            events_stream=f"test:relay:{secrets.token_hex(4)}",
            outbox_poll_interval_s=0.02,
            outbox_idle_poll_interval_s=0.32,
            consumer_retry_idle_ms=50,
            outbox_relay_niceness=0,
            **overrides,
        )
        relay = OutboxRelay(settings, 0)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        await asyncio.wait_for(relay.close(), timeout=60)


def count_polls(relay: OutboxRelay) -> list[float]:
    """Times of the relay's outbox queries, seen on its database engine."""
    polls: list[float] = []

    @event.listens_for(relay.engine, "before_cursor_execute")
    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM outbox" in statement:
            polls.append(time.monotonic())

    return polls


def add_outbox_row(shop: Shop, user_id: int) -> str:
    event_id = f"ev-{secrets.token_hex(6)}"
    payload = json.dumps({"user_id": user_id, "order_id": 1, "total_cents": 100})
    with shop.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO outbox (event_id, topic, aggregate_id, payload, created_ms) "
                "VALUES (:e, 'order.placed', '1', :p, :c)"
            ),
            {"e": event_id, "p": payload, "c": now_ms()},
        )
    return event_id


def published(shop: Shop, event_id: str) -> bool:
    return (
        shop.scalar("SELECT published_ms FROM outbox WHERE event_id = :e", e=event_id) is not None
    )


async def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> float:
    """Seconds until ``check()`` held; fails after ``timeout_s``."""
    start = time.monotonic()
    while not await asyncio.to_thread(check):
        assert time.monotonic() - start < timeout_s, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def in_window(polls: list[float], start: float, end: float) -> int:
    return sum(1 for t in polls if start <= t < end)


async def test_the_relay_backs_off_when_idle_and_polls_fast_again_when_rows_come(
    relay_env: Callable[..., OutboxRelay], mysql_url: str
) -> None:
    shop = Shop(Settings(database_url=mysql_url, redis_url="redis://unused"))
    uid = shop.user()
    # the outbox may hold rows of other tests (cancelled and refunded orders among them):
    # mark them published, so that this relay and its consumers see only this test's rows
    with shop.engine.begin() as conn:
        conn.execute(
            text("UPDATE outbox SET published_ms = :n WHERE published_ms IS NULL"), {"n": now_ms()}
        )
    relay = relay_env()
    polls = count_polls(relay)
    await wait_until(
        lambda: shop.scalar("SELECT COUNT(*) FROM outbox WHERE published_ms IS NULL") == 0
    )
    # idle: at 20 ms a poll would run 100 times in 2 s; backing off to 320 ms, about 10
    await asyncio.sleep(1.0)  # the back-off reaches its cap
    t0 = time.monotonic()
    await asyncio.sleep(2.0)
    idle = in_window(polls, t0, time.monotonic())
    assert 3 <= idle <= 10, idle
    # a row after a long idle time is published within the idle interval (plus margin)
    ev = await asyncio.to_thread(add_outbox_row, shop, uid)
    assert await wait_until(lambda: published(shop, ev)) < 0.32 + 0.5
    # rows keep coming (every 50 ms): the relay polls fast again and publishes each quickly
    t1 = time.monotonic()
    lags = []
    for _ in range(20):
        ev = await asyncio.to_thread(add_outbox_row, shop, uid)
        lags.append(await wait_until(lambda ev=ev: published(shop, ev)))
        await asyncio.sleep(0.05)
    busy_s = time.monotonic() - t1
    busy = in_window(polls, t1, time.monotonic())
    assert busy / busy_s >= 8, (busy, busy_s)  # idle: ~3 polls a second
    assert sorted(lags)[len(lags) // 2] < 0.2, lags  # a bound; the poll rate tells fast/idle
    # the consumers wrote the user's notifications (22 rows published)
    await wait_until(
        lambda: shop.scalar("SELECT COUNT(*) FROM notifications WHERE user_id = :u", u=uid) == 21
    )
    stats = await relay.stats()
    assert stats["consumers"]["refund-restock"]["handled"] == 0
    assert stats["consumers"]["refund-restock"]["ignored"] >= 21
    shop.dispose()


async def test_the_relay_recovers_when_its_kept_database_connection_is_killed(
    relay_env: Callable[..., OutboxRelay], mysql_url: str
) -> None:
    shop = Shop(Settings(database_url=mysql_url, redis_url="redis://unused"))
    uid = shop.user()
    relay = relay_env()
    first = await asyncio.to_thread(add_outbox_row, shop, uid)
    await wait_until(lambda: published(shop, first))
    conn = relay._db
    assert conn is not None
    server_id = await asyncio.to_thread(
        lambda: conn.connection.dbapi_connection.thread_id()  # type: ignore[union-attr]
    )
    admin = create_engine(mysql_url)
    with admin.begin() as c:
        c.exec_driver_sql(f"KILL CONNECTION {int(server_id)}")
    admin.dispose()
    second = await asyncio.to_thread(add_outbox_row, shop, uid)
    await wait_until(lambda: published(shop, second), timeout_s=10)
    assert relay._db is not None and relay._db is not conn
    await wait_until(
        lambda: shop.scalar("SELECT COUNT(*) FROM notifications WHERE user_id = :u", u=uid) == 2
    )
    shop.dispose()


async def test_closing_the_relay_waits_for_its_running_database_call_before_releasing(
    relay_env: Callable[..., OutboxRelay],
) -> None:
    """A poll cancelled mid-query still holds the connection: closing must not use it from
    another thread at the same time (two readers on one socket can wait for ever)."""
    relay = relay_env()
    spans: dict[str, tuple[float, float]] = {}
    entered = asyncio.Event()
    loop = asyncio.get_running_loop()
    unpublished, release = relay._unpublished, relay._release

    def slow_poll(limit: int) -> list[Any]:
        loop.call_soon_threadsafe(entered.set)
        start = time.monotonic()
        time.sleep(0.5)
        try:
            return unpublished(limit)
        finally:
            spans["poll"] = (start, time.monotonic())

    def timed_release() -> None:
        start = time.monotonic()
        release()
        spans["release"] = (start, time.monotonic())

    relay._unpublished = slow_poll  # type: ignore[method-assign]
    relay._release = timed_release  # type: ignore[method-assign]
    await asyncio.wait_for(entered.wait(), timeout=10)
    await asyncio.wait_for(relay.close(), timeout=10)
    assert spans["release"][0] >= spans["poll"][1], spans
    assert relay._db is None


def test_a_read_on_a_connection_with_an_io_timeout_gives_up(mysql_url: str) -> None:
    engine = make_engine(mysql_url, io_timeout_s=1.0)
    try:
        start = time.monotonic()
        with pytest.raises(OperationalError), engine.connect() as conn:
            conn.exec_driver_sql("SELECT SLEEP(5)")
        assert time.monotonic() - start < 4
    finally:
        engine.dispose()
