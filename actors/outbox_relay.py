"""OutboxRelay: publishes the transactional outbox to the event stream, and runs the
built-in consumers.

Every area writes its events into ``outbox`` in the same transaction as the change they
describe. This actor moves them to the Redis Stream ``events_stream``. Guarantees:

- **at least once**: a row is marked ``published_ms`` only after its ``XADD`` succeeded;
  a crash in between publishes it again (same ``event_id``), and consumers dedupe;
- rows that commit late (a lower id committing after a higher one) are still published:
  the relay always reads ``published_ms IS NULL``, not an id cursor;
- ``raymall_outbox_lag_seconds`` is the age of the oldest unpublished row it saw (0 when
  caught up); ``raymall_outbox_published_total`` counts by topic;
- the built-in consumer groups (``notifications``, ``refund-restock``) run here, with
  dedupe by event id and dead letters (see ``raymall.orders.stream``).

There is one relay (``outbox-relay-0``); a second one would only cause duplicates.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import select, update

from actors.inventory_client import InventoryClient
from models import OutboxEvent
from raymall import logs, metrics
from raymall.db import make_engine, session_factory, transaction
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.orders.consumers import NotificationConsumer, RefundRestockConsumer
from raymall.orders.stream import StreamConsumer
from raymall.settings import Settings

log = get_logger("outbox")


class OutboxRelay:
    def __init__(self, settings: Settings, index: int) -> None:
        logs.configure(settings.log_level)
        assert settings.redis_url, "settings must be resolved"
        self.settings = settings
        self.index = index
        self.engine = make_engine(settings.resolved_database_url, pool_size=2)
        self.sessions = session_factory(self.engine)
        self.redis = aioredis.Redis.from_url(
            settings.redis_url, decode_responses=True, socket_timeout=10, socket_connect_timeout=2
        )
        self.stream = settings.events_stream
        self.published = 0
        self._started_ms = now_ms()
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

    # ---- publishing -------------------------------------------------------------------
    def _unpublished(self, limit: int) -> list[dict[str, Any]]:
        with self.sessions() as session:
            rows = session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.published_ms.is_(None))
                .order_by(OutboxEvent.id)
                .limit(limit)
            )
            return [
                {
                    "id": int(r.id),
                    "event_id": r.event_id,
                    "topic": r.topic,
                    "aggregate_id": r.aggregate_id,
                    "payload": json.dumps(r.payload, separators=(",", ":"), sort_keys=True),
                    "created_ms": int(r.created_ms),
                }
                for r in rows
            ]

    def _mark(self, ids: list[int], now: int) -> None:
        with transaction(self.sessions) as session:
            session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(ids), OutboxEvent.published_ms.is_(None))
                .values(published_ms=now)
                .execution_options(synchronize_session=False)
            )

    async def publish_once(self) -> int:
        """Publish one batch; answer how many rows went out."""
        rows = await asyncio.to_thread(self._unpublished, self.settings.outbox_batch)
        now = now_ms()
        if not rows:
            metrics.OUTBOX_LAG.set(0)
            return 0
        metrics.OUTBOX_LAG.set(max(0.0, (now - min(r["created_ms"] for r in rows)) / 1000))
        pipe = self.redis.pipeline(transaction=False)
        for r in rows:
            fields: dict[Any, Any] = {
                k: str(r[k]) for k in ("event_id", "topic", "aggregate_id", "created_ms")
            }
            fields["payload"] = r["payload"]
            pipe.xadd(
                self.stream, fields, maxlen=self.settings.events_stream_maxlen, approximate=True
            )
        await pipe.execute()
        await asyncio.to_thread(self._mark, [r["id"] for r in rows], now_ms())
        for r in rows:
            metrics.OUTBOX_PUBLISHED.labels(r["topic"]).inc()
        self.published += len(rows)
        return len(rows)

    async def _publish_loop(self) -> None:
        while True:
            sent = 0
            try:
                sent = await self.publish_once()
            except Exception:  # database or Redis outage: keep trying
                log.warning("outbox publish failed", exc_info=True)
                await asyncio.sleep(1.0)
            if sent < self.settings.outbox_batch:
                await asyncio.sleep(self.settings.outbox_poll_interval_s)

    # ---- lifecycle ----------------------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "consumers": {c.group: {"handled": c.handled, "dead": c.dead} for c in self.consumers},
            "started_ms": self._started_ms,
        }

    async def check_alive(self) -> dict[str, Any]:
        return {"ok": True, "started_ms": self._started_ms}

    async def drain(self) -> None:
        """Publish what is committed now before a planned stop."""
        try:
            while await self.publish_once() >= self.settings.outbox_batch:
                pass
        except Exception:
            log.warning("outbox drain failed", exc_info=True)
