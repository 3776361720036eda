"""AvailabilityPublisher: an inventory shard's side of the availability read model
(``raymall.catalog.availability`` describes the model and its readers).

The shard hands it values it knows to be committed: the whole ledger at start and after a
reload (``reset``), the SKUs a committed batch touched, and SKUs it loaded from the
database (``changed``). One task writes them, in the order given, coalescing what
accumulated while the previous write was in flight (the latest value per SKU wins), as one
Redis transaction per write: the hash fields, the epoch and the sequence number, and the
message on the channel. Guarantees:

- nothing is dropped: values stay pending until a write carrying them succeeded; a write
  whose outcome is unknown is sent again with the same sequence number (readers accept a
  repeat: the values are absolute);
- a heartbeat goes out only when nothing is pending, so a shard that cannot write stops
  beating and its readers stop trusting it (``availability_trust_ms``);
- the shard never waits for Redis: publishing is off the commit path, and a Redis outage
  costs the shard nothing but a warning per backoff step.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from raymall import metrics
from raymall.catalog.availability import (
    BEAT,
    CHANGE,
    CHANNEL,
    EPOCH_FIELD,
    RESET,
    SEQ_FIELD,
    Message,
    hash_key,
)
from raymall.feed import scoped_channel
from raymall.ids import now_ms
from raymall.logs import get_logger
from raymall.retry import Backoff

log = get_logger("inventory.availability")
CHUNK = 1_000  # fields per HSET of a reset


class AvailabilityPublisher:
    def __init__(
        self,
        redis: Any,
        shard: int,
        *,
        channel: str,
        heartbeat_s: float,
        key: Callable[[int], str] = hash_key,
    ) -> None:
        """``key``: the name of the shard's hash (another read model of ids to counts, such
        as ``raymall.flash.live``'s sales, publishes through its own publisher)."""
        self.redis = redis
        self.key = key
        self.shard = shard
        self.channel = channel
        self.heartbeat_s = heartbeat_s
        self.epoch = secrets.token_hex(6)
        self.seq = 0
        self.published = 0  # writes that succeeded
        self._reset: dict[int, int] | None = None
        self._pending: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._label = str(shard)
        self.task = asyncio.get_running_loop().create_task(self._run())

    @classmethod
    def from_url(cls, url: str, shard: int, *, heartbeat_s: float) -> AvailabilityPublisher:
        client = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        return cls(client, shard, channel=scoped_channel(url, CHANNEL), heartbeat_s=heartbeat_s)

    # ---- what the shard calls (on its event loop, never blocking) ---------------------
    def reset(self, available: Mapping[int, int]) -> None:
        """The shard's whole committed state: rewrite the hash."""
        self._reset = dict(available)
        self._pending = {}
        self._wake.set()

    def changed(self, pairs: Mapping[int, int]) -> None:
        """Committed values of some SKUs, newer than anything given before."""
        if pairs:
            self._pending.update(pairs)
            self._wake.set()

    async def close(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        await self.redis.aclose()

    # ---- the writer task --------------------------------------------------------------
    async def _run(self) -> None:
        backoff = Backoff(first_s=0.05, max_s=2.0)
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.heartbeat_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._write()
                backoff = Backoff(first_s=0.05, max_s=2.0)
            except (RedisError, OSError) as exc:
                metrics.AVAILABILITY_PUBLISH_ERRORS.labels(self._label).inc()
                log.warning("shard %s: availability not published (%r)", self.shard, exc)
                await backoff.wait()
                self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end publishing for good
                log.exception("shard %s: availability publisher error", self.shard)
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _write(self) -> None:
        reset, pending = self._reset, self._pending
        self._reset, self._pending = None, {}
        if reset is None and not pending:
            await self.redis.publish(self.channel, self._message(BEAT, self.seq).encode())
            return
        seq = self.seq + 1
        key = self.key(self.shard)
        pipe = self.redis.pipeline(transaction=True)
        if reset is not None:
            reset.update(pending)
            pipe.delete(key)
            items = list(reset.items())
            for i in range(0, len(items), CHUNK):
                pipe.hset(key, mapping=dict(items[i : i + CHUNK]))
            msg = self._message(RESET, seq)
        else:
            pipe.hset(key, mapping=pending)  # type: ignore[arg-type]
            msg = self._message(CHANGE, seq, tuple(pending.items()))
        pipe.hset(key, mapping={EPOCH_FIELD: self.epoch, SEQ_FIELD: seq})
        pipe.publish(self.channel, msg.encode())
        try:
            await pipe.execute()
        except BaseException:
            # Not known to be written: hand it back under what came meanwhile (newer; a
            # newer reset holds everything). The retry reuses ``seq``: readers take a
            # repeated number as a re-send.
            if self._reset is None:
                if reset is not None:
                    reset.update(self._pending)
                    self._reset, self._pending = reset, {}
                else:
                    pending.update(self._pending)
                    self._pending = pending
            raise
        self.seq = seq
        self.published += 1

    def _message(self, kind: int, seq: int, pairs: tuple[tuple[int, int], ...] = ()) -> Message:
        return Message(self.shard, self.epoch, seq, kind, now_ms(), pairs)
