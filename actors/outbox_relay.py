"""OutboxRelay: publishes the transactional outbox to the event stream, and runs the
built-in consumers.

Every area writes its events into ``outbox`` in the same transaction as the change they
describe. This actor moves them to the Redis Stream ``events_stream``. Guarantees:

- **at least once**: a row is marked ``published_ms`` only after its ``XADD`` succeeded;
  a crash in between publishes it again (same ``event_id``), and consumers dedupe;
- rows that commit late (a lower id committing after a higher one) are still published:
  the relay always reads ``published_ms IS NULL``, not an id cursor;
- a committed row is published within ``outbox_idle_poll_interval_s`` (plus one round
  trip): the relay polls every ``outbox_poll_interval_s`` while rows keep coming, and when
  a poll finds nothing the interval doubles, up to ``outbox_idle_poll_interval_s``; the
  first poll that finds rows brings it back to the fast interval (a full batch: at once);
- ``raymall_outbox_lag_seconds`` is the age of the oldest unpublished row it saw (0 when
  caught up); ``raymall_outbox_published_total`` counts by topic;
- the built-in consumer groups (``notifications``, ``refund-restock``) run here, with
  dedupe by event id and dead letters (see ``raymall.orders.stream``).

Cost: the publisher keeps one database connection between polls (no pool checkout, pre-ping
or reset per poll); it is given back after any error, so the next poll gets a pinged one,
and renewed every ``DB_CONNECTION_MAX_AGE_S``. The connection is used only from the relay's
own database thread, so a call still running when its task is cancelled is never overlapped
by another on the same socket, and each read or write on it gives up after
``DB_IO_TIMEOUT_S``: a connection the server dropped fails and is replaced, never waited on.
The pool is sized for the actor's database users, and Redis connections come from a bounded
pool that makes a burst wait rather than fail.

Priority: the relay is background work (nothing waits on it to be answered), so its process
runs at ``outbox_relay_niceness`` (``raymall.priority``): during a burst the replicas and
shards get the CPU first and the relay catches up after, instead of taking a share of every
purchase's time while the burst lasts.

There is one relay (``outbox-relay-0``); a second one would only cause duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis.asyncio as aioredis
from sqlalchemy import Connection, Text, select, type_coerce, update

from actors.inventory_client import InventoryClient
from actors.observe import count_restart
from models import OutboxEvent
from raymall import logs, metrics, priority
from raymall.db import make_engine, session_factory
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.orders.consumers import NotificationConsumer, RefundRestockConsumer
from raymall.orders.stream import StreamConsumer
from raymall.settings import Settings
from raymall.tasks import stop_tasks

log = get_logger("outbox")
T = TypeVar("T")

# database users at once: the publisher (it keeps its connection) and the notifications
# consumer (one transaction per stream read)
DB_POOL_SIZE = 2
DB_CONNECTION_MAX_AGE_S = 300.0
DB_IO_TIMEOUT_S = 30.0  # one read or write on the publisher's connection (small queries)
# Redis users at once: the publisher, one blocking read per consumer group, and their
# pipelines; a burst beyond this waits up to REDIS_WAIT_S for a free connection
REDIS_MAX_CONNECTIONS = 16
REDIS_WAIT_S = 10


class OutboxRelay:
    def __init__(self, settings: Settings, index: int) -> None:
        logs.configure(settings.log_level)
        assert settings.redis_url, "settings must be resolved"
        priority.background(settings.outbox_relay_niceness)
        count_restart(f"outbox-relay-{index}")
        self.settings = settings
        self.index = index
        self.engine = make_engine(
            settings.resolved_database_url, pool_size=DB_POOL_SIZE, io_timeout_s=DB_IO_TIMEOUT_S
        )
        self.sessions = session_factory(self.engine)
        self.redis = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=REDIS_MAX_CONNECTIONS,
                timeout=REDIS_WAIT_S,
                decode_responses=True,
                socket_timeout=10,
                socket_connect_timeout=2,
            )
        )
        self.stream = settings.events_stream
        self.published = 0
        self.polls = 0  # outbox queries
        self.fast_interval_s = settings.outbox_poll_interval_s
        self.idle_interval_s = max(self.fast_interval_s, settings.outbox_idle_poll_interval_s)
        self.interval_s = self.fast_interval_s  # the wait before the next poll
        self._started_ms = now_ms()
        self._db: Connection | None = None  # the publisher's connection, kept between polls
        self._db_since = 0.0
        self._publishing = asyncio.Lock()  # the loop and drain() share the connection
        # the one thread that uses the publisher's connection (see _on_db)
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="outbox-db")
        self._closed = False
        self.consumers = [
            self._consumer(NotificationConsumer.group, NotificationConsumer(self.sessions)),
            self._consumer(
                RefundRestockConsumer.group, RefundRestockConsumer(InventoryClient(settings))
            ),
        ]
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._publish_loop())]
        self._tasks += [loop.create_task(c.run()) for c in self.consumers]

    def _consumer(self, group: str, handler: Any) -> StreamConsumer:
        return StreamConsumer(
            self.redis,
            self.stream,
            group,
            handler,
            consumer=f"relay-{self.index}",
            max_deliveries=self.settings.consumer_max_deliveries,
            retry_idle_ms=self.settings.consumer_retry_idle_ms,
        )

    # ---- the publisher's connection (used only from the relay's database thread) -------
    async def _on_db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the database thread. A cancelled caller stops waiting, but the call
        runs to its end (or its I/O timeout) before the thread takes the next one."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    def _connection(self) -> Connection:
        conn = self._db
        if conn is not None and (
            conn.invalidated or time.monotonic() - self._db_since > DB_CONNECTION_MAX_AGE_S
        ):
            self._release()
            conn = None
        if conn is None:
            conn = self._db = self.engine.connect()  # a checkout: pinged on MySQL
            self._db_since = time.monotonic()
        return conn

    def _release(self) -> None:
        conn, self._db = self._db, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a dead connection is dropped by the pool
                conn.close()

    # ---- publishing -------------------------------------------------------------------
    def _unpublished(self, limit: int) -> list[Any]:
        conn = self._connection()
        try:
            with conn.begin():
                return list(
                    conn.execute(
                        select(
                            OutboxEvent.id,
                            OutboxEvent.event_id,
                            OutboxEvent.topic,
                            OutboxEvent.aggregate_id,
                            # the stored JSON text as is: consumers parse it
                            type_coerce(OutboxEvent.payload, Text).label("payload"),
                            OutboxEvent.created_ms,
                        )
                        .where(OutboxEvent.published_ms.is_(None))
                        .order_by(OutboxEvent.id)
                        .limit(limit)
                    )
                )
        except Exception:
            self._release()
            raise

    def _mark(self, ids: list[int], now: int) -> None:
        conn = self._connection()
        try:
            with conn.begin():
                conn.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id.in_(ids), OutboxEvent.published_ms.is_(None))
                    .values(published_ms=now)
                )
        except Exception:
            self._release()
            raise

    async def publish_once(self) -> int:
        """Publish one batch; answer how many rows went out."""
        async with self._publishing:
            self.polls += 1
            rows = await self._on_db(self._unpublished, self.settings.outbox_batch)
            now = now_ms()
            if not rows:
                metrics.OUTBOX_LAG.set(0)
                return 0
            metrics.OUTBOX_LAG.set(max(0.0, (now - min(r.created_ms for r in rows)) / 1000))
            pipe = self.redis.pipeline(transaction=False)
            maxlen = self.settings.events_stream_maxlen
            for r in rows:
                fields: dict[Any, Any] = {
                    "event_id": r.event_id,
                    "topic": r.topic,
                    "aggregate_id": r.aggregate_id,
                    "created_ms": str(r.created_ms),
                    "payload": r.payload or "{}",
                }
                pipe.xadd(self.stream, fields, maxlen=maxlen, approximate=True)
            await pipe.execute()
            await self._on_db(self._mark, [int(r.id) for r in rows], now_ms())
            for topic, n in Counter(r.topic for r in rows).items():
                metrics.OUTBOX_PUBLISHED.labels(topic).inc(n)
            self.published += len(rows)
            return len(rows)

    async def _publish_loop(self) -> None:
        while True:
            try:
                sent = await self.publish_once()
            except Exception:  # database or Redis outage: keep trying
                log.warning("outbox publish failed", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if sent >= self.settings.outbox_batch:  # a backlog: go on at once
                self.interval_s = self.fast_interval_s
                continue
            if sent:
                self.interval_s = self.fast_interval_s
            await asyncio.sleep(self.interval_s)
            if not sent:  # idle: wait longer next time, up to the idle interval
                self.interval_s = min(self.idle_interval_s, self.interval_s * 2)

    # ---- lifecycle ----------------------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "polls": self.polls,
            "poll_interval_s": self.interval_s,
            "consumers": {
                c.group: {"handled": c.handled, "ignored": c.ignored, "dead": c.dead}
                for c in self.consumers
            },
            "started_ms": self._started_ms,
        }

    async def check_alive(self) -> dict[str, Any]:
        return {"ok": True, "started_ms": self._started_ms}

    async def close(self) -> None:
        """Stop publishing and consuming, and give back every connection. The connection
        is released on the database thread, after any call still running there. Closing
        twice is harmless."""
        if self._closed:
            return
        self._closed = True
        await stop_tasks(self._tasks)
        await self._on_db(self._release)
        self._db_thread.shutdown(wait=False)
        await self.redis.aclose()
        self.engine.dispose()

    async def drain(self) -> None:
        """Publish what is committed now before a planned stop."""
        try:
            while await self.publish_once() >= self.settings.outbox_batch:
                pass
        except Exception:
            log.warning("outbox drain failed", exc_info=True)
