"""Consumer groups on the event stream: at-least-once delivery, dedupe, dead letters.

The outbox relay publishes every outbox row to one Redis Stream (``events_stream``), at
least once. A ``StreamConsumer`` reads it in a consumer group. Guarantees:

- an entry is acknowledged only after its handler returned, so a crash mid-handler means
  a redelivery, never a loss;
- **dedupe by event id**: after a handler succeeds the consumer records the event id
  (``{stream}:seen:{group}:{event_id}``, kept ``seen_ttl_s``); a republished copy of the
  same event (the relay is at least once) is acknowledged without running the handler
  again. Handlers are also written to be idempotent, so a crash between the handler and
  the record is harmless;
- **dead letters**: a failed entry stays pending and is retried after
  ``retry_idle_ms``; once it has been delivered ``max_deliveries`` times it is copied to
  ``{stream}:dead`` (with the group, the delivery count and the last error) and
  acknowledged, so one poisonous event cannot block the group.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from raymall.logs import get_logger

log = get_logger("events")


@dataclass(frozen=True)
class Event:
    entry_id: str
    event_id: str
    topic: str
    aggregate_id: str
    payload: dict[str, Any]
    created_ms: int

    @classmethod
    def from_fields(cls, entry_id: str, fields: dict[str, str]) -> Event:
        return cls(
            entry_id=entry_id,
            event_id=fields.get("event_id", entry_id),
            topic=fields.get("topic", ""),
            aggregate_id=fields.get("aggregate_id", ""),
            payload=json.loads(fields.get("payload") or "{}"),
            created_ms=int(fields.get("created_ms") or 0),
        )


Handler = Callable[[Event], Awaitable[None]]


def dead_stream(stream: str) -> str:
    return f"{stream}:dead"


class StreamConsumer:
    def __init__(
        self,
        redis: Any,
        stream: str,
        group: str,
        handler: Handler,
        *,
        consumer: str = "c0",
        max_deliveries: int = 5,
        retry_idle_ms: int = 1_000,
        block_ms: int = 500,
        batch: int = 100,
        seen_ttl_s: int = 86_400,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.handler = handler
        self.consumer = consumer
        self.max_deliveries = max_deliveries
        self.retry_idle_ms = retry_idle_ms
        self.block_ms = block_ms
        self.batch = batch
        self.seen_ttl_s = seen_ttl_s
        self.handled = 0
        self.dead = 0
        self._errors: dict[str, str] = {}  # entry id -> last handler error

    def seen_key(self, event_id: str) -> str:
        return f"{self.stream}:seen:{self.group}:{event_id}"

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        """Consume until cancelled; survives Redis outages."""
        while True:
            try:
                await self.ensure_group()
                while True:
                    await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("consumer %s failed; retrying", self.group, exc_info=True)
                await asyncio.sleep(1.0)

    async def step(self, block_ms: int | None = None) -> int:
        """One round: retry or bury stale pending entries, then read new ones."""
        done = await self._retry_pending()
        reply = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self.batch,
            block=self.block_ms if block_ms is None else block_ms,
        )
        for _stream, entries in reply or []:
            # Entries of one read are handled concurrently (events carry no order promise),
            # except copies of one event, which go one after the other so dedupe sees them.
            firsts: list[tuple[str, dict[str, str]]] = []
            copies: list[tuple[str, dict[str, str]]] = []
            ids: set[str] = set()
            for entry_id, fields in entries:
                event_id = fields.get("event_id", entry_id)
                (copies if event_id in ids else firsts).append((entry_id, fields))
                ids.add(event_id)
            await asyncio.gather(*(self._process(e, f, error_after=1) for e, f in firsts))
            for entry_id, fields in copies:
                await self._process(entry_id, fields, error_after=1)
            done += len(entries)
        return done

    async def _retry_pending(self) -> int:
        pending = await self.redis.xpending_range(
            self.stream, self.group, min="-", max="+", count=self.batch, idle=self.retry_idle_ms
        )
        done = 0
        for info in pending:
            entry_id = _text(info["message_id"])
            deliveries = int(info["times_delivered"])
            if deliveries >= self.max_deliveries:
                await self._bury(entry_id, deliveries)
                done += 1
                continue
            claimed = await self.redis.xclaim(
                self.stream, self.group, self.consumer, self.retry_idle_ms, [entry_id]
            )
            for cid, fields in claimed:
                if fields:
                    await self._process(_text(cid), fields, error_after=deliveries + 1)
                    done += 1
                else:  # trimmed from the stream: nothing left to do
                    await self.redis.xack(self.stream, self.group, cid)
        return done

    async def _process(self, entry_id: str, fields: dict[str, str], error_after: int) -> None:
        try:
            event = Event.from_fields(entry_id, fields)
        except (ValueError, TypeError) as exc:
            log.warning("malformed event %s: %s", entry_id, exc)
            await self._bury(entry_id, error_after, fields=fields, error=f"malformed: {exc}")
            return
        if await self.redis.exists(self.seen_key(event.event_id)):
            await self.redis.xack(self.stream, self.group, entry_id)
            return
        try:
            await self.handler(event)
        except Exception as exc:
            if len(self._errors) > 10_000:
                self._errors.clear()
            self._errors[entry_id] = error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning(
                "consumer %s: event %s failed (delivery %s): %s",
                self.group,
                event.event_id,
                error_after,
                error,
            )
            return  # stays pending: retried after retry_idle_ms
        self._errors.pop(entry_id, None)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.seen_key(event.event_id), "1", ex=self.seen_ttl_s)
        pipe.xack(self.stream, self.group, entry_id)
        await pipe.execute()
        self.handled += 1

    async def _bury(
        self,
        entry_id: str,
        deliveries: int,
        *,
        fields: dict[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        if fields is None:
            found = await self.redis.xrange(self.stream, min=entry_id, max=entry_id, count=1)
            fields = dict(found[0][1]) if found else {}
        dead = {
            **fields,
            "group": self.group,
            "entry_id": entry_id,
            "deliveries": str(deliveries),
            "error": error or self._errors.pop(entry_id, "handler kept failing"),
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(dead_stream(self.stream), dead, maxlen=100_000, approximate=True)
        pipe.xack(self.stream, self.group, entry_id)
        await pipe.execute()
        self.dead += 1
        log.error("consumer %s: event %s dead-lettered", self.group, fields.get("event_id"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
