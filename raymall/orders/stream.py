"""Consumer groups on the event stream: at-least-once delivery, dedupe, dead letters.

The outbox relay publishes every outbox row to one Redis Stream (``events_stream``), at
least once. A ``StreamConsumer`` reads it in a consumer group. Guarantees:

- an entry is acknowledged only after its handler returned, so a crash mid-handler means
  a redelivery, never a loss;
- **dedupe by event id**: after a handler succeeds the consumer records the event id
  (``{stream}:seen:{group}:{event_id}``, kept ``seen_ttl_s``); a republished copy of the
  same event (the relay is at least once) is acknowledged without running the handler
  again. Copies of one event in one read are never handled side by side: the first one
  is, and the others are acknowledged with it (or stay pending with it when it failed).
  Handlers are also written to be idempotent, so a crash between the handler and the
  record is harmless;
- **dead letters**: a failed entry stays pending and is retried after
  ``retry_idle_ms``; once it has been delivered ``max_deliveries`` times it is copied to
  ``{stream}:dead`` (with the group, the delivery count and the last error) and
  acknowledged, so one poisonous event cannot block the group.

Cost: a read is handled as one batch, with a fixed number of Redis round trips whatever
its size: one ``MGET`` of the seen keys, the handler, then one pipeline that records the
seen keys and acknowledges every finished entry. A handler may declare ``topics`` (a set
of topic names): entries of other topics are acknowledged in that same pipeline without
running anything (no seen key, no payload parsing). A handler may also offer
``handle_batch(events) -> [error or None per event]``; otherwise the events of one read are
handled concurrently (events carry no order promise), one call each. Pending entries are
looked for at most every ``retry_idle_ms / 2``, not on every read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from raymall import metrics
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
Outcomes = Sequence[BaseException | None]  # one per event: None = handled


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
        topics = getattr(handler, "topics", None)
        self.topics: frozenset[str] | None = None if topics is None else frozenset(topics)
        self._handle_batch: Callable[[list[Event]], Awaitable[Outcomes]] | None = getattr(
            handler, "handle_batch", None
        )
        self.consumer = consumer
        self.max_deliveries = max_deliveries
        self.retry_idle_ms = retry_idle_ms
        self.block_ms = block_ms
        self.batch = batch
        self.seen_ttl_s = seen_ttl_s
        self.handled = 0  # events whose handler succeeded
        self.ignored = 0  # entries of topics the handler does not take
        self.dead = 0
        self._errors: dict[str, str] = {}  # entry id -> last handler error
        self._next_pending_check = 0.0  # monotonic seconds

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
        """One round: retry or bury stale pending entries (when due), then read new ones."""
        done = 0
        now = time.monotonic()
        if now >= self._next_pending_check:
            self._next_pending_check = now + self.retry_idle_ms / 2000
            done += await self._retry_pending()
        reply = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self.batch,
            block=self.block_ms if block_ms is None else block_ms,
        )
        for _stream, entries in reply or []:
            await self._process([(_text(e), f, 1) for e, f in entries])
            done += len(entries)
        return done

    async def _retry_pending(self) -> int:
        pending = await self.redis.xpending_range(
            self.stream, self.group, min="-", max="+", count=self.batch, idle=self.retry_idle_ms
        )
        done = 0
        retry: dict[str, int] = {}  # entry id -> deliveries so far
        for info in pending:
            entry_id = _text(info["message_id"])
            deliveries = int(info["times_delivered"])
            if deliveries >= self.max_deliveries:
                await self._bury(entry_id, deliveries)
                done += 1
            else:
                retry[entry_id] = deliveries
        if not retry:
            return done
        claimed = await self.redis.xclaim(
            self.stream, self.group, self.consumer, self.retry_idle_ms, list(retry)
        )
        entries: list[tuple[str, dict[str, str], int]] = []
        trimmed: list[str] = []
        for cid, fields in claimed:
            entry_id = _text(cid)
            if fields:
                entries.append((entry_id, fields, retry.get(entry_id, 0) + 1))
            else:  # trimmed from the stream: nothing left to do
                trimmed.append(entry_id)
        if trimmed:
            await self.redis.xack(self.stream, self.group, *trimmed)
        if entries:
            metrics.CONSUMER_RETRIES.labels(self.group).inc(len(entries))
        await self._process(entries)
        return done + len(entries)

    async def _process(self, entries: list[tuple[str, dict[str, str], int]]) -> None:
        """Handle one batch of (entry id, fields, delivery number) and acknowledge what is
        finished; failed entries stay pending."""
        ack: list[str] = []  # ignored, already seen, or handled
        firsts: dict[str, Event] = {}  # event id -> the entry that is handled
        copies: dict[str, list[str]] = {}  # event id -> later entries of the same event
        deliveries: dict[str, int] = {}
        for entry_id, fields, delivery in entries:
            if self.topics is not None and fields.get("topic", "") not in self.topics:
                ack.append(entry_id)
                continue
            try:
                event = Event.from_fields(entry_id, fields)
            except (ValueError, TypeError) as exc:
                log.warning("malformed event %s: %s", entry_id, exc)
                await self._bury(entry_id, delivery, fields=fields, error=f"malformed: {exc}")
                continue
            deliveries[entry_id] = delivery
            if event.event_id in firsts:
                copies.setdefault(event.event_id, []).append(entry_id)
            else:
                firsts[event.event_id] = event
        self.ignored += len(ack)
        handled: list[Event] = []
        if firsts:
            seen = await self.redis.mget([self.seen_key(e) for e in firsts])
            fresh: list[Event] = []
            for event, mark in zip(firsts.values(), seen, strict=True):
                if mark is None:
                    fresh.append(event)
                else:
                    ack.append(event.entry_id)
                    ack += copies.get(event.event_id, [])
            for event, error in zip(fresh, await self._handle(fresh), strict=True):
                same = copies.get(event.event_id, [])
                if error is None:
                    handled.append(event)
                    ack.append(event.entry_id)
                    ack += same
                    for entry_id in (event.entry_id, *same):
                        self._errors.pop(entry_id, None)
                    continue
                text = f"{type(error).__name__}: {error}"[:500]
                if len(self._errors) > 10_000:
                    self._errors.clear()
                for entry_id in (event.entry_id, *same):  # stay pending: retried later
                    self._errors[entry_id] = text
                log.warning(
                    "consumer %s: event %s failed (delivery %s): %s",
                    self.group,
                    event.event_id,
                    deliveries[event.entry_id],
                    text,
                )
        if not ack:
            return
        # seen keys first: if the connection drops between the two, a redelivered entry is
        # acknowledged as a duplicate, never handled twice
        pipe = self.redis.pipeline(transaction=False)
        for event in handled:
            pipe.set(self.seen_key(event.event_id), "1", ex=self.seen_ttl_s)
        pipe.xack(self.stream, self.group, *ack)
        await pipe.execute()
        self.handled += len(handled)

    async def _handle(self, events: list[Event]) -> list[BaseException | None]:
        """The handler's outcome per event; an exception fails only its event (or, raised
        by ``handle_batch``, the whole batch)."""
        if not events:
            return []
        if self._handle_batch is not None:
            try:
                outcomes = list(await self._handle_batch(events))
            except Exception as exc:
                return [exc] * len(events)
            if len(outcomes) != len(events):
                error = RuntimeError(f"{len(outcomes)} outcomes for {len(events)} events")
                return [error] * len(events)
            return outcomes
        results = await asyncio.gather(*(self.handler(e) for e in events), return_exceptions=True)
        return [r if isinstance(r, BaseException) else None for r in results]

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
        metrics.CONSUMER_DEAD_LETTERS.labels(self.group).inc()
        log.error("consumer %s: event %s dead-lettered", self.group, fields.get("event_id"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
